import { describe, expect, it } from 'vitest'
import { Uint8ArrayList } from 'uint8arraylist'
import { StreamState, YamuxStream } from '@libp2p/yamux/stream'
import { thinYamuxWindowUpdates, windowUpdateCanWait } from '../../src/net/yamux-window.js'

const DATA = 0
const WINDOW_UPDATE = 1
const ACK = 2

/** A logger that says nothing (the library's is a dependency of a dependency). */
const quiet = (): void => {}
const log: unknown = Object.assign(quiet, { trace: quiet, error: quiet, enabled: false, newScope: () => log })

interface Sent { type: number, flag: number, length: number }

/** A stream of the real library whose frames are recorded instead of sent. */
function stream (state: StreamState, window = 256 * 1024): { s: YamuxStream, sent: Sent[], feed: (bytes: number) => void } {
  const sent: Sent[] = []
  const s = new YamuxStream({
    id: 'test', streamId: 1, direction: 'inbound', log: log as never, state,
    initialStreamWindowSize: window, getRTT: () => -1,
    sendFrame: (h) => { sent.push({ type: h.type, flag: h.flag, length: h.length }); return true }
  })
  const feed = (bytes: number): void => {
    s.handleData({ header: { type: DATA, flag: 0, streamID: 1, length: bytes, version: 0 }, data: new Uint8ArrayList(new Uint8Array(bytes)) } as never)
  }
  return { s, sent, feed }
}

describe('yamux window updates (thinned)', () => {
  thinYamuxWindowUpdates()

  it('small frames on an established stream send no update until half the window is used', () => {
    const { sent, feed } = stream(StreamState.Established, 1024)
    for (let i = 0; i < 20; i++) feed(25) // 500 bytes: under half of 1,024
    expect(sent.filter((f) => f.type === WINDOW_UPDATE)).toEqual([])
    feed(20) // 520: past half
    expect(sent.filter((f) => f.type === WINDOW_UPDATE)).toEqual([{ type: WINDOW_UPDATE, flag: 0, length: 520 }])
    // The window is whole again: the count starts over.
    feed(25)
    expect(sent.filter((f) => f.type === WINDOW_UPDATE)).toHaveLength(1)
  })

  it('a sender whose window is spent is always updated', () => {
    const { sent, feed } = stream(StreamState.Established, 1024)
    feed(1024)
    expect(sent).toEqual([{ type: WINDOW_UPDATE, flag: 0, length: 1024 }])
  })

  it('the ACK of a new inbound stream still goes with the first update, however small', () => {
    const { sent, feed } = stream(StreamState.SYNReceived, 1024)
    feed(10)
    expect(sent).toEqual([{ type: WINDOW_UPDATE, flag: ACK, length: 10 }])
    feed(10) // established now: this one waits
    expect(sent).toHaveLength(1)
  })

  it('the rule', () => {
    expect(windowUpdateCanWait(StreamState.Established, 1000, 999)).toBe(true)
    expect(windowUpdateCanWait(StreamState.Established, 1000, 500)).toBe(false)
    expect(windowUpdateCanWait(StreamState.Finished, 1000, 900)).toBe(true)
    // Flags pending (SYN to send, ACK to send) or a paused stream: the library decides.
    expect(windowUpdateCanWait(StreamState.Init, 1000, 999)).toBe(false)
    expect(windowUpdateCanWait(StreamState.SYNReceived, 1000, 999)).toBe(false)
    expect(windowUpdateCanWait(StreamState.Paused, 1000, 999)).toBe(false)
  })
})
