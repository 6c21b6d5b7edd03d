/**
 * Packet framing on a peer's packet stream: each frame is a 4-byte big-endian length, a 10-byte
 * virtio_net_hdr (segmentation and checksum offload state; all zero for a plain packet) and the
 * IP packet, which may be a TCP segment of up to 64 KiB. Several frames go out in one write
 * (batching); a read may end anywhere in a frame.
 */
export const VNET_HDR_BYTES = 10
export const MAX_PACKET_BYTES = 65_535 + VNET_HDR_BYTES
const LEN_BYTES = 4

export function encodeFrames (packets: readonly Uint8Array[]): Uint8Array {
  let size = 0
  for (const p of packets) size += LEN_BYTES + p.byteLength
  const out = new Uint8Array(size)
  encodeFramesInto(packets, out)
  return out
}

/** encodeFrames into `out` (large enough: 4 + length per packet); returns the bytes written. */
export function encodeFramesInto (packets: readonly Uint8Array[], out: Uint8Array): number {
  let o = 0
  for (const p of packets) {
    const n = p.byteLength
    out[o] = n >>> 24; out[o + 1] = (n >>> 16) & 0xff; out[o + 2] = (n >>> 8) & 0xff; out[o + 3] = n & 0xff
    out.set(p, o + LEN_BYTES)
    o += LEN_BYTES + n
  }
  return o
}

/** Reassembles frames from chunks. A frame shorter than its header or longer than MAX_PACKET_BYTES is a protocol error. */
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
    while (data.byteLength - o >= LEN_BYTES) {
      const len = (((data[o] as number) << 24) | ((data[o + 1] as number) << 16) | ((data[o + 2] as number) << 8) | (data[o + 3] as number)) >>> 0
      if (len <= VNET_HDR_BYTES || len > MAX_PACKET_BYTES) throw new Error(`malformed packet frame: length ${len} (expected ${VNET_HDR_BYTES + 1}..${MAX_PACKET_BYTES})`)
      if (data.byteLength - o - LEN_BYTES < len) break
      out.push(data.subarray(o + LEN_BYTES, o + LEN_BYTES + len))
      o += LEN_BYTES + len
    }
    // Keep the tail by copy: the caller's chunk buffer may be reused.
    this.buf = o === data.byteLength ? new Uint8Array(0) : data.slice(o)
    return out
  }

  get buffered (): number { return this.buf.byteLength }
}
