import fc from 'fast-check'
import jsonpatch from 'fast-json-patch'
import { describe, expect, it } from 'vitest'
import { review, SIDECAR_NAME, type SidecarSettings } from '../../src/node/entangle/sidecar.js'
import { validatePod } from '../support/fake-kube/validate-workloads.js'

const settings: SidecarSettings = { image: 'weft:test', cluster: 'east', peers: ['/ip4/10.0.0.5/tcp/4001/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'] }
const label = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}[a-z0-9]$/)

/** Valid pods of many shapes: containers, volumes and mounts, annotations or none. */
const pod = fc.record({
  names: fc.uniqueArray(label.filter((n) => n !== SIDECAR_NAME), { minLength: 1, maxLength: 4 }),
  volumes: fc.option(fc.uniqueArray(label.filter((n) => n !== 'weft-sidecar-data'), { maxLength: 3 }), { nil: undefined }),
  annotations: fc.option(fc.dictionary(fc.stringMatching(/^[a-z]{1,8}$/), fc.string({ maxLength: 10 }), { maxKeys: 3 }), { nil: undefined }),
  name: label,
  port: fc.integer({ min: 1, max: 65535 }),
  direction: fc.constantFrom('expose', 'consume')
}).map((p) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'p', namespace: 'shop', labels: { 'entanglement.weft.io/name': p.name, 'entanglement.weft.io/port': String(p.port), 'entanglement.weft.io/direction': p.direction }, ...(p.annotations !== undefined ? { annotations: p.annotations } : {}) },
  spec: {
    containers: p.names.map((n, i) => ({ name: n, image: 'busybox', ...(p.volumes !== undefined && p.volumes[i] !== undefined ? { volumeMounts: [{ name: p.volumes[i], mountPath: `/m${i}` }] } : {}) })),
    ...(p.volumes !== undefined ? { volumes: p.volumes.map((v) => ({ name: v, emptyDir: {} })) } : {})
  }
}))

const reviewOf = (object: unknown): unknown => ({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'u', kind: { group: '', version: 'v1', kind: 'Pod' }, operation: 'CREATE', object } })

describe('sidecar injection, properties', () => {
  it('any labelled valid pod: the patch applies, the pod stays valid with exactly one sidecar, and a second review changes nothing', () => {
    fc.assert(fc.property(pod, (p) => {
      const r = review(reviewOf(p), settings)
      expect(r.answer.response.allowed).toBe(true)
      const ops = JSON.parse(Buffer.from(r.answer.response.patch ?? '', 'base64').toString()) as jsonpatch.Operation[]
      const out = jsonpatch.applyPatch(structuredClone(p), ops, true, false).newDocument as typeof p
      expect(validatePod(out as never)).toEqual([])
      expect(out.spec.containers.filter((c) => c.name === SIDECAR_NAME).length).toBe(1)
      expect(out.metadata.annotations).toMatchObject(p.metadata.annotations ?? {})
      expect(review(reviewOf(out), settings).answer.response.patch).toBeUndefined()
    }), { numRuns: 200 })
  })

  it('anything at all as a body: allowed, never a throw, a patch only for a labelled pod', () => {
    fc.assert(fc.property(fc.anything(), (body) => {
      const r = review(body, settings)
      expect(r.answer.response.allowed).toBe(true)
      expect(r.answer.response.patch).toBeUndefined()
    }), { numRuns: 500 })
  })
})
