/*
 * The route table of the native packet loop: which peer carries a destination, and which peer
 * owns a source, answered as src/projections/route-index.ts answers them (exact leases first,
 * then the first advertised network that contains the address).
 */
#ifndef WEFT_ROUTE_TABLE_H
#define WEFT_ROUTE_TABLE_H
#include <stdint.h>

/* Internal to the library: only weft_pl_* is its interface. */
#pragma GCC visibility push(hidden)

struct net4 { uint32_t base, mask; int peer; };
struct lease4 { uint32_t addr; int peer, order; };
struct net6 { uint8_t base[16], mask[16]; int peer; };
struct lease6 { uint8_t addr[16]; int peer, order; };

struct route_table {
  struct net4 *nets4; struct lease4 *leases4; struct net6 *nets6; struct lease6 *leases6;
  int nnets4, nleases4, nnets6, nleases6;
};

/*
 * Replaces the table with `n` records of 24 bytes: family (4 or 6), prefix length, 2 unused,
 * peer index (int32, little-endian), address (16 bytes, network order, IPv4 in the first 4).
 * Returns 0, or -1 when a record is malformed or memory ran out (the old table is kept).
 */
int route_table_set(struct route_table *t, const uint8_t *recs, int n);

/* The peer for an IP packet's destination (src = 0) or source (src = 1), or -1; the caller checked it is IP. */
int route_table_peer(const struct route_table *t, const uint8_t *ip, int src);

void route_table_free(struct route_table *t);

#pragma GCC visibility pop

#endif
