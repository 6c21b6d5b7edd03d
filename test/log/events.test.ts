import { describe, expect, it } from 'vitest'
import { createHash } from 'node:crypto'
import { canonicalDecode, canonicalEncode } from '../../src/log/cbor.js'
import { concatBytes, fromHex, toHex, utf8 } from '../../src/log/bytes.js'
import {
  compareEvents, DOMAIN_TAG, eventId, EVENT_VERSION, openEnvelope, openTrusted, signEvent, signingInput,
  type EventFields, type SignedEvent
} from '../../src/log/event.js'
import { bodySchemas, EVENT_TYPES, LIMITS, type EventType } from '../../src/log/bodies.js'
import { Ed25519Verifier } from '../../src/log/identity.js'
import { MergedLog } from '../../src/crdt/merged-log.js'
import { joinBody, NET } from '../support/fixtures.js'
import { alice, baseFields, bob, carol, envelopeOfBytes, errorOf, fieldsOf, mapInOrder, patchHex, rawEnvelope } from './helpers.js'

const verifier = new Ed25519Verifier()
const open = (env: Uint8Array): SignedEvent => openEnvelope(env, NET, verifier)
const codeOfOpen = (env: Uint8Array): string => errorOf(() => open(env)).code

/** One valid and at least one invalid body per event type. */
const validBodies: { [T in EventType]: unknown } = {
  'node.join': joinBody('node-1', 'edge', 'master'),
  'node.leave': {},
  'node.evict': { peer: bob.publicKey, reason: 'stolen laptop' },
  'node.revoke': { peer: bob.publicKey, reason: 'stolen laptop' },
  'network.rotate': { epoch: 1, ephemeral: new Uint8Array(32).fill(3), sealed: [{ to: new Uint8Array(32).fill(4), box: new Uint8Array(48).fill(5) }] },
  'admin.grant': { peer: bob.publicKey },
  'admin.ungrant': { peer: bob.publicKey },
  'role.claim': { cluster: 'edge', role: 'worker' },
  'ip.claim': { addr: '10.77.0.1' },
  'ip.release': { addr: 'fd00::1' },
  'route.advertise': { cidr: '192.168.10.0/24' },
  'route.withdraw': { cidr: 'fd00:1::/64' },
  'service.export': {
    cluster: 'edge',
    namespace: 'default',
    name: 'web',
    type: 'ClusterSetIP',
    ports: [{ name: 'http', protocol: 'TCP', port: 80 }, { protocol: 'UDP', port: 53, appProtocol: 'dns' }],
    sessionAffinity: 'None',
    labels: { app: 'web' },
    annotations: {}
  },
  'service.unexport': { cluster: 'edge', namespace: 'default', name: 'web' },
  'settings.change': { change: new Uint8Array([0x85, 0x6f, 0x4a, 0x83, 1, 2, 3]) }
}

const exportBody = validBodies['service.export'] as Record<string, unknown>
const join = validBodies['node.join'] as Record<string, unknown>

