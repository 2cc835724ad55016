/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Load-balancing map layouts: the one definition of every key and value the socket LB
 * (sock_lb.bpf.c) and the per-packet NodePort LB (tc, next) share. src/datapath/lbmap.ts
 * mirrors each struct; a kernel test compares both with this object's BTF.
 *
 * A Service becomes one or more frontends (ClusterIP, each ExternalIP, each LoadBalancer
 * ingress IP, one per node IP per nodePort), each with its own rev_nat_index. A frontend is a
 * run of entries in weft_lb{4,6}_services under one {address, dport, proto, scope}:
 *
 *   slot 0        master: count = number of backends (0: refuse at once), flags, affinity timeout
 *   slot 1..count backend_id of each backend, looked up in weft_lb{4,6}_backends
 *
 * Scopes: a frontend whose external and in-cluster clients see different backends (Cilium's
 * LB_LOOKUP_SCOPE_EXT/INT) has two runs. EXT holds what external clients get
 * (externalTrafficPolicy Local: node-local backends only) and sets LB_SVC_F2_TWO_SCOPES; INT holds
 * what in-cluster clients get (all backends, or node-local ones for internalTrafficPolicy Local).
 * The socket LB only ever serves in-cluster clients, so it follows the flag to INT.
 *
 * Writers keep every reader consistent by ordering: backends, then slots, then the master
 * (and the reverse on removal), so a program never finds a master whose slots are missing.
 */
#ifndef WEFT_LB_H
#define WEFT_LB_H

#include "weft/common.h"

enum lb_lookup_scope {
	LB_LOOKUP_SCOPE_EXT = 0, /* external clients; the only scope of a one-scope frontend */
	LB_LOOKUP_SCOPE_INT = 1, /* in-cluster clients of a two-scope frontend */
};

/* lb_service.flags (master entry): the frontend's type and policies. ClusterIP sets no type bit. */
enum lb_svc_flags {
	LB_SVC_F_EXTERNAL_IP = 1 << 0,	/* spec.externalIPs */
	LB_SVC_F_NODEPORT = 1 << 1,	/* a node IP and a nodePort */
	LB_SVC_F_LOADBALANCER = 1 << 2, /* status.loadBalancer.ingress */
	LB_SVC_F_AFFINITY = 1 << 3,	/* sessionAffinity ClientIP: timeout in the master's backend_id */
	LB_SVC_F_EXT_LOCAL = 1 << 4,	/* externalTrafficPolicy Local */
	LB_SVC_F_SOURCE_RANGE = 1 << 5, /* loadBalancerSourceRanges apply (tc path) */
};

/* lb_service.flags2 (master entry). */
enum lb_svc_flags2 {
	LB_SVC_F2_INT_LOCAL = 1 << 0,  /* internalTrafficPolicy Local */
	LB_SVC_F2_TWO_SCOPES = 1 << 1, /* in-cluster clients use the LB_LOOKUP_SCOPE_INT run */
	LB_SVC_F2_MAGLEV = 1 << 2,     /* reserved: choose by Maglev table; until then, random */
};

/* lb{4,6}_backend.flags, low two bits: the endpoint's state. The agent decides which backends a
 * frontend lists (terminating ones only when no other is ready); the state is kept for
 * display and for the tc path's connection tracking. */
enum lb_backend_state {
	LB_BACKEND_ACTIVE = 0,
	LB_BACKEND_TERMINATING = 1,
	LB_BACKEND_QUARANTINED = 2,
};
#define LB_BACKEND_STATE_MASK 0x3

/* ---- frontends: weft_lb4_services, weft_lb6_services ------------------------------------ */

struct lb4_key {
	__be32 address;
	__be16 dport;
	__u16 backend_slot; /* 0: master; 1..count: a backend */
	__u8 proto;	    /* IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP */
	__u8 scope;	    /* enum lb_lookup_scope */
	__u8 pad[2];
};
WEFT_ASSERT_SIZE(struct lb4_key, 12);

struct lb6_key {
	union v6addr address;
	__be16 dport;
	__u16 backend_slot;
	__u8 proto;
	__u8 scope;
	__u8 pad[2];
};
WEFT_ASSERT_SIZE(struct lb6_key, 24);

/* The value of both families' service maps. */
struct lb_service {
	/* Slot > 0: the backend's id. Slot 0: the ClientIP affinity timeout in seconds (read it
	 * through lb_svc_affinity_timeout()). One field rather than a union keeps BTF flat. */
	__u32 backend_id;
	__u16 count;	     /* master: number of backends; 0 refuses connections at once */
	__u16 rev_nat_index; /* master and slots: the frontend's weft_lb{4,6}_reverse_nat key */
	__u8 flags;	     /* enum lb_svc_flags */
	__u8 flags2;	     /* enum lb_svc_flags2 */
	__u8 pad[2];
};
WEFT_ASSERT_SIZE(struct lb_service, 12);

static __always_inline __u32 lb_svc_affinity_timeout(const struct lb_service *master)
{
	return master->backend_id;
}

/* ---- backends: weft_lb4_backends, weft_lb6_backends (key: __u32 backend_id) ------------ */

