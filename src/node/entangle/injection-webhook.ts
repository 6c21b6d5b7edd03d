import https from 'node:https'
import type { AddressInfo } from 'node:net'
import type { KubeClient } from '../../adapters/kube/client.js'
import type { MeshLogger } from '../../net/mesh-logger.js'
import { ENTANGLE_RESOURCES } from './resources.js'
import { review, type SidecarSettings } from './sidecar.js'
import { makeCertificates, needsRotation, type WebhookCertificates } from './webhook-certs.js'

/**
 * The sidecar injection webhook, served by the agent over TLS with its own CA
 * (webhook-certs.ts). It rotates CA and certificate when a third of their validity is left, and
 * keeps the caBundle of its MutatingWebhookConfiguration current (checked every minute): the new
 * CA first, the previous one kept until it expires (the API server may still hold connections or
 * a cached bundle).
 * Requests: POST /mutate with an AdmissionReview v1 (at most 1 MiB, as the API server sends),
 * answered by sidecar.ts's `review` (always allowed). See docs/entangle.md.
 */

export const WEBHOOK_CONFIGURATION = 'weft-sidecar-injector'
/** Where the API server posts (clientConfig.service.path). */
export const WEBHOOK_PATH = '/mutate'
const MAX_BODY = 1 << 20

export interface InjectionWebhookOptions {
  /** Address to listen on (`0.0.0.0:9443`; tests 127.0.0.1:0). */
  listen: { host: string, port: number }
  /** The serving certificate's names: the webhook Service's DNS names (and IPs for tests). */
  dnsNames: readonly string[]
  ips?: readonly string[]
  sidecar: () => SidecarSettings
  /** Updates the MutatingWebhookConfiguration's caBundle; undefined: leave it (tests without a cluster). */
  kube?: KubeClient
  /** Its name. Default weft-sidecar-injector. */
  configuration?: string
  log: MeshLogger
  now: () => number
  /** Validity of CA and certificate. Default 90 days. */
  validityMs?: number
  /** How often rotation and the caBundle are checked. Default 60 s. */
  checkMs?: number
}

export interface InjectionWebhookStatus {
  listen: string
  notAfter: string
  caBundleSynced: boolean
  reviewed: number
  injected: number
  lastError?: string
}

export class InjectionWebhook {
  readonly #o: InjectionWebhookOptions
  #server: https.Server | undefined
  #certs: WebhookCertificates | undefined
  #previous: WebhookCertificates | undefined
  #timer: NodeJS.Timeout | undefined
  #synced = false
  #reviewed = 0
  #injected = 0
  #lastError: string | undefined
  #address = ''

  constructor (opts: InjectionWebhookOptions) {
    this.#o = opts
  }

