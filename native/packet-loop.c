/*
 * The packet thread's hot path in C (docs/vpn.md "The native packet loop").
 *
 * The packet thread (src/net/packet-thread-worker.ts) stays in charge: it reads the main thread's
 * messages, compiles the routes, and tells the main thread what happened. What it hands to this
 * loop is the part a ping waits for: poll(2) on the device, the direct connections and the
 * eventfd; read, route, seal, write; read, open, check the source, write. JavaScript runs again
 * only when there is something for it (a message, a closed connection, a device fault, packets
 * for the libp2p path), so a packet that takes the direct path wakes no JavaScript at all.
 *
 * Why: a ping crosses three wake-ups of the packet thread, and on a VM each wake-up of
 * JavaScript starts with cold caches (the JIT's code, the heap, koffi's marshalling): 50-100 us
 * per step against 10-38 us once running. This loop does the same work in a few KB of code.
 *
 * The wire format is transport-frames.ts's and packet-frames.ts's, byte for byte: each sealed
 * frame is length (4 bytes BE, ciphertext + tag, authenticated as AAD) | AES-256-GCM ciphertext
 * | tag (16), nonce = 4 zero bytes + the frame's 64-bit BE counter; inside, packet frames are
 * length (4 bytes BE) | virtio_net_hdr (10) | IP packet. Tests seal and open with the JavaScript
 * side against this one. The sealing is frame-cipher.c's, the route lookups route-table.c's.
 *
 * Everything from the network is checked before use: a frame length outside 16..128 KiB + 16, a
 * frame that fails authentication, a packet frame outside 11..65,545 bytes close the connection.
 * Every buffer is bounded (the constants below, the same as the JavaScript loop's).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "frame-cipher.h"
#include "route-table.h"
#include "wire.h"

#define WEFT_PL_ABI 1

#define VNET 10
#define MAX_READ (65535 + VNET)
#define READ_BATCH 128
#define READS_PER_TURN 64
#define BATCH_BYTES (64 * 1024)
#define ENC_BYTES (BATCH_BYTES + 4 + MAX_READ)
#define PENDING_BYTES (1024 * 1024)
#define MAX_PACKET_FRAME (65535 + VNET)
#define CONN_READ 65536
#define RBUF_BYTES (4 + MAX_FRAME_BODY + CONN_READ)
#define PBUF_BYTES (MAX_FRAME_PLAINTEXT + 4 + MAX_PACKET_FRAME)

/* Counters (packet-thread-wire.ts COUNTER) and control words (CONTROL). */
enum { C_TUN_RX_P = 0, C_TUN_RX_B = 1, C_TUN_TX_P = 2, C_TUN_TX_B = 3, C_TUN_TX_DROPPED = 4, C_DROPS = 8, C_PEERS = 16 };
enum { DROP_NO_ROUTE, DROP_QUEUE_FULL, DROP_NO_CONNECTION, DROP_SPOOFED, DROP_MALFORMED, DROP_DEVICE_FULL };
enum { CTL_STOP = 0, CTL_MESH_BYTES = 1 };

/* What weft_pl_run returns (bits), and the events it leaves for weft_pl_event. */
enum { R_WAKE = 1, R_EVENTS = 2, R_MESH = 4, R_STOP = 8 };
enum { EV_CLOSED = 1, EV_TUN_FAULT = 2, EV_TUN_CLOSED = 3 };
enum { WHY_PEER_CLOSED, WHY_WRITE_FAILED, WHY_READ_FAILED, WHY_BAD_FRAME, WHY_NOT_OPEN, WHY_REPLACED, WHY_CLOSED, WHY_STOPPED, WHY_NONCE, WHY_SEAL_FAILED };
enum { TUN_READ_FAILED, TUN_WRITE_FAILED, TUN_POLL_NVAL, TUN_POLL_HUP, TUN_POLL_ERR };

struct conn {
  int id, out, peer, slot, fd, closed;
  struct frame_cipher *cipher;
  /* sending: sealed bytes the kernel has not taken [pend_off, pend_end), and this drain's batch */
  uint8_t *pend;
  size_t pend_off, pend_end, pend_cap;
  uint8_t *batch;
  size_t batch_len, batch_payload;
  int batch_n, touched;
  /* receiving: sealed bytes of an incomplete frame, and plaintext of an incomplete packet frame */
  uint8_t *rbuf, *pbuf;
  size_t rlen, plen;
};

