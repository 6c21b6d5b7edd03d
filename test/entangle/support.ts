import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import YAML from 'yaml'
import type { KubeObject } from '../../src/adapters/kube/client.js'
import { formatToken, type NetworkToken } from '../../src/log/token.js'
import { ENTANGLE_RESOURCES } from '../../src/node/entangle/resources.js'
import { MANIFEST_RESOURCES, type FakeKube } from '../support/fake-kube.js'

export const DEPLOY = fileURLToPath(new URL('../../deploy', import.meta.url))

/** Install deploy/crds/ into the fake, so it validates custom resources against their schemas. */
export function installCrds (fake: FakeKube): void {
  for (const f of readdirSync(join(DEPLOY, 'crds'))) {
    fake.put(MANIFEST_RESOURCES.customResourceDefinitions, YAML.parse(readFileSync(join(DEPLOY, 'crds', f), 'utf8')) as KubeObject)
  }
}

/** A Secret holding a network token under `token`. */
export function putTokenSecret (fake: FakeKube, namespace: string, name: string, token: NetworkToken | string): void {
  const text = typeof token === 'string' ? token : formatToken(token)
  fake.put(ENTANGLE_RESOURCES.secrets, { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace }, data: { token: Buffer.from(text).toString('base64') } } as KubeObject)
}

export interface Ent extends KubeObject {
  spec: Record<string, unknown>
  status?: { conditions?: Array<{ type: string, status: string, reason: string, message: string }>, service?: string, address?: string, observedGeneration?: number }
}

export function readyOf (e: Ent | undefined): { status: string, reason: string, message: string } | undefined {
  return e?.status?.conditions?.find((c) => c.type === 'Ready')
}
