// The Weft dashboard: reads the daemon's JSON API (docs/api.md) with the session cookie, and
// fetches again when GET /api/v1/live says something changed. Every value from the log is
// untrusted (other members write hostnames, service names…): text nodes only, never innerHTML.

const VIEWS = ['members', 'clusters', 'routes', 'services', 'vpn', 'log', 'problems']
/** Events shown in the log view (the newest). */
const LOG_TAIL = 200

const $ = (id) => document.getElementById(id)

/** h('td', {class: 'num'}, 'text', node…): an element with attributes and text/element children. */
function h (tag, attrs, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs ?? {})) if (v !== undefined && v !== null && v !== false) el.setAttribute(k, String(v))
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : String(c))
  return el
}

function table (headers, rows, empty) {
  if (rows.length === 0) return h('p', { class: 'empty' }, empty)
  return h('table', {}, h('thead', {}, h('tr', {}, headers.map((x) => h('th', {}, x)))), h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => c instanceof Element && c.tagName === 'TD' ? c : h('td', {}, c ?? '–'))))))
}

const num = (n) => h('td', { class: 'num' }, n === undefined ? '–' : Number(n).toLocaleString('en'))
const badge = (text, cls) => h('span', { class: `badge ${cls}` }, text)
const short = (hex) => typeof hex === 'string' ? hex.slice(0, 12) : ''

function bytes (n) {
  if (n === undefined) return '–'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  let v = n
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`
}

/** `/ip4/192.0.2.1/tcp/4001/p2p/…` → `192.0.2.1:4001`; a relayed address → `via <relay>`. */
function addrShort (ma) {
  const relay = /^(.*)\/p2p-circuit/.exec(ma)
  if (relay !== null) return `via ${addrShort(relay[1])}`
  const m = /^\/(?:ip4|ip6|dns4|dns6|dns)\/([^/]+)\/(?:tcp|udp)\/(\d+)/.exec(ma)
  if (m === null) return ma.length > 40 ? `${ma.slice(0, 40)}…` : ma
  return m[1].includes(':') ? `[${m[1]}]:${m[2]}` : `${m[1]}:${m[2]}`
}

function ago (ms) {
  if (ms === undefined) return ''
  const s = Math.round(ms / 1000)
  return s < 60 ? `${s} s` : s < 3600 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`
}

class Unauthorized extends Error {}