const invalidBodies: { [T in EventType]: Array<[string, unknown]> } = {
  'node.join': [
    ['missing field', { ...join, role: undefined }],
    ['unknown key', { ...join, extra: 1 }],
    ['empty hostname', { ...join, hostname: '' }],
    ['hostname too long', { ...join, hostname: 'h'.repeat(254) }],
    ['cluster not a DNS label', { ...join, cluster: 'Edge_1' }],
    ['bad role', { ...join, role: 'king' }],
    ['os too long', { ...join, os: 'x'.repeat(LIMITS.maxString + 1) }],
    ['too many addrs', { ...join, addrs: Array.from({ length: LIMITS.maxListItems + 1 }, (_, i) => `/ip4/10.0.0.${i}/tcp/1`) }],
    ['cap too long', { ...join, caps: ['c'.repeat(LIMITS.maxShortString + 1)] }],
    ['empty cap', { ...join, caps: [''] }],
    ['addrs not a list', { ...join, addrs: 'x' }]
  ],
  'node.leave': [['unknown key', { bye: true }], ['reason too long', { reason: 'r'.repeat(LIMITS.maxString + 1) }], ['not an object', 'bye']],
  'node.evict': [['peer too short', { peer: new Uint8Array(31), reason: 'x' }], ['peer as text', { peer: bob.peerId, reason: 'x' }], ['no reason', { peer: bob.publicKey }]],
  'node.revoke': [['no reason', { peer: bob.publicKey }], ['peer too long', { peer: new Uint8Array(33), reason: 'x' }]],
  'network.rotate': [
    ['epoch 0', { epoch: 0, ephemeral: new Uint8Array(32), sealed: [] }],
    ['box too short', { epoch: 1, ephemeral: new Uint8Array(32), sealed: [{ to: new Uint8Array(32), box: new Uint8Array(47) }] }],
    ['too many sealed', { epoch: 1, ephemeral: new Uint8Array(32), sealed: Array.from({ length: LIMITS.maxSealed + 1 }, () => ({ to: new Uint8Array(32), box: new Uint8Array(48) })) }]
  ],
  'admin.grant': [['peer as text', { peer: bob.peerId }], ['auth sig short', { peer: bob.publicKey, auth: { by: bob.publicKey, sig: new Uint8Array(63) } }]],
  'admin.ungrant': [['no peer', {}]],
  'role.claim': [['bad role', { cluster: 'edge', role: 'boss' }], ['bad cluster', { cluster: '-edge', role: 'auto' }]],
  'ip.claim': [['not an ip', { addr: '10.0.0.256' }], ['cidr instead of ip', { addr: '10.0.0.0/24' }], ['hostname', { addr: 'example.com' }]],
  'ip.release': [['empty', { addr: '' }]],
  'route.advertise': [['ip without prefix', { cidr: '10.0.0.0' }], ['prefix too long', { cidr: '10.0.0.0/33' }]],
  'route.withdraw': [['garbage', { cidr: 'x/8' }]],
  'service.export': [
    ['bad type', { ...exportBody, type: 'LoadBalancer' }],
    ['port out of range', { ...exportBody, ports: [{ protocol: 'TCP', port: 65536 }] }],
    ['port as float', { ...exportBody, ports: [{ protocol: 'TCP', port: 80.5 }] }],
    ['bad protocol', { ...exportBody, ports: [{ protocol: 'ICMP', port: 1 }] }],
    ['too many ports', { ...exportBody, ports: Array.from({ length: LIMITS.maxPorts + 1 }, (_, i) => ({ protocol: 'TCP', port: i + 1 })) }],
    ['too many labels', { ...exportBody, labels: Object.fromEntries(Array.from({ length: LIMITS.maxLabels + 1 }, (_, i) => [`k${i}`, 'v'])) }],
    ['label value too long', { ...exportBody, annotations: { a: 'v'.repeat(LIMITS.maxLabelValue + 1) } }],
    ['name not a DNS label', { ...exportBody, name: 'Web' }],
    ['namespace too long', { ...exportBody, namespace: 'n'.repeat(64) }],
    ['affinity timeout 0', { ...exportBody, sessionAffinityTimeoutSeconds: 0 }]
  ],
  'service.unexport': [['missing name', { cluster: 'edge', namespace: 'default' }]],
  'settings.change': [['empty change', { change: new Uint8Array(0) }], ['change as text', { change: 'abc' }],
    ['change too large', { change: new Uint8Array(LIMITS.maxSettingsChangeBytes + 1) }]]
}

