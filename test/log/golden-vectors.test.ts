import { describe, expect, it } from 'vitest'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { identityFromSeed, Ed25519Verifier, type NodeIdentity } from '../../src/log/identity.js'
import {
  derive, formatToken, identifiers, k3sClusterToken, networkIdBytes, parseToken, pnetSwarmKey, rendezvousKeys
} from '../../src/log/token.js'
import { DOMAIN_TAG, openEnvelope, openTrusted, signEvent, type EventFields } from '../../src/log/event.js'
import { fromHex, toHex } from '../../src/log/bytes.js'
import { MergedLog } from '../../src/crdt/merged-log.js'
import { decodeFrontier, encodeFrontier } from '../../src/crdt/frontier.js'
import { TEST_TOKEN, NET, identity } from '../support/fixtures.js'
import { EVENT_TYPES, LIMITS } from '../../src/log/bodies.js'

interface GoldenEvent {
  name: string
  signer: string
  fields: Record<string, unknown> & { net: string, author: string, prev: string | null, deps: string[] }
  eventHex: string
  signingInputHex: string
  sigHex: string
  envelopeHex: string
  idHex: string
}
interface Golden {
  token: {
    secretHex: string
    text: string
    networkIdHex: string
    identifiers: ReturnType<typeof identifiers>
    derived: Record<string, string>
    pnetSwarmKeyFile: string
    rendezvous: { nowMs: number, epoch: number, previous: string, current: string, next: string }
    k3sClusterToken: Record<string, string>
  }
  domainTagHex: string
  identities: Array<{ name: string, seedHex: string, publicKeyHex: string, peerId: string }>
  events: GoldenEvent[]
  frontier: { entries: Record<string, { seq: number, head: string, forks: string[] }>, hex: string }
}

const golden = JSON.parse(readFileSync(new URL('./golden-vectors.json', import.meta.url), 'utf8')) as Golden
const token = { secret: fromHex(golden.token.secretHex) }
const net = fromHex(golden.token.networkIdHex)
const ids = new Map<string, NodeIdentity>(golden.identities.map((i) => [i.name, identityFromSeed(fromHex(i.seedHex))]))

function fieldsFromJson (j: GoldenEvent['fields']): EventFields {
  return { ...j, net: fromHex(j.net), author: fromHex(j.author), prev: j.prev === null ? null : fromHex(j.prev), deps: j.deps.map(fromHex) } as unknown as EventFields
}