struct event { int type, id, why, err; };

struct loop {
  int wake_fd, vnet, self, mesh_backlog;
  double *counters;
  int32_t *control;
  uint8_t *mesh;
  int mesh_cap, mesh_used, mesh_count;
  int64_t mesh_payload;
  int tun, tun_gen, fault, wrote_tun, dirty;
  struct conn **conns, **grave, **by_peer, **pconn;
  int nconns, cconns, ngrave, cgrave, npeer;
  struct pollfd *pfd;
  int npfd, cpfd, cpconn;
  struct route_table routes;
  struct event *events;
  int nevents, cevents, event_head;
  uint8_t rd[VNET + MAX_READ];
  uint8_t seal[ENC_BYTES + 2 * (4 + FRAME_TAG)];
};

/* ---- small things ---- */

static void *grow(void *p, int *cap, int need, size_t size) {
  if (need <= *cap) return p;
  int n = *cap < 8 ? 8 : *cap;
  while (n < need) n *= 2;
  void *q = realloc(p, (size_t)n * size);
  if (q == NULL) return NULL;
  *cap = n;
  return q;
}

static void bump(struct loop *l, int i, double n) { l->counters[i] += n; }
static void drop(struct loop *l, int why) { l->counters[C_DROPS + why] += 1; }
static void count(struct loop *l, int slot, int field, double n) { l->counters[C_PEERS + 4 * slot + field] += n; }

static void event(struct loop *l, int type, int id, int why, int err) {
  struct event *e = grow(l->events, &l->cevents, l->nevents + 1, sizeof *e);
  if (e == NULL) return; /* out of memory: the event is lost, the descriptor is closed all the same */
  l->events = e;
  l->events[l->nevents++] = (struct event){ type, id, why, err };
}

static int is_ip(const uint8_t *p, size_t n) {
  int v = n > 0 ? p[0] >> 4 : 0;
  return (v == 4 && n >= 20) || (v == 6 && n >= 40);
}

int weft_pl_set_routes(struct loop *l, const uint8_t *recs, int n) { return route_table_set(&l->routes, recs, n); }

/* Tests only: the peer index for an IP packet's destination (src = 0) or source (src = 1), or -1. */
int weft_pl_route_for(struct loop *l, const uint8_t *ip, int n, int src) {
  return is_ip(ip, (size_t)n) ? route_table_peer(&l->routes, ip, src) : -1;
}

/* ---- connections ---- */

static struct conn *find(struct loop *l, int id) {
  for (int i = 0; i < l->nconns; i++) if (l->conns[i]->id == id) return l->conns[i];
  return NULL;
}

static void free_conn(struct conn *c) {
  frame_cipher_free(c->cipher);
  free(c->pend); free(c->batch); free(c->rbuf); free(c->pbuf);
  free(c);
}

/* Closes a connection and says so; it is freed once no poll entry can point at it. */
static void close_conn(struct loop *l, struct conn *c, int why, int err) {
  if (c->closed) return;
  c->closed = 1;
  for (int i = 0; i < l->nconns; i++) if (l->conns[i] == c) { l->conns[i] = l->conns[--l->nconns]; break; }
  if (c->out && c->peer >= 0 && c->peer < l->npeer && l->by_peer[c->peer] == c) l->by_peer[c->peer] = NULL;
  close(c->fd);
  struct conn **g = grow(l->grave, &l->cgrave, l->ngrave + 1, sizeof *g);
  if (g != NULL) { l->grave = g; l->grave[l->ngrave++] = c; }
  /* Out of memory for the list: leaked rather than freed while a poll entry may point at it. */
  l->dirty = 1;
  event(l, EV_CLOSED, c->id, why, err);
}

static size_t pending(const struct conn *c) { return c->pend_end - c->pend_off; }