struct lb4_backend {
	__be32 address;
	__be16 port;
	__u8 proto;
	__u8 flags;	 /* enum lb_backend_state in the low bits */
	__u16 cluster_id; /* room for multi-cluster; 0 = this cluster */
	__u8 zone;	 /* room for topology-aware routing; 0 = unknown */
	__u8 pad;
};
WEFT_ASSERT_SIZE(struct lb4_backend, 12);

struct lb6_backend {
	union v6addr address;
	__be16 port;
	__u8 proto;
	__u8 flags;
	__u16 cluster_id;
	__u8 zone;
	__u8 pad;
};
WEFT_ASSERT_SIZE(struct lb6_backend, 24);

/* ---- reverse NAT per frontend: weft_lb{4,6}_reverse_nat (key: __u16 rev_nat_index) ----- */

struct lb4_reverse_nat {
	__be32 address;
	__be16 port;
	__u16 pad;
};
WEFT_ASSERT_SIZE(struct lb4_reverse_nat, 8);

struct lb6_reverse_nat {
	union v6addr address;
	__be16 port;
	__u16 pad;
};
WEFT_ASSERT_SIZE(struct lb6_reverse_nat, 20);

/* ---- reverse NAT per socket (LRU): weft_lb{4,6}_sock_revnat -------------------------------
 * Written by connect/sendmsg when a socket's destination is rewritten to a backend; read by
 * recvmsg (UDP replies appear to come from the frontend) and getpeername (shows the frontend).
 * Keyed by socket cookie, so an entry only ever applies to the socket that made it. */

struct lb4_sock_revnat_key {
	__u64 cookie;
	__be32 address; /* backend */
	__be16 port;
	__u16 pad;
};
WEFT_ASSERT_SIZE(struct lb4_sock_revnat_key, 16);

struct lb4_sock_revnat {
	__be32 address; /* frontend */
	__be16 port;
	__u16 rev_nat_index;
};
WEFT_ASSERT_SIZE(struct lb4_sock_revnat, 8);

struct lb6_sock_revnat_key {
	__u64 cookie;
	union v6addr address;
	__be16 port;
	__u8 pad[6];
};
WEFT_ASSERT_SIZE(struct lb6_sock_revnat_key, 32);

struct lb6_sock_revnat {
	union v6addr address;
	__be16 port;
	__u16 rev_nat_index;
};
WEFT_ASSERT_SIZE(struct lb6_sock_revnat, 20);

/* ---- session affinity (LRU): weft_lb_affinity ---------------------------------------------
 * One map for both families: rev_nat_index is unique across families. The socket LB knows
 * its client by network namespace (a pod); the tc path will know it by address. */

enum lb_affinity_client_kind {
	LB_AFFINITY_CLIENT_NETNS = 1, /* client.netns_cookie */
	LB_AFFINITY_CLIENT_ADDR = 2,  /* client.addr, IPv4 as v4-mapped IPv6 */
};

struct lb_affinity_key {
	union {
		__u64 netns_cookie;
		union v6addr addr;
	} client;
	__u16 rev_nat_index;
	__u8 client_kind; /* enum lb_affinity_client_kind */
	__u8 pad[5];
};
WEFT_ASSERT_SIZE(struct lb_affinity_key, 24);

struct lb_affinity {
	__u64 last_used; /* seconds of CLOCK_MONOTONIC (bpf_ktime_get_ns() / 1e9) */
	__u32 backend_id;
	__u32 pad;
};
WEFT_ASSERT_SIZE(struct lb_affinity, 16);

/* weft_lb_aff_match: {backend_id, rev_nat_index} present while that backend serves that
 * frontend. An affinity entry is honoured only while its pair is here, so the agent ends every
 * client's stickiness to a backend by deleting one key (Cilium's lb_affinity_match). */
struct lb_affinity_match_key {
	__u32 backend_id;
	__u16 rev_nat_index;
	__u16 pad;
};
WEFT_ASSERT_SIZE(struct lb_affinity_match_key, 8);

/* ---- socket LB counters: weft_sock_lb_stats (array of __u64, index enum sock_lb_stat) -----
 * The array has SOCK_LB_STAT_SLOTS entries so new counters fit in an already pinned map. */

enum sock_lb_stat {
	SOCK_LB_STAT_TRANSLATED = 0,	  /* a destination rewritten to a backend */
	SOCK_LB_STAT_REFUSED_NO_BACKEND = 1, /* a frontend with count 0: ECONNREFUSED */
	SOCK_LB_STAT_REFUSED_INCONSISTENT = 2, /* master without its slot, backend or INT run */
	SOCK_LB_STAT_AFFINITY_HIT = 3,	  /* a ClientIP-affinity backend reused */
	SOCK_LB_STAT_REVNAT_REWRITTEN = 4,	  /* recvmsg/getpeername showed the frontend */
	SOCK_LB_STAT_REVNAT_UPDATE_FAILED = 5, /* the socket reverse NAT entry could not be written */
	SOCK_LB_STAT_MAX = 6,
};
#define SOCK_LB_STAT_SLOTS 32

#endif /* WEFT_LB_H */