describe('sign and open', () => {
  it('signEvent → openEnvelope round trips every field, and the id is sha256(tag || net || bytes)', () => {
    const ev = signEvent(fieldsOf(), alice)
    const back = open(ev.envelope)
    expect(back.idHex).toBe(ev.idHex)
    expect(toHex(back.bytes)).toBe(toHex(ev.bytes))
    expect(toHex(back.sig)).toBe(toHex(ev.sig))
    expect(back.fields).toEqual(ev.fields)
    expect(back.authorHex).toBe(alice.authorHex)
    const expected = createHash('sha256').update(DOMAIN_TAG).update(NET).update(ev.bytes).digest('hex')
    expect(ev.idHex).toBe(expected)
    expect(toHex(eventId(NET, ev.bytes))).toBe(expected)
    expect(toHex(signingInput(NET, ev.bytes))).toBe(toHex(concatBytes(utf8.encode('weft/event/v1\0'), NET, ev.bytes)))
    // The envelope is the canonical CBOR array [bytes, sig].
    expect(toHex(ev.envelope)).toBe(toHex(canonicalEncode([ev.bytes, ev.sig])))
    expect(canonicalDecode(ev.bytes)).toEqual(ev.fields)
    expect(openTrusted(ev.envelope, NET).idHex).toBe(ev.idHex)
    expect(openTrusted(ev.envelope, NET).fields).toEqual(ev.fields)
  })

  it('the signature is not part of the id, and the id binds the network', () => {
    const ev = signEvent(fieldsOf(), alice)
    const id = createHash('sha256').update(signingInput(NET, ev.bytes)).digest('hex')
    expect(ev.idHex).toBe(id)
    const otherNet = new Uint8Array(8).fill(9)
    expect(toHex(eventId(otherNet, ev.bytes))).not.toBe(ev.idHex)
  })

  it('every type with a valid body round trips', () => {
    for (const type of EVENT_TYPES) {
      const ev = signEvent(fieldsOf({ type, body: validBodies[type] }), alice)
      const back = open(ev.envelope)
      expect(back.fields.type).toBe(type)
      expect(back.fields.body).toEqual(ev.fields.body)
    }
  })

  it('optional fields that are undefined are omitted, not encoded', () => {
    const a = signEvent(fieldsOf({ type: 'node.leave', body: { reason: undefined } }), alice)
    const b = signEvent(fieldsOf({ type: 'node.leave', body: {} }), alice)
    expect(a.idHex).toBe(b.idHex)
  })

  it('signEvent sorts deps; the bytes are the same whatever order they were given in', () => {
    const b1 = signEvent(fieldsOf({}, bob), bob)
    const c1 = signEvent(fieldsOf({}, carol), carol)
    const deps = [b1.id, c1.id]
    const x = signEvent(fieldsOf({ deps, lamport: 2 }), alice)
    const y = signEvent(fieldsOf({ deps: [...deps].reverse(), lamport: 2 }), alice)
    expect(x.idHex).toBe(y.idHex)
    expect(x.fields.deps.map(toHex)).toEqual(deps.map(toHex).sort())
  })

  it('signEvent refuses a key that is not the author, and fields a peer would refuse', () => {
    expect(errorOf(() => signEvent(fieldsOf(), bob)).code).toBe('ERR_BAD_FIELD')
    expect(errorOf(() => signEvent(fieldsOf({ time: 1.5 }), alice)).code).toBe('ERR_BAD_FIELD')
    expect(errorOf(() => signEvent(fieldsOf({ seq: 0 }), alice)).code).toBe('ERR_BAD_FIELD')
    expect(errorOf(() => signEvent(fieldsOf({ net: new Uint8Array(7) }), alice)).code).toBe('ERR_BAD_FIELD')
    expect(errorOf(() => signEvent(fieldsOf({ v: 2 }), alice)).code).toBe('ERR_BAD_FIELD')
    expect(errorOf(() => signEvent(fieldsOf({ type: 'node.dance' }), alice)).code).toBe('ERR_UNKNOWN_TYPE')
    expect(errorOf(() => signEvent(fieldsOf({ body: { hostname: 'x' } }), alice)).code).toBe('ERR_BAD_BODY')
    expect(errorOf(() => signEvent(fieldsOf({ prev: new Uint8Array(32) }), alice)).code).toBe('ERR_BAD_CHAIN')
  })

  it('an event with many deps at lamport 2 is valid (lamport is not bounded by the number of deps)', () => {
    // Regression: the intrinsic check used to demand lamport >= deps.length, which refused a node
    // that had seen the seq-1 joins of three or more peers.
    const deps = Array.from({ length: LIMITS.maxDeps }, (_, i) => new Uint8Array(32).fill(i + 1))
    const ev = signEvent(fieldsOf({ deps, lamport: 2 }), alice)
    expect(open(ev.envelope).fields.deps.length).toBe(LIMITS.maxDeps)
  })
})