  /** The CA bundle the API server must trust (PEM): the current CA and the previous one while valid. */
  caBundle (): string {
    const now = this.#o.now()
    return [this.#certs, this.#previous].filter((c): c is WebhookCertificates => c !== undefined && c.notAfter.getTime() > now).map((c) => c.caPem).join('')
  }

  async start (): Promise<{ host: string, port: number }> {
    this.#certs = this.#make()
    this.#server = https.createServer({ cert: this.#certs.certPem, key: this.#certs.keyPem, minVersion: 'TLSv1.2' }, (req, resp) => { this.#handle(req, resp) })
    await new Promise<void>((resolve, reject) => {
      this.#server?.once('error', reject)
      this.#server?.listen(this.#o.listen.port, this.#o.listen.host, () => { resolve() })
    })
    const a = this.#server.address() as AddressInfo
    this.#address = `${a.address}:${a.port}`
    await this.#syncCaBundle()
    this.#schedule()
    this.#o.log.info({ listen: this.#address, notAfter: this.#certs.notAfter.toISOString() }, 'sidecar injection webhook listening')
    return { host: a.address, port: a.port }
  }

  /**
   * Rotate now if due (the timer calls this); else make sure the caBundle says so: a get, and an
   * update only when it differs (re-applying deploy/webhook.yaml empties it, for one).
   */
  async check (): Promise<void> {
    const certs = this.#certs
    if (certs !== undefined && needsRotation(certs, new Date(this.#o.now()))) await this.rotate()
    else await this.#syncCaBundle()
  }

  /** New CA and certificate: the caBundle first (both CAs), then the server's certificate. */
  async rotate (): Promise<void> {
    this.#previous = this.#certs
    this.#certs = this.#make()
    this.#synced = false
    await this.#syncCaBundle()
    this.#server?.setSecureContext({ cert: this.#certs.certPem, key: this.#certs.keyPem })
    this.#o.log.info({ notAfter: this.#certs.notAfter.toISOString() }, 'sidecar injection webhook: certificate rotated')
  }

  status (): InjectionWebhookStatus {
    return {
      listen: this.#address,
      notAfter: this.#certs?.notAfter.toISOString() ?? '',
      caBundleSynced: this.#synced,
      reviewed: this.#reviewed,
      injected: this.#injected,
      ...(this.#lastError !== undefined ? { lastError: this.#lastError } : {})
    }
  }

  async stop (): Promise<void> {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    const server = this.#server
    this.#server = undefined
    if (server !== undefined) {
      await new Promise<void>((resolve) => {
        server.close(() => { resolve() })
        server.closeAllConnections()
      })
    }
  }

  #make (): WebhookCertificates {
    return makeCertificates({ dnsNames: this.#o.dnsNames, ...(this.#o.ips !== undefined ? { ips: this.#o.ips } : {}), now: new Date(this.#o.now()), validityMs: this.#o.validityMs ?? 90 * 86_400_000 })
  }

  #schedule (): void {
    this.#timer = setTimeout(() => {
      void this.check().catch((err: unknown) => { this.#lastError = (err as Error).message }).finally(() => { if (this.#server !== undefined) this.#schedule() })
    }, this.#o.checkMs ?? 60_000)
    this.#timer.unref()
  }

  /** Write the caBundle into every webhook of the configuration (retried on the next check when it fails). */
  async #syncCaBundle (): Promise<void> {
    const kube = this.#o.kube
    if (kube === undefined) {
      this.#synced = true
      return
    }
    const name = this.#o.configuration ?? WEBHOOK_CONFIGURATION
    const bundle = Buffer.from(this.caBundle()).toString('base64')
    try {
      for (let attempt = 0; attempt < 5; attempt++) {
        const cfg = await kube.get<{ metadata: { name?: string }, webhooks?: Array<{ clientConfig?: { caBundle?: string } }> }>(ENTANGLE_RESOURCES.mutatingWebhookConfigurations, undefined, name)
        if (cfg === undefined) throw new Error(`MutatingWebhookConfiguration ${name} does not exist (apply deploy/webhook.yaml)`)
        const webhooks = cfg.webhooks ?? []
        if (webhooks.every((w) => w.clientConfig?.caBundle === bundle)) break
        try {
          await kube.replace(ENTANGLE_RESOURCES.mutatingWebhookConfigurations, undefined, { ...cfg, webhooks: webhooks.map((w) => ({ ...w, clientConfig: { ...w.clientConfig, caBundle: bundle } })) })
          break
        } catch (err) {
          if ((err as { code?: string }).code !== 'Conflict' || attempt === 4) throw err
        }
      }
      this.#synced = true
      this.#lastError = undefined
    } catch (err) {
      this.#synced = false
      this.#lastError = `caBundle: ${(err as Error).message}`
      this.#o.log.warn({ err: (err as Error).message }, 'sidecar injection webhook: cannot update the caBundle; retried at the next check')
    }
  }

  #handle (req: import('node:http').IncomingMessage, resp: import('node:http').ServerResponse): void {
    if (req.method !== 'POST' || (req.url ?? '').split('?')[0] !== WEBHOOK_PATH) {
      resp.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n')
      return
    }
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > MAX_BODY) req.destroy()
      else chunks.push(c)
    })
    req.on('end', () => {
      let body: unknown
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
      } catch {
        body = undefined // answered below: allowed unchanged
      }
      const r = review(body, this.#o.sidecar())
      this.#reviewed++
      if (r.injected !== undefined) {
        this.#injected++
        this.#o.log.info({ service: `${r.injected.namespace}/${r.injected.name}`, direction: r.injected.direction }, 'sidecar injected')
      }
      if (r.problem !== undefined) this.#o.log.warn({ problem: r.problem }, 'sidecar not injected')
      const text = JSON.stringify(r.answer)
      resp.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) }).end(text)
    })
  }
}
