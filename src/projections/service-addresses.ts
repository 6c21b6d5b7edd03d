/**
 * Service addresses: one IPv4 address per exported service name (`namespace/name`) and one per
 * exporting cluster of it (`namespace/name/cluster`), the same on every member, allocated by the
 * fold in the log's total order. The first export of a name takes the address its key hashes to
 * (or the next free one); the address stays with the name while any export of it is in the
 * log, whatever else comes and goes, and is free again after the last unexport. Every replica
 * folds the same order, so every member agrees without an event of its own: the export is the
 * claim. See docs/services.md ("Service addresses").
 *
 * The range is a loopback block: every member holds every service address on its loopback
 * device (Linux routes all of 127.0.0.0/8 to `lo` with no configuration) and listens there on
 * the service's real ports, so the address is reachable from the member itself, wherever the
 * DNS answer came from, with or without a TUN device, and collides with no LAN or overlay.
 */

/** The service address block: 127.77.0.0/16 (65,534 usable addresses). */
export const SERVICE_ADDRESS_PREFIX = [127, 77] as const
export const SERVICE_ADDRESS_RANGE = `${SERVICE_ADDRESS_PREFIX.join('.')}.0.0/16`
const SLOTS = 65536

export interface ServiceAddressState {
  /** key (`ns/name` or `ns/name/cluster`) → slot (1..65534). */
  byKey: Map<string, number>
  /** slot → key. */
  bySlot: Map<number, string>
}

export function initialServiceAddresses (): ServiceAddressState {
  return { byKey: new Map(), bySlot: new Map() }
}

export function cloneServiceAddresses (s: ServiceAddressState): ServiceAddressState {
  return { byKey: new Map(s.byKey), bySlot: new Map(s.bySlot) }
}

/** FNV-1a, 32 bits: a stable, platform-independent spread of keys over the block. */
function fnv1a (text: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h >>> 0
}

export function slotAddress (slot: number): string {
  return `${SERVICE_ADDRESS_PREFIX[0]}.${SERVICE_ADDRESS_PREFIX[1]}.${slot >> 8}.${slot & 255}`
}

/** Whether `addr` lies in the service block. */
export function isServiceAddress (addr: string): boolean {
  return addr.startsWith(`${SERVICE_ADDRESS_PREFIX.join('.')}.`)
}

/** Give `key` an address if it has none: its hashed slot, or the next free one. */
export function claimServiceAddress (s: ServiceAddressState, key: string): void {
  if (s.byKey.has(key)) return
  if (s.bySlot.size >= SLOTS - 2) return // full: the name has no address (and no A record)
  let slot = 1 + (fnv1a(key) % (SLOTS - 2))
  while (s.bySlot.has(slot)) slot = slot >= SLOTS - 2 ? 1 : slot + 1
  s.byKey.set(key, slot)
  s.bySlot.set(slot, key)
}

export function releaseServiceAddress (s: ServiceAddressState, key: string): void {
  const slot = s.byKey.get(key)
  if (slot === undefined) return
  s.byKey.delete(key)
  s.bySlot.delete(slot)
}

/** The address of `namespace/name` (network-wide), or of one exporting cluster's export of it. */
export function serviceAddressOf (s: ServiceAddressState, namespace: string, name: string, cluster?: string): string | undefined {
  const slot = s.byKey.get(cluster === undefined ? `${namespace}/${name}` : `${namespace}/${name}/${cluster}`)
  return slot === undefined ? undefined : slotAddress(slot)
}
