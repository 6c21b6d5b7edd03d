/**
 * The two questions the VPN asks of every packet, on whichever thread moves it (data-plane.ts on
 * the main thread, packet-thread-worker.ts on the packet thread): which peer carries this
 * destination, and does this peer own this source.
 */
import type { RouteIndex } from '../projections/route-index.js'
import { VNET_HDR_BYTES } from './packet-frames.js'

export function isIp (pkt: Uint8Array): boolean {
  const v = (pkt[0] ?? 0) >> 4
  return (v === 4 && pkt.byteLength >= 20) || (v === 6 && pkt.byteLength >= 40)
}

function u32 (pkt: Uint8Array, o: number): number {
  return (((pkt[o] as number) << 24) | ((pkt[o + 1] as number) << 16) | ((pkt[o + 2] as number) << 8) | (pkt[o + 3] as number)) >>> 0
}

function u128 (pkt: Uint8Array, o: number): bigint {
  let v = 0n
  for (let i = 0; i < 4; i++) v = (v << 32n) | BigInt(u32(pkt, o + 4 * i))
  return v
}

export function destinationPeer (routes: RouteIndex, pkt: Uint8Array): string | undefined {
  if (!isIp(pkt)) return undefined
  return (pkt[0] as number) >> 4 === 4 ? routes.peerFor4(u32(pkt, 16)) : routes.peerFor6(u128(pkt, 24))
}

export function sourceOwnedBy (routes: RouteIndex, pkt: Uint8Array, author: string): boolean {
  if (!isIp(pkt)) return false
  return (pkt[0] as number) >> 4 === 4 ? routes.owns4(author, u32(pkt, 12)) : routes.owns6(author, u128(pkt, 8))
}

/** IPv6 multicast (router solicitations, neighbour discovery): the kernel talking to the link, not to a peer. */
export function isLinkChatter (ip: Uint8Array): boolean {
  return (ip[0] ?? 0) >> 4 === 6 && ip[24] === 0xff
}

/** A plain packet from a device without offload, as a frame: an all-zero virtio header in front. */
export function withZeroHeader (pkt: Uint8Array): Uint8Array {
  const out = new Uint8Array(VNET_HDR_BYTES + pkt.byteLength)
  out.set(pkt, VNET_HDR_BYTES)
  return out
}
