import { generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto'
import forge from 'node-forge'

/**
 * The injection webhook's own PKI: a CA and a serving certificate it signs, made in memory by
 * the agent (no cert-manager, no openssl). Keys come from node:crypto (RSA 2048, fast and
 * native); node-forge only assembles and signs the X.509 structures, which node:crypto cannot.
 * The API server trusts the CA through the MutatingWebhookConfiguration's caBundle, which the
 * agent keeps current (injection-webhook.ts).
 */

export interface WebhookCertificates {
  /** PEM of the CA certificate (what goes into caBundle). */
  caPem: string
  /** PEM of the serving certificate and its key. */
  certPem: string
  keyPem: string
  notBefore: Date
  notAfter: Date
}

export interface MakeCertificatesOptions {
  /** DNS names of the serving certificate (`weft-webhook.weft-system.svc`…). */
  dnsNames: readonly string[]
  /** IP addresses of the serving certificate (tests: 127.0.0.1). */
  ips?: readonly string[]
  now: Date
  /** Validity of both certificates. */
  validityMs: number
}

function serial (): string {
  // Positive (first bit clear), 16 bytes, as RFC 5280 asks.
  const b = randomBytes(16)
  b[0] = (b[0] as number) & 0x7f
  return b.toString('hex')
}

function keyPair (): { privateKey: forge.pki.rsa.PrivateKey, publicKey: forge.pki.rsa.PublicKey, pem: string } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const pem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString()
  const priv = forge.pki.privateKeyFromPem(pem) as forge.pki.rsa.PrivateKey
  return { privateKey: priv, publicKey: forge.pki.setRsaPublicKey(priv.n, priv.e), pem }
}

type Name = forge.pki.CertificateField[]

/** An unsigned certificate with a fresh serial. */
function certificate (publicKey: forge.pki.rsa.PublicKey, subject: Name, issuer: Name, notBefore: Date, notAfter: Date, extensions: object[]): forge.pki.Certificate {
  const c = forge.pki.createCertificate()
  c.serialNumber = serial()
  c.publicKey = publicKey
  c.validity.notBefore = notBefore
  c.validity.notAfter = notAfter
  c.setSubject(subject)
  c.setIssuer(issuer)
  c.setExtensions(extensions)
  return c
}

export function makeCertificates (opts: MakeCertificatesOptions): WebhookCertificates {
  if (opts.dnsNames.length === 0 && (opts.ips ?? []).length === 0) throw new Error('a serving certificate needs at least one DNS name or IP')
  // Backdated a minute: API servers whose clock is slightly behind accept it at once.
  const notBefore = new Date(opts.now.getTime() - 60_000)
  const notAfter = new Date(opts.now.getTime() + opts.validityMs)
  const ca = keyPair()
  const caName = [{ name: 'commonName', value: `weft-webhook-ca-${randomBytes(4).toString('hex')}` }, { name: 'organizationName', value: 'weft' }]
  const caCert = certificate(ca.publicKey, caName, caName, notBefore, notAfter, [
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' }
  ])
  caCert.sign(ca.privateKey, forge.md.sha256.create())

  const leaf = keyPair()
  const cert = certificate(leaf.publicKey, [{ name: 'commonName', value: opts.dnsNames[0] ?? (opts.ips ?? [])[0] ?? 'weft-webhook' }], caName, notBefore, notAfter, [
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: [...opts.dnsNames.map((value) => ({ type: 2, value })), ...(opts.ips ?? []).map((ip) => ({ type: 7, ip }))] },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() }
  ])
  cert.sign(ca.privateKey, forge.md.sha256.create())
  return { caPem: forge.pki.certificateToPem(caCert), certPem: forge.pki.certificateToPem(cert), keyPem: leaf.pem, notBefore, notAfter }
}

/** Whether `certs` should be replaced at `now`: less than a third of its validity left. */
export function needsRotation (certs: Pick<WebhookCertificates, 'notBefore' | 'notAfter'>, now: Date): boolean {
  const total = certs.notAfter.getTime() - certs.notBefore.getTime()
  return certs.notAfter.getTime() - now.getTime() < total / 3
}

/** notAfter of a PEM certificate (node:crypto parses what forge wrote: a cross-check in tests). */
export function certificateExpiry (pem: string): Date {
  return new Date(new X509Certificate(pem).validTo)
}