describe('body schemas', () => {
  for (const type of EVENT_TYPES) {
    it(`${type}: accepts a valid body, refuses bad ones with ERR_BAD_BODY`, () => {
      expect(bodySchemas[type].safeParse(validBodies[type]).success).toBe(true)
      expect(open(rawEnvelope(baseFields(alice, { type, body: validBodies[type] }))).fields.type).toBe(type)
      const bad = invalidBodies[type]
      expect(bad.length).toBeGreaterThan(0)
      for (const [why, body] of bad) {
        const e = errorOf(() => open(rawEnvelope(baseFields(alice, { type, body }))))
        expect(e.code, `${type} / ${why}`).toBe('ERR_BAD_BODY')
        expect(e.message).toContain(type)
        expect(errorOf(() => signEvent(fieldsOf({ type, body }), alice)).code, `${type} / ${why}`).toBe('ERR_BAD_BODY')
      }
    })
  }

  it('string limits are inclusive bounds', () => {
    const atLimit = { ...join, hostname: 'h'.repeat(253), os: 'o'.repeat(LIMITS.maxString), caps: ['c'.repeat(LIMITS.maxShortString)], addrs: Array.from({ length: LIMITS.maxListItems }, () => 'a') }
    expect(open(signEvent(fieldsOf({ body: atLimit }), alice).envelope).fields.body).toEqual(atLimit)
    const exportAt = {
      ...exportBody,
      namespace: 'n'.repeat(63),
      ports: Array.from({ length: LIMITS.maxPorts }, (_, i) => ({ protocol: 'TCP', port: i + 1 })),
      labels: Object.fromEntries(Array.from({ length: LIMITS.maxLabels }, (_, i) => [`k${i}`, 'v'.repeat(100)]))
    }
    expect(open(signEvent(fieldsOf({ type: 'service.export', body: exportAt }), alice).envelope).fields.type).toBe('service.export')
    const change = new Uint8Array(LIMITS.maxSettingsChangeBytes).fill(1)
    expect(open(signEvent(fieldsOf({ type: 'settings.change', body: { change } }), alice).envelope).fields.type).toBe('settings.change')
  })
})

