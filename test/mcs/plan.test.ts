import { describe, expect, it } from 'vitest'
import type { Service, ServiceExport } from '../../src/adapters/kube/types.js'
import { exportBodyFor } from '../../src/node/mcs/export-plan.js'
import { mergeConditions } from '../../src/node/mcs/conditions.js'

const se = (spec: ServiceExport['spec'] = {}): ServiceExport => ({ metadata: { name: 'web', namespace: 'default' }, spec })
const svc = (spec: Service['spec']): Service => ({ metadata: { name: 'web', namespace: 'default' }, spec })

describe('mcs export plan (pure)', () => {
  it('builds the service.export body from a Service and its ServiceExport', () => {
    const r = exportBodyFor('east', se({ exportedLabels: { a: 'b' }, exportedAnnotations: { c: 'd' } }), svc({
      clusterIP: 'None', ports: [{ name: 'http', port: 80 }, { protocol: 'UDP', port: 53, appProtocol: 'dns' }], sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } }, internalTrafficPolicy: 'Local'
    }))
    expect(r).toEqual({
      ok: true,
      body: {
        cluster: 'east', namespace: 'default', name: 'web', type: 'Headless',
        ports: [{ name: 'http', protocol: 'TCP', port: 80 }, { protocol: 'UDP', port: 53, appProtocol: 'dns' }],
        sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 60, internalTrafficPolicy: 'Local',
        labels: { a: 'b' }, annotations: { c: 'd' }
      }
    })
    expect(exportBodyFor('east', se(), svc({ ports: [] }))).toMatchObject({ ok: true, body: { type: 'ClusterSetIP', sessionAffinity: 'None', labels: {}, annotations: {} } })
    expect(exportBodyFor('east', se(), undefined)).toMatchObject({ ok: false, reason: 'NoService' })
    expect(exportBodyFor('east', se(), svc({ type: 'ExternalName', externalName: 'x.example' }))).toMatchObject({ ok: false, reason: 'InvalidServiceType' })
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']))
    expect(exportBodyFor('east', se({ exportedLabels: many }), svc({ ports: [] }))).toMatchObject({ ok: false, reason: 'UnsupportedService' })
  })

  it('keeps lastTransitionTime while a condition keeps its status, and says when nothing changes', () => {
    const t0 = new Date('2025-01-01T00:00:00Z')
    const first = mergeConditions(undefined, [{ type: 'Valid', status: 'True', reason: 'Valid', message: '' }], 1, t0)
    expect(first).toEqual([{ type: 'Valid', status: 'True', reason: 'Valid', message: '', lastTransitionTime: '2025-01-01T00:00:00Z', observedGeneration: 1 }])
    expect(mergeConditions(first, [{ type: 'Valid', status: 'True', reason: 'Valid', message: '' }], 1, new Date())).toBeUndefined()
    const second = mergeConditions(first, [{ type: 'Valid', status: 'True', reason: 'Valid', message: 'x' }], 2, new Date('2025-01-02T00:00:00Z'))
    expect(second?.[0]?.lastTransitionTime).toBe('2025-01-01T00:00:00Z')
    const third = mergeConditions([...(second ?? []), { type: 'Other', status: 'True', reason: 'R', message: '', lastTransitionTime: 'x' }], [{ type: 'Valid', status: 'False', reason: 'NoService', message: '' }], 2, new Date('2025-01-03T00:00:00Z'))
    expect(third?.map((c) => [c.type, c.lastTransitionTime])).toEqual([['Valid', '2025-01-03T00:00:00Z'], ['Other', 'x']])
  })
})
