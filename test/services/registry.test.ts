import { describe, expect, it } from 'vitest'
import {
  EXPOSE_ANNOTATION, exportersOf, exposeExportBody, listServices, parseListen, parseTarget, planExposes, type ExposeSpec
} from '../../src/node/service-registry.js'
import { join, LogBuilder } from '../projections/support.js'

const spec = (name: string, port: number, namespace = 'default'): ExposeSpec => ({ namespace, name, target: { host: '127.0.0.1', port }, port })

describe('service registry (pure)', () => {
  it('parses targets and listen addresses', () => {
    expect(parseTarget('127.0.0.1:80')).toEqual({ host: '127.0.0.1', port: 80 })
    expect(parseTarget('db.internal:5432')).toEqual({ host: 'db.internal', port: 5432 })
    expect(parseTarget('[::1]:22')).toEqual({ host: '::1', port: 22 })
    for (const bad of ['80', 'host', 'host:0', 'host:99999', '::1:22', 'a b:1', '[nothex]:1']) expect(() => parseTarget(bad), bad).toThrow()
    expect(parseListen('8080')).toEqual({ host: '127.0.0.1', port: 8080 })
    expect(parseListen('0.0.0.0:0')).toEqual({ host: '0.0.0.0', port: 0 })
    expect(parseListen('[::1]:9')).toEqual({ host: '::1', port: 9 })
    for (const bad of ['localhost:80', '1.2.3.4', '70000', '1.2.3.4:x']) expect(() => parseListen(bad), bad).toThrow()
  })

  it('plans exports for exposes, leaves a same export by a peer of the cluster alone, and withdraws stale ones', () => {
    const log = new LogBuilder(3)
    log.append(0, 'node.join', join('a', 'east'))
    log.append(1, 'node.join', join('b', 'east'), { seesAll: true })
    log.append(2, 'node.join', join('c', 'west'), { seesAll: true })
    // Not a member yet: nothing to do, and it says why.
    expect(new LogBuilder(1).stateOf(0).members.active.size).toBe(0)
    const waiting = planExposes(new LogBuilder(1).stateOf(0), log.hex(0), [spec('web', 80)])
    expect(waiting).toMatchObject({ steps: [], waiting: expect.stringContaining('not an active member') })

    const s = log.stateOf(0)
    const plan = planExposes(s, log.hex(0), [spec('web', 80)])
    expect(plan.steps).toEqual([{ type: 'service.export', body: exposeExportBody('east', spec('web', 80)), why: expect.any(String) }])
    log.append(0, 'service.export', exposeExportBody('east', spec('web', 80)), { seesAll: true })
    // B in the same cluster exposes the same: the cluster exports it already, nothing to append.
    log.append(1, 'node.join', join('b', 'east'), { seesAll: true })
    expect(planExposes(log.stateOf(1), log.hex(1), [spec('web', 80)]).steps).toEqual([])
    // B exposes it on another port: contested, left alone.
    expect(planExposes(log.stateOf(1), log.hex(1), [spec('web', 81)])).toMatchObject({ steps: [], contested: [{ name: 'web', author: log.hex(0) }] })
    // A changes its port: a new export.
    expect(planExposes(log.stateOf(0), log.hex(0), [spec('web', 81)]).steps.map((x) => x.type)).toEqual(['service.export'])
    // A no longer exposes it: unexport; B does not withdraw A's export.
    expect(planExposes(log.stateOf(0), log.hex(0), []).steps).toEqual([{ type: 'service.unexport', body: { cluster: 'east', namespace: 'default', name: 'web' }, why: expect.any(String) }])
    expect(planExposes(log.stateOf(1), log.hex(1), []).steps).toEqual([])
    // A Kubernetes export (no expose annotation) of A's is never withdrawn by the planner.
    log.append(0, 'service.export', { ...exposeExportBody('east', spec('db', 5432)), annotations: {} }, { seesAll: true })
    expect(planExposes(log.stateOf(0), log.hex(0), [spec('web', 80)]).steps).toEqual([])
  })

  it('lists the exporting nodes of the import clusters, rotating, without self or departed authors', () => {
    const log = new LogBuilder(4)
    log.append(0, 'node.join', join('a', 'east'))
    log.append(1, 'node.join', join('b', 'west'), { seesAll: true })
    log.append(2, 'node.join', join('c', 'north'), { seesAll: true })
    log.append(3, 'node.join', join('d', 'south'), { seesAll: true })
    for (const [i, c] of [[0, 'east'], [1, 'west'], [2, 'north']] as const) log.append(i, 'service.export', exposeExportBody(c, spec('web', 80)), { seesAll: true })
    log.append(3, 'node.join', join('d', 'south'), { seesAll: true })
    const s = log.stateOf(3)
    const ids = (r: number): string[] => exportersOf(s, log.hex(3), 'default', 'web', 80, r).map((e) => e.cluster)
    expect(ids(0)).toEqual(['east', 'north', 'west'])
    expect(ids(1)).toEqual(['north', 'west', 'east'])
    expect(exportersOf(s, log.hex(3), 'default', 'web', 81)).toEqual([])
    expect(exportersOf(s, log.hex(0), 'default', 'web', 80).map((e) => e.cluster)).toEqual(['north', 'west'])
    // B leaves: its cluster has no active member, the import drops it.
    log.append(1, 'node.leave', {}, { seesAll: true })
    log.append(3, 'node.join', join('d', 'south'), { seesAll: true })
    expect(exportersOf(log.stateOf(3), log.hex(3), 'default', 'web', 80).map((e) => e.cluster)).toEqual(['east', 'north'])
    const listed = listServices(log.stateOf(3))
    expect(listed).toHaveLength(1)
    expect(listed[0]?.exporters.map((e) => [e.cluster, e.plain, e.contributing, e.ready])).toEqual([
      ['east', true, true, 'Exported'], ['north', true, true, 'Exported'], ['west', true, false, 'Pending']
    ])
    expect(exposeExportBody('east', spec('web', 80)).annotations).toEqual({ [EXPOSE_ANNOTATION]: 'true' })
  })
})