async function get (path) {
  const res = await fetch(path, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
  if (res.status === 401) throw new Unauthorized('not logged in')
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`)
  return await res.json()
}

let data
let current = location.hash.slice(1) || 'members'

async function load () {
  const [status, peers, state, services] = await Promise.all([
    get('/api/v1/status'), get('/api/v1/peers'), get('/api/v1/state'),
    get('/api/v1/services').catch(() => undefined)
  ])
  const events = await get(`/api/v1/events?from=${Math.max(0, state.at.lamport - LOG_TAIL)}&limit=1000`)
  return { status, peers: peers.peers, state, services, events: events.events }
}

// ---- views ------------------------------------------------------------------------------------

function hostnames (d) {
  const byAuthor = new Map()
  const byPeer = new Map()
  for (const m of d.state.view.members) { byAuthor.set(m.author, m.hostname); byPeer.set(m.peerId, m.hostname) }
  return { author: (a) => byAuthor.get(a) ?? short(a), peer: (p) => byPeer.get(p) ?? (p ?? '').slice(0, 16) }
}

/** Its join announces no VPN device (older daemons send no `vpn`: read the caps). */
const noVpn = (m) => m.vpn === false || (m.vpn === undefined && !(m.caps ?? []).includes('vpn'))

function members (d) {
  const peers = new Map(d.peers.map((p) => [p.peerId, p]))
  const rows = d.state.view.members.map((m) => {
    const self = m.author === d.status.author
    const p = peers.get(m.peerId)
    const online = self ? badge('this node', 'ok') : p?.online ? badge('online', 'ok') : badge(p?.lastSeenMs !== undefined ? `offline ${ago(p.lastSeenMs)}` : 'offline', 'bad')
    const path = self ? '' : p?.path ? `${p.path.direct ? 'direct' : 'relayed'} ${addrShort(p.path.addr)}` : undefined
    return [
      h('td', {}, h('strong', {}, m.hostname)), m.cluster,
      h('td', {}, m.role, ' ', m.roleStable ? badge('stable', 'ok') : badge('tentative', 'warn')),
      // A member without a VPN device (--no-tun): its address reaches nothing, its name answers no A.
      h('td', { class: 'mono' }, m.address ?? '–', noVpn(m) && m.address ? [' ', badge('no VPN: unreachable', 'warn')] : []),
      h('td', { class: 'mono' }, m.dnsName ?? '–', noVpn(m) && m.dnsName ? [' ', badge('reserved: no A record', 'muted')] : []),
      h('td', {}, online), h('td', { class: 'mono' }, path ?? '–'),
      h('td', { class: 'num' }, self ? '' : p?.latencyMs !== undefined ? `${p.latencyMs.toFixed(1)} ms` : '–')
    ]
  })
  return [h('h2', {}, `Members (${rows.length})`), table(['Host', 'Cluster', 'Role', 'Overlay address', 'DNS name', 'Online', 'Path', 'RTT'], rows, 'No members yet: this node has not joined.')]
}

function clusters (d) {
  const name = hostnames(d)
  const out = [h('h2', {}, 'Clusters and their k3s decisions')]
  const cards = d.state.view.clusters.map((c) => h('div', { class: 'card' },
    h('strong', {}, c.cluster), ' ', badge(c.status, c.status === 'stable' ? 'ok' : c.status === 'tentative' ? 'warn' : 'muted'),
    h('dl', {},
      h('dt', {}, 'Master'), h('dd', {}, c.master ? name.author(c.master.author) : '–'),
      h('dt', {}, 'Votes'), h('dd', {}, c.votes ? `${c.votes.for} of ${c.votes.electorate}` : '–'),
      h('dt', {}, 'Members'), h('dd', {}, c.members.map((m) => `${name.author(m.author)} (${m.role}${m.stable ? '' : ', tentative'})`).join(', ') || '–'),
      c.conflicts.length > 0 ? [h('dt', {}, 'Conflicts'), h('dd', { class: 'bad' }, c.conflicts.map((x) => `${name.author(x.author)}: ${x.reason}`).join('; '))] : [],
      c.reason ? [h('dt', {}, 'Why'), h('dd', {}, c.reason)] : [])))
  out.push(cards.length > 0 ? h('div', { class: 'cards' }, cards) : h('p', { class: 'empty' }, 'No clusters yet.'))
  const k = d.status.k3s
  out.push(h('h2', {}, 'k3s on this node'))
  out.push(k === undefined
    ? h('p', { class: 'empty' }, 'k3s is not run by this node (no --k3s).')
    : h('div', { class: 'card' }, h('dl', {}, h('dt', {}, 'State'), h('dd', {}, String(k.state)), h('dt', {}, 'Role'), h('dd', {}, String(k.role ?? '–')), h('dt', {}, 'Reason'), h('dd', {}, String(k.reason ?? '–')), h('dt', {}, 'Restarts'), h('dd', {}, String(k.restarts ?? 0)))))
  return out
}

function routes (d) {
  const r = d.state.view.routes
  return [
    h('h2', {}, `Routes (${r.routes.length})`),
    table(['Network', 'Kind', 'Via'], r.routes.map((x) => [h('td', { class: 'mono' }, x.cidr), x.kind, x.peerHost]), 'No routes.'),
    r.conflicts.length > 0 ? [h('h2', {}, 'Conflicts'), table(['Conflict'], r.conflicts.map((c) => [JSON.stringify(c)]), '')] : [],
    r.invalid.length > 0 ? [h('h2', {}, 'Invalid advertisements'), table(['Advertisement'], r.invalid.map((c) => [JSON.stringify(c)]), '')] : []
  ]
}

function services (d) {
  const name = hostnames(d)
  const v = d.state.view.services
  const out = [
    h('h2', {}, `Service imports (${v.imports.length})`),
    table(['Service', 'Type', 'Ports', 'Clusters'], v.imports.map((i) => [h('td', {}, h('strong', {}, `${i.namespace}/${i.name}`)), i.type, i.ports.map((p) => `${p.port}/${p.protocol ?? 'TCP'}`).join(', '), i.clusters.join(', ')]), 'No service is exported on the network.'),
    h('h2', {}, `Exports (${v.exports.length})`),
    table(['Service', 'Cluster', 'By', 'Part of import'], v.exports.map((e) => [`${e.namespace}/${e.name}`, e.cluster, name.author(e.author), e.contributing ? badge('yes', 'ok') : badge('no', 'bad')]), 'No exports.')
  ]
  const s = d.services
  if (s !== undefined) {
    out.push(h('h2', {}, 'Exposed by this node'))
    out.push(table(['Service', 'Target', 'Port', 'Tunnels', 'In', 'Out'], s.exposes.map((e) => [e.service, h('td', { class: 'mono' }, e.target), num(e.port), num(e.traffic.opened), h('td', { class: 'num' }, bytes(e.traffic.bytesIn)), h('td', { class: 'num' }, bytes(e.traffic.bytesOut))]), 'Nothing exposed here (weft service expose).'))
    out.push(h('h2', {}, 'Connected from this node'))
    out.push(table(['Service', 'Listen', 'Tunnels', 'In', 'Out'], s.connects.map((c) => [c.service, h('td', { class: 'mono' }, c.listen), num(c.traffic.opened), h('td', { class: 'num' }, bytes(c.traffic.bytesIn)), h('td', { class: 'num' }, bytes(c.traffic.bytesOut))]), 'No listeners here (weft service connect).'))
  }
  return out
}

function vpn (d) {
  const v = d.status.vpn
  if (v === undefined) return [h('h2', {}, 'VPN traffic'), h('p', { class: 'empty' }, 'The VPN is off on this node (it runs with --no-tun): no TUN device, no packets.')]
  const name = hostnames(d)
  return [
    h('h2', {}, `VPN traffic on ${v.device}`),
    h('p', {}, `Addresses ${v.addresses.join(', ') || '–'} · MTU ${v.mtu} · device rx ${bytes(v.tun.rxBytes)}, tx ${bytes(v.tun.txBytes)}`),
    // Daemons with the direct path say per peer what carries its packets (direct, mesh, none).
    table(['Peer', 'Connected', 'Sent packets', 'Sent', 'Received packets', 'Received', 'Carried by'], v.peers.map((p) => [
      name.author(p.author), p.connected ? badge('yes', 'ok') : badge('no', 'bad'), num(p.txPackets), h('td', { class: 'num' }, bytes(p.txBytes)), num(p.rxPackets), h('td', { class: 'num' }, bytes(p.rxBytes)),
      p.path === undefined ? '–' : p.path === 'direct' ? 'direct path' : p.path === 'mesh' ? 'libp2p stream' : 'nothing yet'
    ]), 'No VPN traffic with any peer yet.'),
    h('h2', {}, 'Dropped packets'),
    table(['Reason', 'Packets'], Object.entries(v.drops).map(([k, n]) => [k, num(n)]), '')
  ]
}

function log (d) {
  const name = hostnames(d)
  const events = [...d.events].reverse().slice(0, LOG_TAIL)
  return [
    h('h2', {}, `Log: ${d.status.events} events, newest first`),
    events.length === 0
      ? h('p', { class: 'empty' }, 'The log is empty.')
      : h('ol', { class: 'timeline' }, events.map((e) => h('li', { 'data-type': e.type },
        h('span', { class: 'muted mono' }, `#${e.lamport} `), e.time !== undefined ? h('time', { class: 'muted mono', datetime: new Date(e.time).toISOString() }, `${new Date(e.time).toISOString().replace('T', ' ').slice(0, 19)} `) : null,
        h('span', { class: 'type' }, e.type), ' by ', h('strong', {}, name.peer(e.author)),
        h('span', { class: 'muted' }, ` (seq ${e.seq}, ${e.id.slice(0, 10)})`))))
  ]
}

