/* The native packet loop's route table (route-table.h). */
#include <stdlib.h>
#include <string.h>
#include "route-table.h"
#include "wire.h"

int route_table_peer(const struct route_table *l, const uint8_t *ip, int src) {
  if ((ip[0] >> 4) == 4) {
    uint32_t a = be32(ip + (src ? 12 : 16));
    int lo = 0, hi = l->nleases4 - 1;
    while (lo <= hi) {
      int mid = (lo + hi) / 2;
      uint32_t m = l->leases4[mid].addr;
      if (m == a) return l->leases4[mid].peer;
      if (m < a) lo = mid + 1; else hi = mid - 1;
    }
    for (int i = 0; i < l->nnets4; i++) if ((a & l->nets4[i].mask) == l->nets4[i].base) return l->nets4[i].peer;
    return -1;
  }
  const uint8_t *a = ip + (src ? 8 : 24);
  int lo = 0, hi = l->nleases6 - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    int c = memcmp(l->leases6[mid].addr, a, 16);
    if (c == 0) return l->leases6[mid].peer;
    if (c < 0) lo = mid + 1; else hi = mid - 1;
  }
  for (int i = 0; i < l->nnets6; i++) {
    int match = 1;
    for (int j = 0; j < 16 && match; j++) match = (a[j] & l->nets6[i].mask[j]) == l->nets6[i].base[j];
    if (match) return l->nets6[i].peer;
  }
  return -1;
}

static int cmp_lease4(const void *x, const void *y) {
  const struct lease4 *a = x, *b = y;
  if (a->addr != b->addr) return a->addr < b->addr ? -1 : 1;
  return a->order - b->order;
}

static int cmp_lease6(const void *x, const void *y) {
  const struct lease6 *a = x, *b = y;
  int c = memcmp(a->addr, b->addr, 16);
  return c != 0 ? c : a->order - b->order;
}

int route_table_set(struct route_table *l, const uint8_t *recs, int n) {
  int n4 = 0, n6 = 0;
  for (int i = 0; i < n; i++) {
    const uint8_t *r = recs + 24 * i;
    if (!((r[0] == 4 && r[1] <= 32) || (r[0] == 6 && r[1] <= 128))) return -1;
    if (r[0] == 4) n4++; else n6++;
  }
  struct net4 *nets4 = calloc(n4 + 1, sizeof *nets4);
  struct lease4 *leases4 = calloc(n4 + 1, sizeof *leases4);
  struct net6 *nets6 = calloc(n6 + 1, sizeof *nets6);
  struct lease6 *leases6 = calloc(n6 + 1, sizeof *leases6);
  if (!nets4 || !leases4 || !nets6 || !leases6) { free(nets4); free(leases4); free(nets6); free(leases6); return -1; }
  int a = 0, b = 0, c = 0, d = 0;
  for (int i = 0; i < n; i++) {
    const uint8_t *r = recs + 24 * i;
    int32_t peer = (int32_t)((uint32_t)r[4] | (uint32_t)r[5] << 8 | (uint32_t)r[6] << 16 | (uint32_t)r[7] << 24);
    int prefix = r[1];
    if (r[0] == 4) {
      uint32_t addr = be32(r + 8);
      if (prefix == 32) leases4[b++] = (struct lease4){ addr, peer, i };
      else {
        uint32_t mask = prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);
        nets4[a++] = (struct net4){ addr & mask, mask, peer };
      }
    } else if (prefix == 128) {
      memcpy(leases6[d].addr, r + 8, 16);
      leases6[d].peer = peer; leases6[d].order = i; d++;
    } else {
      struct net6 *e = &nets6[c++];
      for (int j = 0; j < 16; j++) {
        int bits = prefix - 8 * j;
        e->mask[j] = bits >= 8 ? 0xff : bits <= 0 ? 0 : (uint8_t)(0xff << (8 - bits));
        e->base[j] = r[8 + j] & e->mask[j];
      }
      e->peer = peer;
    }
  }
  /* A lease given twice: the later record wins, as in RouteIndex's map. */
  qsort(leases4, b, sizeof *leases4, cmp_lease4);
  int k = 0;
  for (int i = 0; i < b; i++) { if (k > 0 && leases4[k - 1].addr == leases4[i].addr) k--; leases4[k++] = leases4[i]; }
  b = k;
  qsort(leases6, d, sizeof *leases6, cmp_lease6);
  k = 0;
  for (int i = 0; i < d; i++) { if (k > 0 && memcmp(leases6[k - 1].addr, leases6[i].addr, 16) == 0) k--; leases6[k++] = leases6[i]; }
  d = k;
  free(l->nets4); free(l->leases4); free(l->nets6); free(l->leases6);
  l->nets4 = nets4; l->leases4 = leases4; l->nets6 = nets6; l->leases6 = leases6;
  l->nnets4 = a; l->nleases4 = b; l->nnets6 = c; l->nleases6 = d;
  return 0;
}

void route_table_free(struct route_table *t) {
  free(t->nets4); free(t->leases4); free(t->nets6); free(t->leases6);
  *t = (struct route_table){ 0 };
}