/* Keeps bytes the kernel did not take; false when memory ran out (the connection is closed). */
static int queue(struct loop *l, struct conn *c, const uint8_t *b, size_t n) {
  if (c->pend_off > 0 && c->pend_end + n > c->pend_cap) {
    memmove(c->pend, c->pend + c->pend_off, pending(c));
    c->pend_end -= c->pend_off;
    c->pend_off = 0;
  }
  if (c->pend_end + n > c->pend_cap) {
    size_t cap = c->pend_cap < 65536 ? 65536 : c->pend_cap;
    while (cap < c->pend_end + n) cap *= 2;
    uint8_t *p = realloc(c->pend, cap);
    if (p == NULL) { close_conn(l, c, WHY_WRITE_FAILED, ENOMEM); return 0; }
    c->pend = p; c->pend_cap = cap;
  }
  memcpy(c->pend + c->pend_end, b, n);
  c->pend_end += n;
  return 1;
}

/* Writes what is pending; false when it failed (and was closed). */
static int flush_out(struct loop *l, struct conn *c) {
  int waiting = pending(c) > 0;
  while (pending(c) > 0) {
    ssize_t n = write(c->fd, c->pend + c->pend_off, pending(c));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      close_conn(l, c, WHY_WRITE_FAILED, errno);
      return 0;
    }
    c->pend_off += (size_t)n;
  }
  if (pending(c) == 0) {
    c->pend_off = c->pend_end = 0;
    /* A burst's queue is given back: an idle connection holds no megabyte. */
    if (c->pend_cap > 256 * 1024) { free(c->pend); c->pend = NULL; c->pend_cap = 0; }
  }
  if (waiting != (pending(c) > 0)) l->dirty = 1;
  return 1;
}

/* Seals `plain` and writes it, queueing what the kernel does not take. */
static void send_sealed(struct loop *l, struct conn *c, const uint8_t *plain, size_t n) {
  size_t size = frame_sealed_size(n), len = 0;
  uint8_t *buf = size <= sizeof l->seal ? l->seal : malloc(size);
  if (buf == NULL) { close_conn(l, c, WHY_WRITE_FAILED, ENOMEM); return; }
  int sealed = frame_seal(c->cipher, plain, n, buf, &len);
  if (sealed != 0) { if (buf != l->seal) free(buf); close_conn(l, c, sealed == FRAME_NONCE_EXHAUSTED ? WHY_NONCE : WHY_SEAL_FAILED, 0); return; }
  size_t w = 0;
  int waiting = pending(c) > 0;
  if (!waiting) {
    while (w < len) {
      ssize_t k = write(c->fd, buf + w, len - w);
      if (k >= 0) { w += (size_t)k; continue; }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      int err = errno;
      if (buf != l->seal) free(buf);
      close_conn(l, c, WHY_WRITE_FAILED, err);
      return;
    }
  }
  /* Behind what waits, or what the kernel did not take: POLLOUT flushes it. */
  if (w < len && queue(l, c, buf + w, len - w) && !waiting) l->dirty = 1;
  if (buf != l->seal) free(buf);
}

static void flush_batch(struct loop *l, struct conn *c) {
  if (c->batch_n == 0) return;
  int n = c->batch_n;
  size_t payload = c->batch_payload;
  c->batch_n = 0; c->batch_payload = 0;
  size_t len = c->batch_len;
  c->batch_len = 0;
  send_sealed(l, c, c->batch, len);
  /* A write that failed closed the connection: the batch is lost with it, as a NIC's queue is. */
  if (c->closed) return;
  count(l, c->slot, 0, n);
  count(l, c->slot, 1, (double)payload);
}

/* ---- the device ---- */

static void tun_fault(struct loop *l, int why, int err) {
  if (l->tun >= 0) close(l->tun);
  l->tun = -1;
  l->dirty = 1;
  event(l, EV_TUN_FAULT, l->tun_gen, why, err);
}

static void write_tun(struct loop *l, const uint8_t *p, size_t n) {
  if (l->tun < 0) { bump(l, C_TUN_TX_DROPPED, 1); drop(l, DROP_DEVICE_FULL); return; }
  ssize_t w = write(l->tun, p, n);
  if (w < 0) {
    bump(l, C_TUN_TX_DROPPED, 1);
    int e = errno;
    if (e == EBADF || e == EBADFD || e == ENODEV || e == EFAULT || e == ENXIO) tun_fault(l, TUN_WRITE_FAILED, e);
    else drop(l, DROP_DEVICE_FULL);
    return;
  }
  bump(l, C_TUN_TX_P, 1);
  bump(l, C_TUN_TX_B, (double)w);
  l->wrote_tun = 1;
}