describe('intrinsic validation: one error code per rule', () => {
  it('ERR_EVENT_TOO_LARGE: envelopes above 64 KiB are refused before decoding; signEvent refuses to make one', () => {
    expect(codeOfOpen(new Uint8Array(LIMITS.maxEventBytes + 1))).toBe('ERR_EVENT_TOO_LARGE')
    const huge = { ...exportBody, labels: Object.fromEntries(Array.from({ length: LIMITS.maxLabels }, (_, i) => [`k${i}`, 'v'.repeat(LIMITS.maxLabelValue)])) }
    const e = errorOf(() => signEvent(fieldsOf({ type: 'service.export', body: huge }), alice))
    expect(e.code).toBe('ERR_EVENT_TOO_LARGE')
    expect(e.message).toContain(String(LIMITS.maxEventBytes))
    // And a hand-made one of that size is refused on open.
    expect(codeOfOpen(rawEnvelope(baseFields(alice, { type: 'service.export', body: huge })))).toBe('ERR_EVENT_TOO_LARGE')
  })

  it('ERR_NOT_CBOR: bytes that are not CBOR, outside or inside', () => {
    expect(codeOfOpen(new Uint8Array([0xff]))).toBe('ERR_NOT_CBOR')
    expect(codeOfOpen(new Uint8Array(0))).toBe('ERR_NOT_CBOR')
    const ev = signEvent(fieldsOf(), alice)
    expect(codeOfOpen(ev.envelope.subarray(0, ev.envelope.byteLength - 1))).toBe('ERR_NOT_CBOR') // truncated
    expect(codeOfOpen(envelopeOfBytes(new Uint8Array([0x1c])))).toBe('ERR_NOT_CBOR') // reserved additional info
    expect(codeOfOpen(envelopeOfBytes(concatBytes(ev.bytes, new Uint8Array([0x00]))))).toBe('ERR_NOT_CBOR') // trailing bytes
    expect(codeOfOpen(envelopeOfBytes(new Uint8Array([0xc1, 0x1a, 0, 0, 0, 0])))).toBe('ERR_NOT_CBOR') // unsupported tag
    // Deep nesting is refused, not a crash.
    const deep = concatBytes(new Uint8Array(60_000).fill(0x81), new Uint8Array([0x00]))
    expect(['ERR_NOT_CBOR', 'ERR_NOT_CANONICAL', 'ERR_BAD_ENVELOPE']).toContain(codeOfOpen(deep))
  })

  it('ERR_NOT_CANONICAL: a non-minimal integer (signed correctly) is refused', () => {
    const ev = signEvent(fieldsOf(), alice)
    // "seq": 1 is 63 736571 01; as 18 01 it is the same number in two bytes.
    const bytes = patchHex(ev.bytes, '63736571' + '01', '63736571' + '1801')
    expect(codeOfOpen(envelopeOfBytes(bytes))).toBe('ERR_NOT_CANONICAL')
    // A non-minimal array length in the envelope itself.
    const outer = patchHex(ev.envelope, '82', '9802')
    expect(codeOfOpen(outer)).toBe('ERR_NOT_CANONICAL')
  })

  it('ERR_NOT_CANONICAL: map keys out of order (signed correctly) are refused', () => {
    const f = baseFields(alice)
    const entries = Object.entries(f) as Array<[string, unknown]>
    const canonical = canonicalEncode(f)
    expect(toHex(mapInOrder(entries.sort(([a], [b]) => (a.length - b.length) || (a < b ? -1 : 1))))).toBe(toHex(canonical))
    const unsorted = mapInOrder([...entries].reverse())
    expect(toHex(unsorted)).not.toBe(toHex(canonical))
    expect(codeOfOpen(envelopeOfBytes(unsorted))).toBe('ERR_NOT_CANONICAL')
    // Key order inside the body counts as well.
    const body = mapInOrder([['role', 'auto'], ['arch', 'amd64']])
    expect(errorOf(() => canonicalDecode(body)).code).toBe('ERR_NOT_CANONICAL')
  })

  it('ERR_NOT_CANONICAL: indefinite lengths, duplicate keys and integral floats are refused', () => {
    expect(errorOf(() => canonicalDecode(fromHex('9f01ff'))).code).toBe('ERR_NOT_CANONICAL')
    expect(errorOf(() => canonicalDecode(fromHex('a2616101616102'))).code).toBe('ERR_NOT_CANONICAL')
    expect(errorOf(() => canonicalDecode(fromHex('f95500'))).code).toBe('ERR_NOT_CANONICAL') // 80.0 as a half float
    expect(errorOf(() => canonicalDecode(fromHex('fb3ff8000000000000'))).code).toBe('ERR_NOT_CANONICAL') // 1.5 as a double, not the shortest float
    expect(errorOf(() => canonicalDecode(fromHex('f7'))).code).toBe('ERR_NOT_CANONICAL') // undefined
    // seq 1 encoded as a float: well-formed CBOR, not canonical.
    const ev = signEvent(fieldsOf(), alice)
    expect(codeOfOpen(envelopeOfBytes(patchHex(ev.bytes, '63736571' + '01', '63736571' + 'f93c00')))).toBe('ERR_NOT_CANONICAL')
  })

  it('floats are refused everywhere in the header and body', () => {
    // Shortest-form non-integral floats are canonical CBOR, so the schema refuses them.
    expect(codeOfOpen(rawEnvelope(baseFields(alice, { time: 1.5 })))).toBe('ERR_BAD_FIELD')
    expect(codeOfOpen(rawEnvelope(baseFields(alice, { lamport: 1.5 })))).toBe('ERR_BAD_FIELD')
    expect(codeOfOpen(rawEnvelope(baseFields(alice, { type: 'service.export', body: { ...exportBody, ports: [{ protocol: 'TCP', port: 80.5 }] } })))).toBe('ERR_BAD_BODY')
    expect(codeOfOpen(rawEnvelope(baseFields(alice, { v: 1.5 })))).toBe('ERR_BAD_VERSION')
  })

  it('ERR_BAD_ENVELOPE: the envelope is exactly [bytes, 64-byte signature]', () => {
    const ev = signEvent(fieldsOf(), alice)
    for (const v of [[ev.bytes], [ev.bytes, ev.sig, ev.sig], [ev.bytes, ev.sig.subarray(0, 63)], { bytes: ev.bytes, sig: ev.sig }, [toHex(ev.bytes), ev.sig], 'x', 5]) {
      expect(codeOfOpen(canonicalEncode(v))).toBe('ERR_BAD_ENVELOPE')
    }
  })

  it('ERR_BAD_VERSION: any v other than 1', () => {
    for (const v of [0, 2, 255]) expect(codeOfOpen(rawEnvelope(baseFields(alice, { v })))).toBe('ERR_BAD_VERSION')
    expect(errorOf(() => open(rawEnvelope(baseFields(alice, { v: 2 })))).message).toContain(`v${EVENT_VERSION}`)
  })

  it('ERR_BAD_FIELD: header fields with the wrong shape, missing or extra', () => {
    const cases: Array<Record<string, unknown>> = [
      { author: new Uint8Array(31) },
      { seq: 0 },
      { seq: -1 },
      { seq: Number.MAX_SAFE_INTEGER + 1 },
      { lamport: 0 },
      { time: -1 },
      { prev: new Uint8Array(31) },
      { prev: 'null' },
      { deps: [new Uint8Array(31)] },
      { deps: 'x' },
      { type: 'x'.repeat(65) },
      { type: 7 },
      { net: new Uint8Array(32) },
      { extra: 1 }
    ]
    for (const over of cases) {
      expect(codeOfOpen(rawEnvelope(baseFields(alice, over))), JSON.stringify(Object.keys(over))).toBe('ERR_BAD_FIELD')
    }
    const missing = baseFields(alice)
    delete missing.time
    expect(codeOfOpen(rawEnvelope(missing))).toBe('ERR_BAD_FIELD')
    expect(codeOfOpen(rawEnvelope([1, 2, 3] as unknown as Record<string, unknown>))).toBe('ERR_BAD_FIELD')
  })

  it('ERR_WRONG_NETWORK: an event of another network', () => {
    const otherNet = new Uint8Array(8).fill(0xaa)
    const env = rawEnvelope(baseFields(alice, { net: otherNet }), alice, otherNet)
    const e = errorOf(() => open(env))
    expect(e.code).toBe('ERR_WRONG_NETWORK')
    expect(e.message).toContain(toHex(otherNet))
    // Valid in its own network.
    expect(openEnvelope(env, otherNet, verifier).fields.seq).toBe(1)
  })

  it('ERR_BAD_SIGNATURE: a flipped bit, another key, or a signature without the domain tag', () => {
    const ev = signEvent(fieldsOf(), alice)
    const sig = new Uint8Array(ev.sig)
    sig[10] = (sig[10] as number) ^ 0x40
    expect(codeOfOpen(canonicalEncode([ev.bytes, sig]))).toBe('ERR_BAD_SIGNATURE')
    expect(codeOfOpen(canonicalEncode([ev.bytes, bob.sign(signingInput(NET, ev.bytes))]))).toBe('ERR_BAD_SIGNATURE')
    expect(codeOfOpen(canonicalEncode([ev.bytes, alice.sign(ev.bytes)]))).toBe('ERR_BAD_SIGNATURE')
    expect(codeOfOpen(canonicalEncode([ev.bytes, alice.sign(concatBytes(NET, ev.bytes))]))).toBe('ERR_BAD_SIGNATURE')
    expect(codeOfOpen(canonicalEncode([ev.bytes, new Uint8Array(64)]))).toBe('ERR_BAD_SIGNATURE')
    // Any change to the signed bytes (here the time) breaks it.
    const tampered = canonicalEncode({ ...baseFields(alice), time: 1_700_000_000_001 })
    expect(codeOfOpen(canonicalEncode([tampered, ev.sig]))).toBe('ERR_BAD_SIGNATURE')
    expect(errorOf(() => open(canonicalEncode([ev.bytes, sig]))).message).toContain(alice.peerId)
  })

  it('ERR_UNKNOWN_TYPE: a type this version does not know', () => {
    for (const type of ['node.dance', '', 'NODE.JOIN', 'constructor', '__proto__', 'toString']) {
      expect(codeOfOpen(rawEnvelope(baseFields(alice, { type, body: {} }))), type).toBe('ERR_UNKNOWN_TYPE')
    }
  })

  it('ERR_TOO_MANY_DEPS: more than 32 deps', () => {
    const deps = Array.from({ length: LIMITS.maxDeps + 1 }, (_, i) => new Uint8Array(32).fill(i + 1))
    expect(codeOfOpen(rawEnvelope(baseFields(alice, { deps, lamport: 2 })))).toBe('ERR_TOO_MANY_DEPS')
    expect(errorOf(() => signEvent(fieldsOf({ deps, lamport: 2 }), alice)).code).toBe('ERR_TOO_MANY_DEPS')
  })

  it('ERR_BAD_DEPS: deps unsorted or duplicated', () => {
    const a = new Uint8Array(32).fill(1)
    const b = new Uint8Array(32).fill(2)
    expect(codeOfOpen(rawEnvelope(baseFields(alice, { deps: [b, a], lamport: 2 })))).toBe('ERR_BAD_DEPS')
    expect(codeOfOpen(rawEnvelope(baseFields(alice, { deps: [a, a], lamport: 2 })))).toBe('ERR_BAD_DEPS')
    expect(errorOf(() => signEvent(fieldsOf({ deps: [a, a], lamport: 2 }), alice)).code).toBe('ERR_BAD_DEPS')
  })

  it('ERR_BAD_CHAIN: seq 1 has no prev, later seqs have one', () => {
    expect(codeOfOpen(rawEnvelope(baseFields(alice, { prev: new Uint8Array(32) })))).toBe('ERR_BAD_CHAIN')
    expect(codeOfOpen(rawEnvelope(baseFields(alice, { seq: 2, lamport: 2 })))).toBe('ERR_BAD_CHAIN')
  })

  it('ERR_BAD_LAMPORT (intrinsic lower bound): lamport below seq, or 1 with deps', () => {
    expect(codeOfOpen(rawEnvelope(baseFields(alice, { seq: 5, prev: new Uint8Array(32), lamport: 4 })))).toBe('ERR_BAD_LAMPORT')
    expect(codeOfOpen(rawEnvelope(baseFields(alice, { deps: [new Uint8Array(32)], lamport: 1 })))).toBe('ERR_BAD_LAMPORT')
    expect(open(rawEnvelope(baseFields(alice, { seq: 5, prev: new Uint8Array(32), lamport: 5 }))).fields.seq).toBe(5)
  })

  it('checks run in the documented order: cheap structural checks before the signature', () => {
    const otherNet = new Uint8Array(8).fill(0xaa)
    // Wrong network and bad signature → network first.
    expect(codeOfOpen(rawEnvelope(baseFields(alice, { net: otherNet }), bob, otherNet))).toBe('ERR_WRONG_NETWORK')
    // Bad version and bad header → version first.
    expect(codeOfOpen(rawEnvelope(baseFields(alice, { v: 2, seq: 0 })))).toBe('ERR_BAD_VERSION')
    // Bad header and wrong network → header first.
    expect(codeOfOpen(rawEnvelope(baseFields(alice, { net: otherNet, seq: 0 })))).toBe('ERR_BAD_FIELD')
    // Unknown type and bad chain → type first; bad body and too many deps → body first.
    expect(codeOfOpen(rawEnvelope(baseFields(alice, { type: 'x', prev: new Uint8Array(32) })))).toBe('ERR_UNKNOWN_TYPE')
    const deps = Array.from({ length: 40 }, (_, i) => new Uint8Array(32).fill(i + 1))
    expect(codeOfOpen(rawEnvelope(baseFields(alice, { body: {}, deps, lamport: 2 })))).toBe('ERR_BAD_BODY')
    // Bad deps and bad signature → deps first.
    expect(codeOfOpen(rawEnvelope(baseFields(alice, { deps: [deps[1], deps[0]], lamport: 2 }), bob))).toBe('ERR_BAD_DEPS')
  })
})

