/**
 * Child process for kill9.test.ts: opens a classic-level store in the directory given as the
 * first argument and writes until it is killed. Own events go through Replica.append; every
 * fifth step it also ingests the next event of a second author (the gossip path). Several
 * operations are in flight at once, so the kill can land while batches are queued or being
 * written. Each id is printed the moment its promise resolves (stdout to a pipe is synchronous
 * on Linux):
 *   ready <own max seq> <other max seq>
 *   A <id> <seq>        append resolved: the event is reported stored
 *   I <id> <seq>        ingest resolved with this event in `added`
 */
import { openLevel } from '../../src/adapters/level-db.js'
import { Replica } from '../../src/adapters/replica.js'
import { signEvent, type EventFields, type SignedEvent } from '../../src/log/event.js'
import { members } from '../../src/projections/members.js'
import { NET, identity } from '../support/fixtures.js'

const dir = process.argv[2]
if (dir === undefined) throw new Error('usage: writer.ts <dir>')

const me = identity(0)
const other = identity(5)
const db = await openLevel(dir)
const replica = await Replica.open({ db, net: NET, reducers: { members }, signer: me })

let otherPrev: SignedEvent | undefined = replica.log.eventsOf(other.authorHex, replica.log.maxSeqOf(other.authorHex))[0]
process.stdout.write(`ready ${replica.log.maxSeqOf(me.authorHex)} ${replica.log.maxSeqOf(other.authorHex)}\n`)

function nextOther (): SignedEvent {
  const seq = (otherPrev?.fields.seq ?? 0) + 1
  const ev = signEvent({
    v: 1,
    net: NET,
    author: other.publicKey,
    seq,
    prev: otherPrev?.id ?? null,
    deps: [],
    lamport: (otherPrev?.fields.lamport ?? 0) + 1,
    time: Date.now(),
    type: 'ip.claim',
    body: { addr: `10.5.${Math.floor(seq / 250) % 250}.${seq % 250}` }
  } as EventFields, other)
  otherPrev = ev
  return ev
}

const inFlight = new Set<Promise<void>>()
let step = 0
for (;;) {
  step++
  const p: Promise<void> = step % 5 === 0
    ? (async () => {
        const ev = nextOther()
        const res = await replica.ingest([ev.envelope])
        if (res.added.some((e) => e.idHex === ev.idHex)) process.stdout.write(`I ${ev.idHex} ${ev.fields.seq}\n`)
        else throw new Error(`ingest did not add ${ev.idHex}: ${JSON.stringify(res.rejected)}`)
      })()
    : (async () => {
        const ev = await replica.append('ip.claim', { addr: `10.0.${Math.floor(step / 250) % 250}.${step % 250}` }, Date.now())
        process.stdout.write(`A ${ev.idHex} ${ev.fields.seq}\n`)
      })()
  inFlight.add(p)
  void p.finally(() => inFlight.delete(p))
  if (inFlight.size >= 8) await Promise.race(inFlight)
}