static void drain_tun(struct loop *l) {
  struct conn *touched[READ_BATCH];
  int ntouched = 0;
  int32_t backlog = __atomic_load_n(&l->control[CTL_MESH_BYTES], __ATOMIC_SEQ_CST);
  int hdr = l->vnet == VNET ? 0 : VNET;
  memset(l->rd, 0, VNET);
  for (int i = 0; i < READ_BATCH && l->tun >= 0; i++) {
    /* Room for one more packet for the main thread, or the rest waits in the device's queue. */
    if (l->mesh_cap - l->mesh_used < 4 + MAX_READ) break;
    ssize_t n;
    if (l->fault) { l->fault = 0; n = -1; errno = EIO; } else n = read(l->tun, l->rd + hdr, MAX_READ);
    if (n < 0) {
      if (errno == EAGAIN) break;
      if (errno == EINTR) continue;
      tun_fault(l, TUN_READ_FAILED, errno);
      break;
    }
    bump(l, C_TUN_RX_P, 1);
    bump(l, C_TUN_RX_B, (double)n);
    uint8_t *frame = l->rd;
    size_t flen = (size_t)n + hdr;
    if (flen < VNET) { drop(l, DROP_NO_ROUTE); continue; } /* as the JavaScript loop counts an empty packet */
    const uint8_t *ip = frame + VNET;
    size_t iplen = flen - VNET;
    if (iplen > 24 && (ip[0] >> 4) == 6 && ip[24] == 0xff) continue; /* the kernel talking to the link */
    int ip_ok = is_ip(ip, iplen);
    int peer = ip_ok ? route_table_peer(&l->routes, ip, 0) : -1;
    if (peer < 0 || peer == l->self) { drop(l, !ip_ok && iplen > 0 ? DROP_MALFORMED : DROP_NO_ROUTE); continue; }
    struct conn *c = peer < l->npeer ? l->by_peer[peer] : NULL;
    if (c == NULL) {
      if ((int64_t)backlog + l->mesh_payload + n > l->mesh_backlog) { drop(l, DROP_QUEUE_FULL); continue; }
      put32(l->mesh + l->mesh_used, (uint32_t)n);
      memcpy(l->mesh + l->mesh_used + 4, l->rd + hdr, (size_t)n);
      l->mesh_used += (4 + (int)n + 3) & ~3;
      l->mesh_count++;
      l->mesh_payload += n;
      continue;
    }
    if (pending(c) + c->batch_len + flen > PENDING_BYTES) { drop(l, DROP_QUEUE_FULL); continue; }
    if (c->batch_n > 0 && c->batch_len + 4 + flen > BATCH_BYTES) flush_batch(l, c);
    if (c->closed) { drop(l, DROP_NO_CONNECTION); continue; }
    if (c->batch == NULL && (c->batch = malloc(ENC_BYTES)) == NULL) { drop(l, DROP_QUEUE_FULL); continue; }
    put32(c->batch + c->batch_len, (uint32_t)flen);
    memcpy(c->batch + c->batch_len + 4, frame, flen);
    c->batch_len += 4 + flen;
    c->batch_payload += iplen;
    c->batch_n++;
    /* The first packet of a wake-up leaves at once (a ping does not wait for the read that says
       there is no other); the rest of a burst is batched. */
    if (i == 0) { flush_batch(l, c); continue; }
    if (!c->touched) { c->touched = 1; touched[ntouched++] = c; }
  }
  for (int i = 0; i < ntouched; i++) {
    touched[i]->touched = 0;
    if (!touched[i]->closed) flush_batch(l, touched[i]);
  }
}

/* ---- receiving ---- */

/* Packet frames in the plaintext: each checked and written to the device. False on a bad frame. */
static int deliver(struct loop *l, struct conn *c) {
  size_t q = 0;
  while (c->plen - q >= 4) {
    uint32_t flen = be32(c->pbuf + q);
    if (flen <= VNET || flen > MAX_PACKET_FRAME) return 0;
    if (c->plen - q - 4 < flen) break;
    const uint8_t *frame = c->pbuf + q + 4;
    const uint8_t *ip = frame + VNET;
    size_t iplen = flen - VNET;
    q += 4 + flen;
    int ip_ok = is_ip(ip, iplen);
    if (!ip_ok || route_table_peer(&l->routes, ip, 1) != c->peer) { drop(l, ip_ok ? DROP_SPOOFED : DROP_MALFORMED); continue; }
    count(l, c->slot, 2, 1);
    count(l, c->slot, 3, (double)iplen);
    if (l->vnet != VNET && frame[1] != 0) { drop(l, DROP_MALFORMED); continue; }
    if (l->vnet == VNET) write_tun(l, frame, flen); else write_tun(l, ip, iplen);
  }
  if (q > 0) { memmove(c->pbuf, c->pbuf + q, c->plen - q); c->plen -= q; }
  return 1;
}

