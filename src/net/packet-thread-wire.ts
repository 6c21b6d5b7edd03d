/**
 * What the main thread and the packet thread (packet-thread.ts, packet-thread-worker.ts) say to
 * each other, and the counters they share. Kept apart so the worker loads nothing of the main
 * side.
 */
import type { MessagePort } from 'node:worker_threads'
import type { Route } from '../projections/routes.js'
import type { DropReason } from './peer-link.js'

export const DROP_REASONS: readonly DropReason[] = ['no_route', 'queue_full', 'no_connection', 'spoofed', 'malformed', 'device_full']

/**
 * Counters in a SharedArrayBuffer of float64: only the packet thread writes them, the main thread
 * reads them for `weft status` (a torn read of a counter is one stale value, never a wrong sum).
 */
export const COUNTER = {
  tunRxPackets: 0,
  tunRxBytes: 1,
  tunTxPackets: 2,
  tunTxBytes: 3,
  tunTxDropped: 4,
  /** + the reason's index in DROP_REASONS */
  drops: 8,
  /** + 4 × the peer's slot: tx packets, tx bytes, rx packets, rx bytes */
  peers: 16
} as const

export const CONTROL = { stop: 0, meshBytes: 1, size: 2 } as const

/**
 * Bytes of device packets handed to the main thread (peers with no direct connection here) that
 * it has not handled yet; beyond this the thread drops them (queue_full), as the device's own
 * queue would if the main thread read it.
 */
export const MESH_BACKLOG_BYTES = 4 * 1024 * 1024

/** Peers whose direct connections the thread can count; a peer beyond this stays on the main thread. */
export const THREAD_PEER_SLOTS = 4096
export const COUNTER_SLOTS = COUNTER.peers + 4 * THREAD_PEER_SLOTS

/** Main thread → packet thread (a MessagePort, read synchronously after an eventfd wake-up). */
export type ToThread =
  /** The device's descriptor; `gen` counts them, so a fault of a replaced one is recognised as stale. */
  | { t: 'tun', fd: number, gen: number }
  | { t: 'routes', routes: Route[] }
  /** A direct connection to `author` to send on; `head` (the session id) goes first. */
  | { t: 'out', id: number, author: string, slot: number, fd: number, key: Uint8Array, head: Uint8Array }
  /** A direct connection from `author` to read; `leftover` arrived with its session id. */
  | { t: 'in', id: number, author: string, slot: number, fd: number, key: Uint8Array, leftover: Uint8Array }
  /** Encoded packet frames (packet-frames.ts) the main thread had queued for connection `id`. */
  | { t: 'send', id: number, bytes: Uint8Array }
  | { t: 'close', id: number }
  /** Tests only: the next read of the device fails with EIO. */
  | { t: 'fault' }
  /** Tests only: the thread throws, as a bug in it would. */
  | { t: 'crash' }

/** Packet thread → main thread. */
export type FromThread =
  /** Packets read from the device that no direct connection of the thread carries. */
  | { t: 'mesh', packets: Uint8Array[] }
  | { t: 'closed', id: number, why: string }
  /** The device's descriptor `gen` failed (the thread closed it): the main thread reopens the device and sends the new one. */
  | { t: 'tun-fault', cause: string, gen: number }
  /** The thread closed its copy of the device's descriptor `gen` (replaced, or at stop). */
  | { t: 'tun-closed', gen: number }
  | { t: 'stopped' }
  /** Which loop moves the packets: the native one (packet-loop-native.ts), or why not. */
  | { t: 'loop', native: boolean, reason?: string }

export interface ThreadSetup {
  port: MessagePort
  wakeFd: number
  counters: SharedArrayBuffer
  /**
   * Int32 [CONTROL.stop]: set to 1 to stop (then the eventfd is rung). A flag, not a message, and
   * not Worker.terminate: V8's termination does not reach JavaScript that keeps calling into
   * koffi, so a thread blocked in poll(2) would keep the process from exiting.
   * Int32 [CONTROL.meshBytes]: bytes of packets posted to the main thread and not yet handled there.
   */
  control: SharedArrayBuffer
  /** 10 when device packets carry a virtio header. */
  vnetHeader: number
  /** This node's author hex: packets to it are not sent anywhere. */
  self: string
  /** MESH_BACKLOG_BYTES, unless a test sets another. */
  meshBacklogBytes: number
  /** 'js': the JavaScript loop even where the native one is built (tests, comparisons). */
  loop?: 'js' | 'auto'
}