describe('causal validation in the merged log', () => {
  const mk = (signer: typeof alice, over: Record<string, unknown>): SignedEvent =>
    signEvent(fieldsOf(over, signer), signer)

  it('accepts a valid chain and refuses ERR_BAD_PREV, ERR_BAD_DEP and ERR_BAD_LAMPORT', () => {
    const a1 = mk(alice, {})
    const b1 = mk(bob, {})
    const a2 = mk(alice, { seq: 2, prev: a1.id, deps: [b1.id], lamport: 2, type: 'ip.claim', body: { addr: '10.0.0.1' } })
    const log = new MergedLog({ net: NET, verifier })
    const ok = log.ingest([a1, b1, a2].map((e) => e.envelope))
    expect(ok.rejected).toEqual([])
    expect(ok.added.length).toBe(3)

    const cases: Array<[string, SignedEvent]> = [
      ['ERR_BAD_PREV', mk(alice, { seq: 3, prev: b1.id, lamport: 3 })], // prev of another author
      ['ERR_BAD_PREV', mk(alice, { seq: 3, prev: a1.id, lamport: 3 })], // prev not at seq - 1
      ['ERR_BAD_DEP', mk(alice, { seq: 3, prev: a2.id, deps: [a1.id], lamport: 3 })], // own event as a dep
      ['ERR_BAD_LAMPORT', mk(alice, { seq: 3, prev: a2.id, lamport: 4 })], // inflated
      ['ERR_BAD_LAMPORT', mk(bob, { seq: 2, prev: b1.id, deps: [a2.id], lamport: 2 })] // too low for its dep
    ]
    for (const [code, ev] of cases) {
      const res = log.ingest([ev.envelope])
      expect(res.rejected.map((r) => r.code), code).toEqual([code])
      expect(log.has(ev.idHex)).toBe(false)
    }
    expect(log.size).toBe(3)
  })

  it('an event whose parent is missing waits; one whose parent is invalid is refused with ERR_BAD_DEP', () => {
    const a1 = mk(alice, {})
    const badB1 = mk(bob, { deps: [a1.id], lamport: 3 }) // lamport must be 2
    const c1 = mk(carol, { deps: [badB1.id], lamport: 4 })
    const log = new MergedLog({ net: NET, verifier })
    const r1 = log.ingest([c1.envelope, badB1.envelope])
    expect(r1.parked).toBe(2)
    const r2 = log.ingest([a1.envelope])
    expect(r2.added.map((e) => e.idHex)).toEqual([a1.idHex])
    expect(r2.rejected.map((r) => r.code).sort()).toEqual(['ERR_BAD_DEP', 'ERR_BAD_LAMPORT'])
    expect(log.pendingCount).toBe(0)
  })

  it('compareEvents orders by (lamport, author, seq)', () => {
    const a1 = mk(alice, {})
    const b1 = mk(bob, {})
    const a2 = mk(alice, { seq: 2, prev: a1.id, deps: [b1.id], lamport: 2, type: 'node.leave', body: {} })
    const sorted = [a2, b1, a1].sort(compareEvents)
    expect(sorted[0]?.fields.lamport).toBe(1)
    expect(sorted[2]?.idHex).toBe(a2.idHex)
    expect([sorted[0]?.authorHex, sorted[1]?.authorHex]).toEqual([alice.authorHex, bob.authorHex].sort())
  })
})

// Keep the type import used for readers of this file.
export type { EventFields }
