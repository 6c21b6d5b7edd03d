/**
 * The floor for a userspace VPN written for Node.js: a bare Node TCP echo between the VPN bench's
 * two namespaces, one 118-byte message (a ping's size on the direct path) every 10 ms, as `ping
 * -i 0.01` sends them. Its round trip is two wake-ups of a Node process (B's server, A's client);
 * a ping through Weft crosses four (A's device, B's socket, B's device, A's socket).
 *
 *   node --import tsx bench/_node-echo.ts server <port>
 *   node --import tsx bench/_node-echo.ts client <host> <port> <rounds>   → {"p50Us": …}
 */
import { connect, createServer } from 'node:net'

const [mode, a = '', b = '', c = '200'] = process.argv.slice(2)

if (mode === 'server') {
  createServer({ noDelay: true }, (s) => { s.on('data', (d) => { s.write(d) }); s.on('error', () => {}) })
    .listen(Number(a), '0.0.0.0', () => { process.stdout.write('ready\n') })
} else if (mode === 'client') {
  const rounds = Number(c)
  const msg = Buffer.alloc(118, 1)
  const s = connect({ host: a, port: Number(b), noDelay: true })
  await new Promise((resolve, reject) => { s.once('connect', resolve); s.once('error', reject) })
  const rtt: number[] = []
  for (let i = 0; i < rounds; i++) {
    const t = process.hrtime.bigint()
    s.write(msg)
    let got = 0
    await new Promise<void>((resolve) => {
      const on = (d: Buffer): void => { got += d.byteLength; if (got >= msg.byteLength) { s.off('data', on); resolve() } }
      s.on('data', on)
    })
    rtt.push(Number(process.hrtime.bigint() - t) / 1000)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  s.destroy()
  rtt.sort((x, y) => x - y)
  process.stdout.write(JSON.stringify({ p50Us: rtt[rtt.length >> 1] }) + '\n')
} else {
  process.stderr.write('usage: _node-echo.ts server <port> | client <host> <port> <rounds>\n')
  process.exitCode = 2
}
