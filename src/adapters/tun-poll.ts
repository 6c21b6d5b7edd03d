/**
 * The thread that waits for a TUN device to become readable (`tun-device.ts`). It blocks in
 * `poll(2)` on the device and its own eventfd, so it takes no libuv threadpool thread (which
 * LevelDB, fs and dns share), and it only signals readiness: it never touches a packet.
 *
 * Hand-over (one Int32 in shared memory): 0 = armed (the thread polls), 1 = readable (the main
 * thread drains, then stores 0 and notifies), 2 = stop. The thread moves 0 → 1 only, and only
 * with a compare-and-exchange; everything else is the main thread's.
 *
 * The race this layout once had: the thread waited with one `Atomics.wait(state, 0, 1)` and took
 * any return as "armed". A notify from an earlier drain, delivered after the thread had already
 * re-armed, polled, handed over (1) and gone back to wait, woke it while the state was still 1;
 * its next compare-and-exchange then found 1, and it exited, leaving the device unread for good.
 * Now it waits in a loop until the state really is 0 (or 2), never exits on an unexpected state,
 * and treats a wake-up on the eventfd as "look at the state again", not as "stop".
 */
import { writeSync } from 'node:fs'
import { Worker } from 'node:worker_threads'
import { WeftError } from '../log/errors.js'
import { newEventFd, type Libc } from './tun-libc.js'

export const ARMED = 0
export const READABLE = 1
export const STOP = 2

/** How long stop() waits for the thread to leave poll() before it terminates it. */
const STOP_WAIT_MS = 300

const POLL_WORKER = `
const { workerData, parentPort } = require('node:worker_threads')
const koffi = require(workerData.koffiPath)
const lib = koffi.load(null)
const poll = lib.func('int poll(void *fds, unsigned long nfds, int timeout)')
const read = lib.func('long read(int fd, void *buf, unsigned long count)')
const state = new Int32Array(workerData.state)
const fds = Buffer.alloc(16)
const counter = Buffer.alloc(8)
fds.writeInt32LE(workerData.fd, 0); fds.writeInt16LE(1, 4)
fds.writeInt32LE(workerData.wakeFd, 8); fds.writeInt16LE(1, 12)
parentPort.postMessage('ready')
for (;;) {
  let s
  while ((s = Atomics.load(state, 0)) === 1) Atomics.wait(state, 0, 1)
  if (s === 2) break
  fds.writeInt16LE(0, 6); fds.writeInt16LE(0, 14)
  const r = poll(fds, 2, -1)
  if (r < 0) {
    const e = koffi.errno()
    if (e === 4) continue
    parentPort.postMessage({ error: 'poll failed with errno ' + e, device: false })
    break
  }
  if (fds.readInt16LE(14) !== 0) { read(workerData.wakeFd, counter, 8); continue }
  const rev = fds.readInt16LE(6)
  if ((rev & 1) === 0 && (rev & (8 | 16 | 32)) !== 0) {
    parentPort.postMessage({ error: (rev & 32) !== 0 ? 'the device fd is not open' : 'the device reported an error or hang-up (was the interface deleted?)', device: true })
    break
  }
  if ((rev & 1) !== 0 && Atomics.compareExchange(state, 0, 0, 1) === 0) parentPort.postMessage(null)
}
`

export interface PollEvents {
  /** The device is readable: drain it, then call handBack(). */
  readable: () => void
  /** The thread stopped on its own; `device` = the device itself reported the error. */
  failed: (message: string, device: boolean) => void
}

/** One poll thread on one device fd. A replaced thread's events are simply not delivered. */
export class PollThread {
  #exited = false
  #stopping = false
  #silenced = false

  private constructor (private readonly worker: Worker, private readonly wakeFd: number, readonly state: Int32Array) {}

  /** Starts the thread and waits until it has loaded koffi (so a failure shows at start, not at the first read). */
  static async start (c: Libc, fd: number, name: string, events: PollEvents): Promise<PollThread> {
    const wakeFd = newEventFd(c)
    const state = new Int32Array(new SharedArrayBuffer(4))
    // The main thread owns the device (READABLE) until its first drain arms the thread.
    Atomics.store(state, 0, READABLE)
    const worker = new Worker(POLL_WORKER, {
      eval: true,
      workerData: { koffiPath: c.koffiPath, state: state.buffer, fd, wakeFd },
      stdout: false,
      stderr: false
    })
    try {
      await new Promise<void>((resolve, reject) => {
        const done = (err?: Error): void => {
          worker.off('message', onMessage).off('error', done).off('exit', onExit)
          if (err === undefined) resolve(); else reject(err)
        }
        const onMessage = (): void => { done() }
        const onExit = (code: number): void => { done(new Error(`it exited with code ${code}`)) }
        worker.once('message', onMessage).once('error', done).once('exit', onExit)
      })
    } catch (err) {
      void worker.terminate()
      c.close(wakeFd)
      throw new WeftError('ERR_TUN', `cannot start the poll thread of ${name}: ${(err as Error).message}`, { cause: err })
    }
    const t = new PollThread(worker, wakeFd, state)
    worker.on('message', (m: { error: string, device: boolean } | null) => {
      if (t.#silenced) return
      if (m === null) events.readable()
      else { t.#silenced = true; events.failed(m.error, m.device) }
    })
    worker.on('error', (err) => {
      if (t.#silenced) return
      t.#silenced = true
      events.failed(`the poll thread failed: ${err.message}`, false)
    })
    worker.on('exit', () => {
      t.#exited = true
      c.close(wakeFd)
      if (t.#silenced || t.#stopping) return
      t.#silenced = true
      events.failed('the poll thread exited', false)
    })
    // Idle until the device has a reader: an open device with no reader does not keep the process alive.
    worker.unref()
    return t
  }

  /** The main thread drained the device (EAGAIN): the thread polls again. */
  handBack (): void {
    if (Atomics.load(this.state, 0) === STOP) return
    Atomics.store(this.state, 0, ARMED)
    Atomics.notify(this.state, 0)
  }

  /** A device that is being read keeps the process alive, like a listening socket. */
  ref (): void { this.worker.ref() }

  /**
   * Stops the thread: no more events. Waits up to STOP_WAIT_MS for it to leave poll(); one stuck
   * past that is terminated in the background (its eventfd is closed when it is gone).
   */
  async stop (): Promise<void> {
    this.#silenced = true
    this.#stopping = true
    if (this.#exited) return
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => { resolve() }))
    this.worker.ref() // so the process waits for it
    Atomics.store(this.state, 0, STOP) // wakes it from Atomics.wait ...
    Atomics.notify(this.state, 0)
    try {
      writeSync(this.wakeFd, new BigUint64Array([1n])) // ... or from poll
    } catch {}
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<boolean>((resolve) => { timer = setTimeout(() => { resolve(true) }, STOP_WAIT_MS) })
    const stuck = await Promise.race([exited.then(() => false), late])
    clearTimeout(timer)
    if (stuck) { void this.worker.terminate(); this.worker.unref() }
  }

  /**
   * Tests only: make the thread exit by itself, as the hand-over race above once did. The main
   * thread was not asking it to stop, so this is a failure it must recover from.
   */
  exitForTest (): void {
    Atomics.store(this.state, 0, STOP)
    Atomics.notify(this.state, 0)
    writeSync(this.wakeFd, new BigUint64Array([1n]))
  }
}