describe('golden vectors', () => {
  it('use the shared test fixtures (token of 0x07 bytes, seeds of 0x01 and 0x02)', () => {
    expect(golden.token.secretHex).toBe(toHex(TEST_TOKEN.secret))
    expect(golden.token.networkIdHex).toBe(toHex(NET))
    expect(golden.identities.map((i) => i.publicKeyHex)).toEqual([identity(0).authorHex, identity(1).authorHex])
    expect(golden.events.length).toBe(4)
  })

  it('token: text form, network id and every derived identifier', () => {
    expect(formatToken(token)).toBe(golden.token.text)
    expect(toHex(parseToken(golden.token.text).secret)).toBe(golden.token.secretHex)
    expect(toHex(networkIdBytes(token))).toBe(golden.token.networkIdHex)
    expect(identifiers(token)).toEqual(golden.token.identifiers)
    for (const [key, hex] of Object.entries(golden.token.derived)) {
      const m = /^(\S+) \((\d+) bytes\)$/.exec(key)
      expect(m).not.toBeNull()
      expect(toHex(derive(token, m?.[1] as string, Number(m?.[2])))).toBe(hex)
    }
    expect(new TextDecoder().decode(pnetSwarmKey(token))).toBe(golden.token.pnetSwarmKeyFile)
    const r = golden.token.rendezvous
    expect(rendezvousKeys(token, r.nowMs)).toEqual({ epoch: r.epoch, previous: r.previous, current: r.current, next: r.next })
    for (const [cluster, t] of Object.entries(golden.token.k3sClusterToken)) expect(k3sClusterToken(token, cluster)).toBe(t)
  })

  it('identities: public keys and PeerIds from the seeds, as libp2p computes them', () => {
    for (const g of golden.identities) {
      const id = ids.get(g.name) as NodeIdentity
      expect(id.authorHex).toBe(g.publicKeyHex)
      expect(id.peerId).toBe(g.peerId)
      expect(peerIdFromPublicKey(publicKeyFromRaw(fromHex(g.publicKeyHex))).toString()).toBe(g.peerId)
    }
  })

  it('the domain tag is "weft/event/v1" followed by a zero byte', () => {
    expect(golden.domainTagHex).toBe(toHex(DOMAIN_TAG))
    expect(Buffer.from(golden.domainTagHex, 'hex').toString('latin1')).toBe('weft/event/v1\0')
  })

  for (const g of golden.events) {
    it(`${g.name}: exact event bytes, signature, envelope and id`, () => {
      const signer = ids.get(g.signer) as NodeIdentity
      const ev = signEvent(fieldsFromJson(g.fields), signer)
      expect(toHex(ev.bytes)).toBe(g.eventHex)
      expect(toHex(ev.sig)).toBe(g.sigHex)
      expect(toHex(ev.envelope)).toBe(g.envelopeHex)
      expect(ev.idHex).toBe(g.idHex)

      // Independently of the code under test: the signing input is tag || net || bytes, the id its
      // sha256, the envelope a 2-array of byte strings, and libp2p's Ed25519 accepts the signature.
      expect(g.signingInputHex).toBe(golden.domainTagHex + golden.token.networkIdHex + g.eventHex)
      expect(createHash('sha256').update(Buffer.from(g.signingInputHex, 'hex')).digest('hex')).toBe(g.idHex)
      const len = g.eventHex.length / 2
      const head = len < 256 ? `8258${len.toString(16).padStart(2, '0')}` : `8259${len.toString(16).padStart(4, '0')}`
      expect(g.envelopeHex).toBe(head + g.eventHex + '5840' + g.sigHex)
      expect(publicKeyFromRaw(signer.publicKey).verify(fromHex(g.signingInputHex), fromHex(g.sigHex))).toBe(true)
      // The canonical map starts with the 10 header keys in length-then-bytewise order.
      expect(g.eventHex.startsWith('aa6176' + '01' + '636e6574' + '48' + golden.token.networkIdHex + '63736571')).toBe(true)

      // And it opens back to the same fields.
      const opened = openEnvelope(fromHex(g.envelopeHex), net, new Ed25519Verifier())
      expect(opened.idHex).toBe(g.idHex)
      expect(opened.fields).toEqual(ev.fields)
      expect(openTrusted(fromHex(g.envelopeHex), net).idHex).toBe(g.idHex)
    })
  }

  it('the four events form a valid log, and its frontier has the golden wire form', () => {
    const log = new MergedLog({ net, verifier: new Ed25519Verifier() })
    const res = log.ingest([...golden.events].reverse().map((g) => fromHex(g.envelopeHex)))
    expect(res.rejected).toEqual([])
    expect(log.size).toBe(4)
    const f = log.frontier()
    expect(Object.fromEntries([...f].sort(([a], [b]) => (a < b ? -1 : 1)))).toEqual(golden.frontier.entries)
    expect(toHex(encodeFrontier(f))).toBe(golden.frontier.hex)
    expect(decodeFrontier(fromHex(golden.frontier.hex))).toEqual(f)
  })

  it('docs/event-format.md quotes these vectors and names every type, limit and error code', () => {
    const doc = readFileSync(new URL('../../docs/event-format.md', import.meta.url), 'utf8')
    const quoted = [
      golden.token.text, golden.token.networkIdHex, golden.domainTagHex,
      golden.token.identifiers.gossipTopic, golden.token.identifiers.dhtProtocolPrefix, golden.token.identifiers.mdnsServiceName,
      golden.token.derived['pnet-psk (32 bytes)'] as string, golden.token.rendezvous.current, golden.token.k3sClusterToken.default as string,
      ...golden.identities.flatMap((i) => [i.publicKeyHex, i.peerId]),
      ...golden.events.flatMap((e) => [e.eventHex, e.sigHex, e.idHex, `82${e.envelopeHex.slice(2, 6)}`])
    ]
    for (const q of quoted) expect(doc, q.slice(0, 24)).toContain(q)
    const frontierRows = golden.frontier.hex.slice(2)
    expect(doc.replace(/\s+/g, '')).toContain(frontierRows)
    for (const t of EVENT_TYPES) expect(doc).toContain(`\`${t}\``)
    for (const [name, value] of Object.entries(LIMITS)) {
      expect(doc, name).toContain(`\`${name}\``)
      expect(doc.replace(/,/g, ''), name).toContain(String(value))
    }
    const errorsSrc = readFileSync(new URL('../../src/log/errors.ts', import.meta.url), 'utf8')
    const codes = [...new Set([...errorsSrc.matchAll(/'(ERR_[A-Z_]+)'/g)].map((m) => m[1] as string))]
    expect(codes.length).toBeGreaterThan(25)
    for (const c of codes) expect(doc, c).toContain(c)
  })
})