/* Sealed frames in rbuf: opened, their packets delivered. False when the connection was closed. */
static int open_frames(struct loop *l, struct conn *c) {
  size_t o = 0;
  while (c->rlen - o >= 4) {
    uint32_t length = be32(c->rbuf + o);
    if (length < FRAME_TAG || length > MAX_FRAME_BODY) goto bad;
    if (c->rlen - o - 4 < length) break;
    size_t body = length - FRAME_TAG;
    if (frame_open(c->cipher, c->rbuf + o, length, c->pbuf + c->plen) != 0) goto bad;
    c->plen += body;
    o += 4 + length;
    if (!deliver(l, c)) goto bad;
    if (c->closed) return 0;
  }
  if (o > 0) { memmove(c->rbuf, c->rbuf + o, c->rlen - o); c->rlen -= o; }
  return 1;
bad:
  drop(l, DROP_MALFORMED);
  close_conn(l, c, WHY_BAD_FRAME, 0);
  return 0;
}

static void read_in(struct loop *l, struct conn *c) {
  for (int i = 0; i < READS_PER_TURN; i++) {
    size_t room = RBUF_BYTES - c->rlen;
    if (room > CONN_READ) room = CONN_READ;
    ssize_t n = read(c->fd, c->rbuf + c->rlen, room);
    if (n > 0) {
      c->rlen += (size_t)n;
      if (!open_frames(l, c)) return;
      /* A short read emptied the socket: poll says when there is more. */
      if ((size_t)n < room) return;
      continue;
    }
    if (n == 0) { close_conn(l, c, WHY_PEER_CLOSED, 0); return; }
    if (errno == EAGAIN) return;
    if (errno != EINTR) { close_conn(l, c, WHY_READ_FAILED, errno); return; }
  }
}

/* A sending connection became readable: the receiver closed it (it never writes otherwise). */
static void read_out(struct loop *l, struct conn *c) {
  uint8_t buf[4096];
  ssize_t n = read(c->fd, buf, sizeof buf);
  if (n == 0) close_conn(l, c, WHY_PEER_CLOSED, 0);
  else if (n < 0 && errno != EAGAIN && errno != EINTR) close_conn(l, c, WHY_READ_FAILED, errno);
}

/* ---- the API the packet thread calls (through koffi) ---- */

int weft_pl_abi(void) { return WEFT_PL_ABI; }

/* Looks up OpenSSL in the process; 0 when everything is there. */
int weft_pl_init(void) { return frame_cipher_init(); }

/*
 * A loop. `counters` and `control` are the SharedArrayBuffers the main thread reads (their memory
 * never moves); `mesh` is where packets for the main thread are put, as records of a 4-byte BE
 * length and the packet, each padded to 4 bytes.
 */
struct loop *weft_pl_new(int wake_fd, int vnet, int self, int mesh_backlog, double *counters, int32_t *control, uint8_t *mesh, int mesh_cap) {
  struct loop *l = calloc(1, sizeof *l);
  if (l == NULL) return NULL;
  l->wake_fd = wake_fd; l->vnet = vnet; l->self = self; l->mesh_backlog = mesh_backlog;
  l->counters = counters; l->control = control; l->mesh = mesh; l->mesh_cap = mesh_cap;
  l->tun = -1; l->dirty = 1;
  return l;
}

void weft_pl_set_tun(struct loop *l, int fd, int gen) {
  if (l->tun >= 0) { close(l->tun); event(l, EV_TUN_CLOSED, l->tun_gen, 0, 0); }
  l->tun = fd; l->tun_gen = gen; l->dirty = 1;
}

