import { describe, expect, it } from 'vitest'
import { formatToken, newToken } from '../../src/log/token.js'
import { resolveUpConfig } from '../../src/node/config.js'

/** The entangle settings of `weft up`: what they need is said at start, with the fix. */
describe('weft up --entangle settings', () => {
  const token = formatToken(newToken())
  const fails = async (flags: Parameters<typeof resolveUpConfig>[0], env: Record<string, string> = {}): Promise<string> => {
    try {
      await resolveUpConfig({ token, dataDir: '/tmp/weft-entangle-config', ...flags }, env)
    } catch (err) {
      return (err as Error).message
    }
    throw new Error('accepted')
  }

  it('needs a kubeconfig; the webhook needs --entangle and an image; a bad listen address is refused', async () => {
    expect(await fails({ entangle: true })).toContain('entangle needs the cluster\'s kubeconfig')
    expect(await fails({ kubeconfig: 'in-cluster', entangleWebhook: '0.0.0.0:9443', sidecarImage: 'x' })).toContain('entangle-webhook needs --entangle')
    expect(await fails({ kubeconfig: 'in-cluster', entangle: true, entangleWebhook: '0.0.0.0:9443' })).toContain('--sidecar-image')
    expect(await fails({ kubeconfig: 'in-cluster', entangle: true, entangleWebhook: 'here', sidecarImage: 'x' })).toContain('--entangle-webhook')
  })

  it('resolves them, the image from WEFT_IMAGE when not given', async () => {
    const c = await resolveUpConfig({ token, dataDir: '/tmp/weft-entangle-config', kubeconfig: 'in-cluster', entangle: true, entangleWebhook: '0.0.0.0:9443' }, { WEFT_IMAGE: 'ghcr.io/x/weft:1' })
    expect(c.entangle).toBe(true)
    expect(c.entangleWebhook).toEqual({ host: '0.0.0.0', port: 9443 })
    expect(c.sidecarImage).toBe('ghcr.io/x/weft:1')
    const off = await resolveUpConfig({ token, dataDir: '/tmp/weft-entangle-config' }, {})
    expect(off.entangle).toBe(false)
    expect(off.entangleWebhook).toBeUndefined()
  })
})

describe('weft sidecar: bad flags are usage errors (exit 2) naming the fix', () => {
  it('refuses a service without a namespace, a bad port, a bad direction and a bad address', async () => {
    const { weft, assertBuilt } = await import('../cli/helpers.js')
    assertBuilt()
    const token = formatToken(newToken())
    for (const [args, says] of [
      [['--direction', 'expose', '--service', 'web', '--port', '80'], 'expected <namespace>/<name>'],
      [['--direction', 'expose', '--service', 'shop/web', '--port', '70000'], '--port 70000'],
      [['--direction', 'both', '--service', 'shop/web', '--port', '80'], 'both'],
      [['--direction', 'consume', '--service', 'shop/web', '--port', '80', '--address', 'db.lan:80'], 'listen address']
    ] as const) {
      const r = await weft(['sidecar', '--token', token, '--data-dir', '/tmp/weft-sidecar-never', ...args])
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2)
      expect(r.stderr).toContain(says)
    }
  }, 60_000)
})
