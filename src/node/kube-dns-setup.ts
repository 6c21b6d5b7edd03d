import { corednsSnippet, COREDNS_CUSTOM_KEY } from './coredns-snippet.js'
import { DEFAULT_SETTINGS } from '../projections/settings.js'
import { isKubeError, RESOURCES, type KubeClient, type KubeObject } from '../adapters/kube/client.js'

/**
 * `weft kube dns-setup`: put (or take out) the CoreDNS server blocks that forward the network
 * zone and `clusterset.local` to Weft DNS, inside a cluster's CoreDNS ConfigMap, between
 * `# weft: begin` and `# weft: end` lines. Everything outside the markers is left byte for byte;
 * a run that would change nothing writes nothing (the resourceVersion stays); a concurrent edit
 * (409 Conflict) is retried once on a fresh read. See docs/kube-remote.md.
 *
 * Targets: `coredns` (kubeadm and most distributions; key `Corefile`, the blocks are appended
 * to the Corefile) or `coredns-custom` (k3s imports its `*.server` keys; key `weft.server`,
 * the ConfigMap is created when missing).
 */

export const WEFT_BEGIN = '# weft: begin'
export const WEFT_END = '# weft: end'
const BEGIN_NOTE = '(managed by "weft kube dns-setup"; "weft kube dns-setup --remove" deletes this block)'
/** In the begin line when the text before the block had no final newline and one was added. */
const NEWLINE_FLAG = '+newline'

export const DEFAULT_COREDNS_CONFIGMAP = 'coredns'
export const COREDNS_NAMESPACE = 'kube-system'

export class DnsSetupError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'DnsSetupError'
  }
}

/** The data key the blocks go into: `Corefile` in `coredns`, `weft.server` elsewhere (k3s coredns-custom). */
export function corednsKeyFor (configMap: string): string {
  return configMap === DEFAULT_COREDNS_CONFIGMAP ? 'Corefile' : COREDNS_CUSTOM_KEY
}

/** The marked block (without the begin line's newline flag) for these servers and zone. */
export function weftBlock (servers: readonly string[], zone: string = DEFAULT_SETTINGS.zone): string {
  const s = corednsSnippet({ zone, servers })
  return `${WEFT_BEGIN} ${BEGIN_NOTE}\n${s.corefile}${WEFT_END}\n`
}

interface Found { start: number, end: number, newlineAdded: boolean, text: string }

/** The marked block in `text`, if any; throws on broken or repeated markers (never guesses). */
export function findBlock (text: string): Found | undefined {
  const lines: Array<{ start: number, end: number, line: string }> = []
  let pos = 0
  while (pos < text.length) {
    const nl = text.indexOf('\n', pos)
    const end = nl === -1 ? text.length : nl + 1
    lines.push({ start: pos, end, line: text.slice(pos, nl === -1 ? text.length : nl).replace(/\r$/, '') })
    pos = end
  }
  const begins = lines.filter((l) => l.line.startsWith(WEFT_BEGIN))
  const ends = lines.filter((l) => l.line.trimEnd() === WEFT_END)
  if (begins.length === 0 && ends.length === 0) return undefined
  if (begins.length !== 1 || ends.length !== 1) {
    throw new DnsSetupError(`the Corefile has ${begins.length} "${WEFT_BEGIN}" and ${ends.length} "${WEFT_END}" lines (expected one of each); fix it by hand first`)
  }
  const b = begins[0] as { start: number, end: number, line: string }
  const e = ends[0] as { start: number, end: number, line: string }
  if (e.start < b.start) throw new DnsSetupError(`"${WEFT_END}" comes before "${WEFT_BEGIN}" in the Corefile; fix it by hand first`)
  return { start: b.start, end: e.end, newlineAdded: b.line.slice(WEFT_BEGIN.length).trimStart().startsWith(NEWLINE_FLAG), text: text.slice(b.start, e.end) }
}

/** `text` with the block put in (in place of an earlier one, else appended). */
export function withBlock (text: string, block: string): string {
  const found = findBlock(text)
  if (found !== undefined) {
    const b = found.newlineAdded ? flagNewline(block) : block
    return text.slice(0, found.start) + b + text.slice(found.end)
  }
  if (text === '' || text.endsWith('\n')) return text + block
  return `${text}\n${flagNewline(block)}`
}

