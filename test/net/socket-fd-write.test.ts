import { describe, expect, it } from 'vitest'
import { createServer, connect, type Socket } from 'node:net'
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { socketWriteIsDirect, writeToSocket } from '../../src/net/socket-fd-write.js'

async function pair (): Promise<{ client: Socket, server: Socket, close: () => void }> {
  let accepted: (s: Socket) => void = () => {}
  const got = new Promise<Socket>((resolve) => { accepted = resolve })
  const srv = createServer((s) => { accepted(s) })
  await new Promise<void>((resolve) => { srv.listen(0, '127.0.0.1', resolve) })
  const client = connect({ port: (srv.address() as { port: number }).port, host: '127.0.0.1' })
  await new Promise((resolve) => client.once('connect', resolve))
  const server = await got
  return { client, server, close: () => { client.destroy(); server.destroy(); srv.close() } }
}

describe('writeToSocket (the direct path\'s short way to the kernel)', () => {
  it('takes the short way on Linux', () => {
    expect(process.platform !== 'linux' || socketWriteIsDirect()).toBe(true)
  })

  it('keeps every byte in order through back-pressure: a reader that pauses, many writes, some partial', async () => {
    const { client, server, close } = await pair()
    try {
      const sent = createHash('sha256')
      let sentBytes = 0
      const received = createHash('sha256')
      let receivedBytes = 0
      server.pause()
      server.on('data', (c: Buffer) => { received.update(c); receivedBytes += c.byteLength })
      let sawBackPressure = false
      for (let i = 0; i < 20_000; i++) {
        const chunk = new Uint8Array(randomBytes(1 + (i * 37) % 3000))
        sent.update(chunk)
        sentBytes += chunk.byteLength
        if (!writeToSocket(client, chunk)) sawBackPressure = true
      }
      expect(sawBackPressure).toBe(true) // the kernel buffers filled and Node's queue took over
      server.resume()
      client.end()
      await new Promise((resolve) => server.once('end', resolve))
      expect(receivedBytes).toBe(sentBytes)
      expect(received.digest('hex')).toBe(sent.digest('hex'))
    } finally {
      close()
    }
  })

  it('a destroyed socket is never written to by descriptor (its number may already belong to another file)', async () => {
    const { client, close } = await pair()
    const dir = mkdtempSync(join(tmpdir(), 'weft-fdw-'))
    try {
      client.on('error', () => {})
      client.destroy()
      // The lowest free number: usually the socket's old one.
      const file = join(dir, 'other')
      const fd = openSync(file, 'w')
      try {
        expect(writeToSocket(client, new Uint8Array(10).fill(65))).toBe(false)
        expect(readFileSync(file).byteLength).toBe(0)
      } finally {
        closeSync(fd)
      }
    } finally {
      close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
