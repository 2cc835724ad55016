/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Per-packet NodePort / ExternalIP / LoadBalancer load-balancing on the node's uplink
 * (bpf/nodeport.bpf.c): layouts of its node configuration, connection tracking, SNAT,
 * fragment tracking and local-backend maps. src/datapath/nodeport.ts mirrors every struct; a
 * kernel test compares both with the BTF of alignchecker.bpf.o.
 *
 * A flow from an external client to a frontend leaves these entries:
 *
 *   weft_np4_ct      ORIGINAL  client → frontend          (as the uplink receives it)
 *                              = the backend, and the SNAT port when the backend is remote
 *   weft_np4_ct      REPLY     backend → client           (local backend: as the uplink sends it)
 *                              = the frontend to restore as the source
 *   weft_np4_snat              backend → node:snat_port   (remote backend: as the uplink receives it)
 *                              = the client and the frontend to restore
 *
 * Times are CLOCK_MONOTONIC seconds (bpf_ktime_get_ns() / 1e9), like lb_affinity.last_used.
 */
#ifndef WEFT_NODEPORT_H
#define WEFT_NODEPORT_H

#include "weft/common.h"

/* ---- node configuration: weft_np_config (hash, key: __u32 ifindex of an uplink) ---------
 * One entry per uplink the programs are attached to, written by the agent before it attaches
 * them there; a device without an entry is not served (its packets pass). */

struct np_config {
	__be32 node_ipv4;      /* SNAT source for remote backends; 0: the programs pass everything */
	__u32 uplink_ifindex;  /* the entry's key, repeated: a mismatch also passes everything */
	__u16 snat_port_min;   /* host order, inclusive: ports remote flows leave the node with */
	__u16 snat_port_max;
	__u32 flags;	       /* reserved, 0 */
};
WEFT_ASSERT_SIZE(struct np_config, 16);

/* ---- connection tracking (LRU): weft_np4_ct --------------------------------------------- */

enum np_ct_dir {
	NP_CT_ORIGINAL = 0, /* client → frontend, at uplink ingress */
	NP_CT_REPLY = 1,    /* local backend → client, at uplink egress */
};

/* A flow as a packet shows it at one hook. Also the key of weft_np4_snat (dir unused, 0). */
struct np4_tuple {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 dir; /* enum np_ct_dir */
	__u8 pad[2];
};
WEFT_ASSERT_SIZE(struct np4_tuple, 16);

enum np_ct_flags {
	NP_CT_F_SNAT = 1 << 0,	      /* the backend is remote: the flow leaves as node_ipv4:snat_port */
	NP_CT_F_SEEN_REPLY = 1 << 1,  /* the backend answered (TCP: established) */
	NP_CT_F_CLIENT_FIN = 1 << 2,  /* the client sent FIN */
	NP_CT_F_BACKEND_FIN = 1 << 3, /* the backend sent FIN */
	NP_CT_F_CLOSING = 1 << 4,     /* RST, or FIN both ways: a new SYN starts a new flow */
};

struct np4_ct_entry {
	__be32 nat_addr;     /* ORIGINAL: the backend (new destination); REPLY: the frontend (new source) */
	__be16 nat_port;
	__u16 rev_nat_index; /* the frontend's, for display */
	__u32 backend_id;    /* ORIGINAL: checked against weft_lb4_backends on every packet */
	__be16 snat_port;    /* ORIGINAL with NP_CT_F_SNAT: the node port the flow leaves with */
	__u8 flags;	     /* enum np_ct_flags, kept on the ORIGINAL entry */
	__u8 pad;
	__u32 expires;	     /* monotonic seconds; past it the entry no longer counts */
};
WEFT_ASSERT_SIZE(struct np4_ct_entry, 20);

/* Lifetimes (seconds), as Cilium's defaults: a flow's entries live this long after its last packet. */
#define NP_CT_LIFETIME_TCP 21600	/* established TCP */
#define NP_CT_LIFETIME_TCP_SYN 60	/* TCP before the backend answered */
#define NP_CT_LIFETIME_TCP_CLOSING 10	/* after RST or FIN both ways */
#define NP_CT_LIFETIME_NONTCP 60	/* UDP */
/* Expiry is written at most this often per flow, not per packet, to keep cache lines shared. */
#define NP_CT_REFRESH_INTERVAL 1

/* ---- SNAT (LRU): weft_np4_snat ------------------------------------------------------------
 * Key: struct np4_tuple of the reply, backend → node_ipv4:snat_port (dir 0). A port is taken
 * by inserting its key (BPF_NOEXIST), so two flows to the same backend never share one. */