static struct conn *new_conn(struct loop *l, int id, int out, int peer, int slot, int fd, const uint8_t *key) {
  if (peer < 0) return NULL;
  if (peer >= l->npeer) {
    int cap = l->npeer;
    struct conn **p = grow(l->by_peer, &cap, peer + 1, sizeof *p);
    if (p == NULL) return NULL;
    memset(p + l->npeer, 0, (size_t)(cap - l->npeer) * sizeof *p);
    l->by_peer = p; l->npeer = cap;
  }
  struct conn **cs = grow(l->conns, &l->cconns, l->nconns + 1, sizeof *cs);
  if (cs == NULL) return NULL;
  l->conns = cs;
  struct conn *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  *c = (struct conn){ .id = id, .out = out, .peer = peer, .slot = slot, .fd = fd };
  c->cipher = frame_cipher_new(out, key);
  int ok = c->cipher != NULL;
  if (ok && !out) ok = (c->rbuf = malloc(RBUF_BYTES)) != NULL && (c->pbuf = malloc(PBUF_BYTES)) != NULL;
  if (!ok) { free_conn(c); return NULL; }
  l->conns[l->nconns++] = c;
  l->dirty = 1;
  return c;
}

/* A direct connection to send on; `head` (the session id) goes first. 0, or -1 (the caller closes fd). */
int weft_pl_add_out(struct loop *l, int id, int peer, int slot, int fd, const uint8_t *key, const uint8_t *head, int head_len) {
  struct conn *c = new_conn(l, id, 1, peer, slot, fd, key);
  if (c == NULL) return -1;
  struct conn *old = l->by_peer[peer];
  l->by_peer[peer] = c;
  if (old != NULL) close_conn(l, old, WHY_REPLACED, 0);
  if (head_len > 0 && !queue(l, c, head, (size_t)head_len)) return 0;
  flush_out(l, c);
  return 0;
}

/* A direct connection to read; `leftover` arrived with its session id. 0, or -1 (the caller closes fd). */
int weft_pl_add_in(struct loop *l, int id, int peer, int slot, int fd, const uint8_t *key, const uint8_t *leftover, int len) {
  struct conn *c = new_conn(l, id, 0, peer, slot, fd, key);
  if (c == NULL) return -1;
  size_t off = 0;
  while (off < (size_t)len) {
    size_t k = (size_t)len - off;
    if (k > RBUF_BYTES - c->rlen) k = RBUF_BYTES - c->rlen;
    memcpy(c->rbuf + c->rlen, leftover + off, k);
    c->rlen += k; off += k;
    if (!open_frames(l, c)) return 0;
  }
  /* Bytes that came between the main thread's last read and the hand-over wait in the kernel. */
  read_in(l, c);
  return 0;
}

/* Packet frames the main thread had queued for connection `id`. */
void weft_pl_send(struct loop *l, int id, const uint8_t *bytes, int len) {
  struct conn *c = find(l, id);
  if (c != NULL && c->out && len > 0) send_sealed(l, c, bytes, (size_t)len);
}

void weft_pl_close(struct loop *l, int id) {
  struct conn *c = find(l, id);
  if (c != NULL) close_conn(l, c, WHY_CLOSED, 0);
}

/* Tests only: the next read of the device fails with EIO. */
void weft_pl_fault(struct loop *l) { l->fault = 1; }

/* The oldest event not yet taken into out[0..3] (type, id or generation, why, errno); 0 when none. */
int weft_pl_event(struct loop *l, int32_t *out) {
  if (l->event_head >= l->nevents) { l->event_head = l->nevents = 0; return 0; }
  struct event *e = &l->events[l->event_head++];
  out[0] = e->type; out[1] = e->id; out[2] = e->why; out[3] = e->err;
  return 1;
}

/* Bytes in the mesh buffer since the last run (records, weft_pl_new). */
int weft_pl_mesh_bytes(struct loop *l) { return l->mesh_used; }