function problemsOf (d) {
  const p = d.status.problems
  return Array.isArray(p) ? p : []
}

function problems (d) {
  const list = problemsOf(d)
  return [
    h('h2', {}, `Problems (${list.length})`),
    list.length === 0
      ? h('p', { class: 'empty' }, 'No problems reported by this node.')
      : h('ul', { class: 'problems' }, list.map((p) => typeof p === 'string'
        ? h('li', {}, p)
        : h('li', {}, h('strong', {}, p.code ?? p.id ?? 'problem'), ': ', p.message ?? p.text ?? JSON.stringify(p), p.fix ? h('div', { class: 'fix' }, `Fix: ${p.fix}`) : null)))
  ]
}

const RENDER = { members, clusters, routes, services, vpn, log, problems }

function render () {
  if (data === undefined) return
  const s = data.status
  $('node').textContent = `${s.hostname} · ${s.cluster} · network ${s.networkId}`
  $('summary').replaceChildren(
    h('span', {}, `${s.peers.connected} connected, ${s.peers.online} online`),
    h('span', {}, `${s.events} events`),
    h('span', {}, s.self.address ?? 'no overlay address'),
    h('span', {}, `up ${ago(s.uptimeMs)}`),
    h('span', {}, `v${s.version}`))
  const n = problemsOf(data).length
  $('problem-count').textContent = n > 0 ? String(n) : ''
  for (const v of VIEWS) {
    const section = $(`view-${v}`)
    section.hidden = v !== current
    if (v === current) section.replaceChildren(...RENDER[v](data).flat())
  }
  for (const a of document.querySelectorAll('#tabs a')) a.classList.toggle('active', a.dataset.view === current)
  document.body.dataset.view = current
  $('updated').textContent = `Updated ${new Date().toLocaleTimeString()}`
}