struct np4_snat_entry {
	__be32 client_addr;   /* the reply's new destination */
	__be32 frontend_addr; /* the reply's new source */
	__be16 client_port;
	__be16 frontend_port;
	__u16 rev_nat_index;
	__u16 pad;
	__u32 expires; /* refreshed with the flow's ORIGINAL entry; an expired port may be reused */
};
WEFT_ASSERT_SIZE(struct np4_snat_entry, 20);

/* How many ports a new remote flow tries before it is dropped (NP_STAT_SNAT_PORT_EXHAUSTED). */
#define NP_SNAT_PORT_ATTEMPTS 32

/* ---- IPv4 fragments (LRU): weft_np4_frag --------------------------------------------------
 * Only a datagram's first fragment carries the ports. It records them here under the
 * datagram's identity so that the later fragments are translated like the first. A later
 * fragment that arrives before its first passes untouched (NP_STAT_FRAG_UNTRACKED). */

struct np4_frag_key {
	__be32 saddr;
	__be32 daddr;
	__be16 id;
	__u8 proto;
	__u8 pad;
};
WEFT_ASSERT_SIZE(struct np4_frag_key, 12);

struct np4_frag_ports {
	__be16 sport;
	__be16 dport;
};
WEFT_ASSERT_SIZE(struct np4_frag_ports, 4);

/* ---- local backends: weft_np4_local_backends (key: __be32 address, value: __u8 1) ----------
 * Addresses of this node's backends (its pods, and its own addresses for hostNetwork pods),
 * written by the agent. A flow to a listed backend is only DNATed: the client's address is
 * kept and the stack forwards it. Any other backend is remote: DNAT, SNAT and redirect. */

/* ---- loadBalancerSourceRanges (LPM trie): weft_np4_source_ranges (value: __u8 1) -----------
 * A frontend whose master has LB_SVC_F_SOURCE_RANGE accepts new flows only from clients in
 * one of its ranges; others are dropped (NP_STAT_SOURCE_RANGE_DENIED), as kube-proxy does.
 * prefixlen counts the 32 bits of rev_nat_index and pad, plus the range's prefix length. */

struct np4_source_range_key {
	__u32 prefixlen;
	__u16 rev_nat_index;
	__u16 pad;
	__be32 address;
};
WEFT_ASSERT_SIZE(struct np4_source_range_key, 12);

/* ---- counters: weft_np_stats (array of __u64, index enum np_stat) ------------------------
 * NP_STAT_SLOTS entries, so new counters fit in an already pinned map. */

enum np_stat {
	NP_STAT_FWD_LOCAL = 0,		/* new flow DNATed to a local backend */
	NP_STAT_FWD_SNAT = 1,		/* new flow DNATed and SNATed to a remote backend */
	NP_STAT_CT_HIT = 2,		/* packet of a tracked flow translated toward its backend */
	NP_STAT_CT_MISS = 3,		/* frontend packet without a live flow: a backend is chosen */
	NP_STAT_REV_LOCAL = 4,		/* local backend's reply: source restored to the frontend */
	NP_STAT_REV_SNAT = 5,		/* remote backend's reply: client and frontend restored */
	NP_STAT_REFUSED_TCP_RST = 6,	/* no backend: TCP RST sent back */
	NP_STAT_REFUSED_ICMP = 7,	/* no backend: ICMP port unreachable sent back */
	NP_STAT_REFUSED_DROPPED = 8,	/* no backend, and no answer possible (RST, ICMP, helper error) */
	NP_STAT_INCONSISTENT = 9,	/* master without its slot or backend: refused */
	NP_STAT_SNAT_PORT_EXHAUSTED = 10, /* no free SNAT port: dropped */
	NP_STAT_FIB_FAIL = 11,		/* no route toward the backend or the client: dropped */
	NP_STAT_AFFINITY_HIT = 12,	/* ClientIP affinity chose the backend */
	NP_STAT_CT_BACKEND_GONE = 13,	/* tracked flow's backend left weft_lb4_backends: rechosen */
	NP_STAT_FRAG_UNTRACKED = 14,	/* later fragment without its first: passed */
	NP_STAT_CT_UPDATE_FAILED = 15,	/* a conntrack or fragment entry could not be written */
	NP_STAT_TTL_EXCEEDED = 16,	/* forwarded packet with TTL <= 1: dropped */
	NP_STAT_REWRITE_FAILED = 17,	/* a packet helper failed mid-rewrite: dropped */
	NP_STAT_SOURCE_RANGE_DENIED = 18, /* client outside loadBalancerSourceRanges: dropped */
	NP_STAT_MAX = 19,
};
#define NP_STAT_SLOTS 64

#endif /* WEFT_NODEPORT_H */
