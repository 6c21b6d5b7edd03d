import { createHash } from 'node:crypto'
import { decode } from 'cborg'
import { eventId } from '../log/event.js'

/**
 * Gossip message ids. A well-formed message is an event envelope and its id is the event id,
 * so gossip's seen-cache and the log agree on identity. Anything that does not even decode
 * gets a hash of its bytes under another domain: it still needs an id before the validator
 * can Reject it, and must never collide with a real event's id.
 */
export function gossipMessageId (net: Uint8Array): (data: Uint8Array) => Uint8Array {
  return (data) => {
    try {
      const outer = decode(data) as unknown
      if (Array.isArray(outer) && outer[0] instanceof Uint8Array) return eventId(net, outer[0])
    } catch {}
    return new Uint8Array(createHash('sha256').update('weft/gossip/undecodable\0').update(data).digest())
  }
}
