/**
 * Packet framing on a peer's packet stream: each IP packet is a 2-byte big-endian length and the
 * packet. Several frames go out in one write (batching); a read may end anywhere in a frame.
 */
export const MAX_PACKET_BYTES = 65_535

export function encodeFrames (packets: readonly Uint8Array[]): Uint8Array {
  let size = 0
  for (const p of packets) size += 2 + p.byteLength
  const out = new Uint8Array(size)
  let o = 0
  for (const p of packets) {
    out[o] = p.byteLength >>> 8
    out[o + 1] = p.byteLength & 0xff
    out.set(p, o + 2)
    o += 2 + p.byteLength
  }
  return out
}

/** Reassembles frames from chunks. A zero-length frame is a protocol error (it never carries a packet). */
export class FrameDecoder {
  private buf: Uint8Array = new Uint8Array(0)

  /** Feed one chunk; returns the complete packets it finished, or throws on a malformed frame. */
  push (chunk: Uint8Array): Uint8Array[] {
    let data: Uint8Array
    if (this.buf.byteLength === 0) {
      data = chunk
    } else {
      data = new Uint8Array(this.buf.byteLength + chunk.byteLength)
      data.set(this.buf)
      data.set(chunk, this.buf.byteLength)
    }
    const out: Uint8Array[] = []
    let o = 0
    while (data.byteLength - o >= 2) {
      const len = ((data[o] as number) << 8) | (data[o + 1] as number)
      if (len === 0) throw new Error('malformed packet frame: zero length')
      if (data.byteLength - o - 2 < len) break
      out.push(data.subarray(o + 2, o + 2 + len))
      o += 2 + len
    }
    // Keep the tail by copy: the caller's chunk buffer may be reused.
    this.buf = o === data.byteLength ? new Uint8Array(0) : data.slice(o)
    return out
  }

  get buffered (): number { return this.buf.byteLength }
}