/** `text` without the block (and without the newline added before it, if one was). */
export function withoutBlock (text: string): string {
  const found = findBlock(text)
  if (found === undefined) return text
  const start = found.newlineAdded && found.start > 0 && text[found.start - 1] === '\n' ? found.start - 1 : found.start
  return text.slice(0, start) + text.slice(found.end)
}

function flagNewline (block: string): string {
  return block.replace(WEFT_BEGIN, `${WEFT_BEGIN} ${NEWLINE_FLAG}`)
}

export interface DnsSetupOptions {
  client: KubeClient
  /** Weft DNS servers as CoreDNS pods reach them: ip, ip:port. Not needed with remove. */
  servers?: readonly string[]
  /** The network's zone (its `zone` setting). */
  zone?: string
  /** `coredns` (default) or `coredns-custom` (k3s). */
  configMap?: string
  namespace?: string
  /** The data key; default from corednsKeyFor(configMap). */
  key?: string
  remove?: boolean
}

export interface DnsSetupResult {
  configMap: string
  namespace: string
  key: string
  /** added: no block before; updated: a block with other content was replaced; unchanged; removed; absent: nothing to remove. */
  action: 'added' | 'updated' | 'unchanged' | 'removed' | 'absent'
  /** The ConfigMap's resourceVersion after the run (undefined when there is no ConfigMap). */
  resourceVersion?: string
  /** A 409 Conflict from a concurrent edit was retried. */
  retried: boolean
  /** The block now in the ConfigMap (not with remove). */
  block?: string
}

interface ConfigMap extends KubeObject { data?: Record<string, string> }

/** Add, update or remove the marked block. Throws DnsSetupError, CliError (bad --server/--zone) or KubeError. */
export async function corednsSetup (o: DnsSetupOptions): Promise<DnsSetupResult> {
  const name = o.configMap ?? DEFAULT_COREDNS_CONFIGMAP
  const namespace = o.namespace ?? COREDNS_NAMESPACE
  const key = o.key ?? corednsKeyFor(name)
  const remove = o.remove === true
  const block = remove ? undefined : weftBlock(o.servers ?? [], o.zone ?? DEFAULT_SETTINGS.zone)
  const base = { configMap: name, namespace, key }
  let retried = false
  for (let attempt = 0; ; attempt++) {
    const cm = await o.client.get<ConfigMap>(RESOURCES.configMaps, namespace, name)
    try {
      if (cm === undefined) {
        if (remove) return { ...base, action: 'absent', retried }
        if (name === DEFAULT_COREDNS_CONFIGMAP) {
          throw new DnsSetupError(`there is no ConfigMap ${namespace}/${name}: is CoreDNS installed? (on k3s, use --configmap coredns-custom)`)
        }
        const created = await o.client.create<ConfigMap>(RESOURCES.configMaps, namespace, {
          apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace }, data: { [key]: block as string }
        })
        return { ...base, action: 'added', resourceVersion: created.metadata.resourceVersion, retried, block }
      }
      const text = cm.data?.[key] ?? ''
      if (name === DEFAULT_COREDNS_CONFIGMAP && !remove && text.trim() === '') {
        throw new DnsSetupError(`${namespace}/${name} has no ${key}: not touching a ConfigMap that does not hold a Corefile`)
      }
      const before = findBlock(text)
      const next = remove ? withoutBlock(text) : withBlock(text, block as string)
      if (next === text) {
        return { ...base, action: remove ? 'absent' : 'unchanged', resourceVersion: cm.metadata.resourceVersion, retried, ...(block !== undefined ? { block } : {}) }
      }
      const data = { ...(cm.data ?? {}) }
      if (next === '' && key !== 'Corefile') delete data[key]
      else data[key] = next
      const updated = await o.client.replace<ConfigMap>(RESOURCES.configMaps, namespace, { ...cm, data })
      const action = remove ? 'removed' : before === undefined ? 'added' : 'updated'
      return { ...base, action, resourceVersion: updated.metadata.resourceVersion, retried, ...(block !== undefined ? { block } : {}) }
    } catch (err) {
      if (attempt === 0 && (isKubeError(err, 'Conflict') || isKubeError(err, 'AlreadyExists'))) {
        retried = true
        continue
      }
      throw err
    }
  }
}
