import type { KubeObject } from './client.js'
import type { KubeEvent } from './types.js'

/**
 * A core/v1 Warning Event about `obj`, as a controller reports a failure to `kubectl describe`
 * (one per new failure: the callers decide when). `component` is `source.component`
 * (`weft-mcs`), `reportingComponent` the controller's name (`weft.io/mcs`).
 */
export function warningEvent (obj: KubeObject, reason: string, message: string, who: { component: string, reportingComponent: string }, now: Date): KubeEvent {
  const at = now.toISOString().replace(/\.\d{3}Z$/, 'Z')
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { generateName: `${obj.metadata.name ?? 'weft'}.`, namespace: obj.metadata.namespace },
    involvedObject: {
      ...(obj.apiVersion !== undefined ? { apiVersion: obj.apiVersion } : {}),
      kind: obj.kind ?? '',
      ...(obj.metadata.namespace !== undefined ? { namespace: obj.metadata.namespace } : {}),
      name: obj.metadata.name ?? '',
      ...(obj.metadata.uid !== undefined ? { uid: obj.metadata.uid } : {})
    },
    reason,
    message: message.slice(0, 1024),
    type: 'Warning',
    source: { component: who.component },
    reportingComponent: who.reportingComponent,
    firstTimestamp: at,
    lastTimestamp: at,
    count: 1
  }
}