function showError (err) {
  const box = $('error')
  if (err instanceof Unauthorized) {
    box.textContent = 'Your session ended (it lasts 12 hours, and a daemon restart ends it). Run "weft dashboard" for a new login link.'
  } else {
    box.textContent = `Could not reach the daemon: ${err.message}`
  }
  box.hidden = false
}

let loading = false
let again = false
/** Fetch and render; calls while one runs collapse into one more. */
async function refresh () {
  if (loading) { again = true; return }
  loading = true
  try {
    data = await load()
    $('error').hidden = true
    render()
    document.body.dataset.loads = String(Number(document.body.dataset.loads ?? 0) + 1)
  } catch (err) {
    showError(err)
  } finally {
    loading = false
    if (again) { again = false; void refresh() }
  }
}

function connectLive () {
  const es = new EventSource('/api/v1/live')
  const live = $('live')
  es.addEventListener('open', () => { live.textContent = 'live'; live.className = 'live on' })
  es.addEventListener('error', () => { live.textContent = 'reconnecting'; live.className = 'live off' })
  for (const ev of ['change', 'tick']) es.addEventListener(ev, () => { void refresh() })
}

window.addEventListener('hashchange', () => {
  const v = location.hash.slice(1)
  current = VIEWS.includes(v) ? v : 'members'
  render()
})

if (!VIEWS.includes(current)) current = 'members'
void refresh()
connectLive()