static int rebuild_poll(struct loop *l) {
  struct pollfd *p = grow(l->pfd, &l->cpfd, 2 + l->nconns, sizeof *p);
  if (p == NULL) return -1;
  l->pfd = p;
  struct conn **c = grow(l->pconn, &l->cpconn, 2 + l->nconns, sizeof *c);
  if (c == NULL) return -1;
  l->pconn = c;
  for (int i = 0; i < l->ngrave; i++) free_conn(l->grave[i]);
  l->ngrave = 0;
  p[0] = (struct pollfd){ l->wake_fd, POLLIN, 0 };
  p[1] = (struct pollfd){ l->tun, POLLIN, 0 }; /* -1: poll ignores the entry */
  c[0] = c[1] = NULL;
  for (int i = 0; i < l->nconns; i++) {
    struct conn *k = l->conns[i];
    /* A sending connection is polled for reading too: the receiver never writes, so readable
       means closed (or a peer breaking the protocol). */
    p[2 + i] = (struct pollfd){ k->fd, (short)(POLLIN | (k->out && pending(k) > 0 ? POLLOUT : 0)), 0 };
    c[2 + i] = k;
  }
  l->npfd = 2 + l->nconns;
  l->dirty = 0;
  return 0;
}

/*
 * Moves packets until there is something for JavaScript: returns R_ bits, or -errno when poll
 * failed. Mesh packets of this run are in the mesh buffer (weft_pl_mesh_bytes).
 */
int weft_pl_run(struct loop *l) {
  l->mesh_used = 0; l->mesh_count = 0; l->mesh_payload = 0;
  for (;;) {
    if (__atomic_load_n(&l->control[CTL_STOP], __ATOMIC_SEQ_CST) != 0) return R_STOP;
    if (l->dirty && rebuild_poll(l) != 0) return -ENOMEM;
    int result = 0;
    if (l->fault && l->tun >= 0) drain_tun(l);
    else {
      int r = poll(l->pfd, (nfds_t)l->npfd, -1);
      if (r < 0) {
        if (errno == EINTR) continue;
        return -errno;
      }
      /* The connections first: the device's next packets are often the replies to what they bring. */
      for (int i = 2; i < l->npfd; i++) {
        short ev = l->pfd[i].revents;
        struct conn *c = l->pconn[i];
        if (ev == 0 || c->closed) continue;
        if (!c->out) {
          if (ev & (POLLIN | POLLHUP | POLLERR)) read_in(l, c);
          else if (ev & POLLNVAL) close_conn(l, c, WHY_NOT_OPEN, 0);
        } else {
          if ((ev & POLLOUT) && !flush_out(l, c)) continue;
          if (ev & (POLLIN | POLLHUP | POLLERR)) read_out(l, c);
          else if (ev & POLLNVAL) close_conn(l, c, WHY_NOT_OPEN, 0);
        }
      }
      short tev = l->pfd[1].revents;
      int same = l->tun >= 0 && l->pfd[1].fd == l->tun;
      /* The kernel answers a packet inside its write to the device: read the answer now, without
         another poll (a ping's reply leaves in the same wake-up as its request came in). */
      int answered = l->wrote_tun;
      l->wrote_tun = 0;
      if (same && (tev & (POLLERR | POLLHUP | POLLNVAL)) && !(tev & POLLIN)) {
        tun_fault(l, (tev & POLLNVAL) ? TUN_POLL_NVAL : (tev & POLLHUP) ? TUN_POLL_HUP : TUN_POLL_ERR, 0);
      } else if (l->tun >= 0 && (answered || (same && (tev & POLLIN)))) {
        drain_tun(l);
      }
      if (l->pfd[0].revents != 0) {
        uint64_t v;
        if (read(l->wake_fd, &v, sizeof v) < 0) { /* EAGAIN: another read took it */ }
        result |= R_WAKE;
      }
    }
    if (l->nevents > l->event_head) result |= R_EVENTS;
    if (l->mesh_count > 0) result |= R_MESH;
    if (result != 0) return result;
  }
}

/* Closes every connection and the device (each said as an event); the loop can then be freed. */
void weft_pl_stop(struct loop *l) {
  while (l->nconns > 0) close_conn(l, l->conns[l->nconns - 1], WHY_STOPPED, 0);
  if (l->tun >= 0) { close(l->tun); event(l, EV_TUN_CLOSED, l->tun_gen, 0, 0); l->tun = -1; }
}

void weft_pl_free(struct loop *l) {
  if (l == NULL) return;
  for (int i = 0; i < l->nconns; i++) free_conn(l->conns[i]);
  for (int i = 0; i < l->ngrave; i++) free_conn(l->grave[i]);
  free(l->conns); free(l->grave); free(l->by_peer); free(l->pconn); free(l->pfd);
  route_table_free(&l->routes);
  free(l->events);
  free(l);
}
