// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Socket load-balancing for in-cluster clients (kube-proxy replacement, east-west), in the
 * style of Cilium's bpf_sock.c. Attached to the node's cgroup2 directory, these programs
 * rewrite a socket's destination once, when it connects (TCP, connected UDP) or sends
 * (unconnected UDP), from a Service frontend to one of its backends. Packets then flow
 * unchanged: no per-packet NAT, no conntrack. The way back is only what the socket API shows:
 * recvmsg reports UDP replies as coming from the frontend, getpeername reports the frontend.
 *
 * The IPv6 hooks serve IPv4 frontends too, for v4-mapped addresses (::ffff:a.b.c.d) on
 * dual-stack sockets, through the IPv4 maps.
 *
 * Maps and their layouts: include/weft/lb.h and include/weft/lb_maps.h.
 */
#include <linux/bpf.h>
#include <linux/errno.h>
#include <linux/in.h>

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "weft/lb_maps.h"

#define SYS_REJECT 0
#define SYS_PROCEED 1

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, SOCK_LB_STAT_SLOTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weft_sock_lb_stats SEC(".maps");

enum sock_lb_verdict {
	SOCK_LB_PASS,	    /* not a frontend: the socket goes where it asked */
	SOCK_LB_TRANSLATED, /* destination rewritten to a backend */
	SOCK_LB_REFUSED,    /* a frontend we cannot serve: fail the call now */
};

static __always_inline void sock_lb_count(__u32 stat)
{
	__u64 *n = bpf_map_lookup_elem(&weft_sock_lb_stats, &stat);

	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline enum sock_lb_verdict sock_lb_refused(__u32 stat)
{
	sock_lb_count(stat);
	return SOCK_LB_REFUSED;
}

/*
 * A refused frontend fails connect()/sendmsg() with ECONNREFUSED at once, as a closed port
 * would, rather than let the client wait out a timeout against an address nobody answers.
 * bpf_set_retval arrived in Linux 5.18; on older kernels libbpf drops the call (CO-RE) and
 * the caller sees the hook's default EPERM.
 */
static __always_inline int sock_lb_return(enum sock_lb_verdict verdict)
{
	if (verdict != SOCK_LB_REFUSED)
		return SYS_PROCEED;
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_set_retval))
		bpf_set_retval(-ECONNREFUSED);
	return SYS_REJECT;
}

/* user_port holds a __be16 in its low-addressed bytes. */
static __always_inline __be16 ctx_dport(const struct bpf_sock_addr *ctx)
{
	return (__be16)ctx->user_port;
}

static __always_inline void ctx_set_dport(struct bpf_sock_addr *ctx, __be16 port)
{
	ctx->user_port = (__u32)port;
}

static __always_inline void ctx_get_ip6(const struct bpf_sock_addr *ctx, union v6addr *addr)
{
	addr->p[0] = ctx->user_ip6[0];
	addr->p[1] = ctx->user_ip6[1];
	addr->p[2] = ctx->user_ip6[2];
	addr->p[3] = ctx->user_ip6[3];
}

static __always_inline void ctx_set_ip6(struct bpf_sock_addr *ctx, const union v6addr *addr)
{
	ctx->user_ip6[0] = addr->p[0];
	ctx->user_ip6[1] = addr->p[1];
	ctx->user_ip6[2] = addr->p[2];
	ctx->user_ip6[3] = addr->p[3];
}

static __always_inline bool ip6_is_v4_mapped(const union v6addr *addr)
{
	return addr->p[0] == 0 && addr->p[1] == 0 && addr->p[2] == bpf_htonl(0xffff);
}

static __always_inline __u64 monotonic_seconds(void)
{
	return bpf_ktime_get_ns() / WEFT_NSEC_PER_SEC;
}

/* Random for now; LB_SVC_F2_MAGLEV reserves the flag for a Maglev table. */
static __always_inline __u16 lb_pick_slot(const struct lb_service *master)
{
	return (__u16)(bpf_get_prandom_u32() % master->count) + 1;
}

/* ---- ClientIP session affinity: the client is the socket's network namespace ------------ */

static __always_inline void sock_affinity_key(struct lb_affinity_key *key, struct bpf_sock_addr *ctx,
					      __u16 rev_nat_index)
{
	/* Zero the whole key: the union's unused bytes are part of the hash. */
	__builtin_memset(key, 0, sizeof(*key));
	key->client.netns_cookie = bpf_get_netns_cookie(ctx);
	key->rev_nat_index = rev_nat_index;
	key->client_kind = LB_AFFINITY_CLIENT_NETNS;
}

/*
 * The backend this client last used for this frontend, while the affinity has not timed out
 * and the agent still lists that backend for the frontend (weft_lb_aff_match); 0 otherwise.
 */
static __always_inline __u32 sock_affinity_backend(const struct lb_service *master,
						   const struct lb_affinity_key *key, __u64 now)
{
	struct lb_affinity_match_key match = {};
	const struct lb_affinity *seen;

	seen = bpf_map_lookup_elem(&weft_lb_affinity, key);
	if (!seen || now - seen->last_used > lb_svc_affinity_timeout(master))
		return 0;
	match.backend_id = seen->backend_id;
	match.rev_nat_index = master->rev_nat_index;
	if (!bpf_map_lookup_elem(&weft_lb_aff_match, &match))
		return 0;
	return seen->backend_id;
}

static __always_inline void sock_affinity_remember(const struct lb_affinity_key *key, __u32 backend_id,
						   __u64 now)
{
	struct lb_affinity seen = { .last_used = now, .backend_id = backend_id };

	bpf_map_update_elem(&weft_lb_affinity, key, &seen, BPF_ANY);
}

/* ---- IPv4 -------------------------------------------------------------------------------- */

/*
 * The master entry in-cluster clients use for {address, dport, proto}: the EXT run, or the INT
 * run when the frontend has two scopes. *missing_int reports a two-scope frontend whose INT
 * run is absent (the agent writes INT before EXT, so this is an inconsistency, not a miss).
 */
static __always_inline const struct lb_service *lb4_lookup_master(struct lb4_key *key, bool *missing_int)
{
	const struct lb_service *master;

	key->backend_slot = 0;
	key->scope = LB_LOOKUP_SCOPE_EXT;
	master = bpf_map_lookup_elem(&weft_lb4_services, key);
	if (!master || !(master->flags2 & LB_SVC_F2_TWO_SCOPES))
		return master;
	key->scope = LB_LOOKUP_SCOPE_INT;
	master = bpf_map_lookup_elem(&weft_lb4_services, key);
	*missing_int = !master;
	return master;
}

/* Records backend → frontend for this socket, for recvmsg and getpeername. */
static __always_inline void sock4_remember_frontend(struct bpf_sock_addr *ctx, const struct lb4_backend *backend,
						    __be32 frontend, __be16 fport, __u16 rev_nat_index)
{
	struct lb4_sock_revnat_key key = {
		.cookie = bpf_get_socket_cookie(ctx),
		.address = backend->address,
		.port = backend->port,
	};
	struct lb4_sock_revnat want = { .address = frontend, .port = fport, .rev_nat_index = rev_nat_index };
	const struct lb4_sock_revnat *have;

	/* Unconnected UDP sends often: leave an identical entry alone rather than rewrite it. */
	have = bpf_map_lookup_elem(&weft_lb4_sock_revnat, &key);
	if (have && have->address == want.address && have->port == want.port &&
	    have->rev_nat_index == want.rev_nat_index)
		return;
	if (bpf_map_update_elem(&weft_lb4_sock_revnat, &key, &want, BPF_ANY))
		sock_lb_count(SOCK_LB_STAT_REVNAT_UPDATE_FAILED);
}

/*
 * If {daddr, dport} is a frontend for this socket's protocol, picks its backend: the affinity
 * backend if ClientIP affinity holds one, else a random slot. On SOCK_LB_TRANSLATED, *picked
 * is the backend.
 */
static __always_inline enum sock_lb_verdict sock4_forward(struct bpf_sock_addr *ctx, __be32 daddr, __be16 dport,
							  const struct lb4_backend **picked)
{
	struct lb4_key key = { .address = daddr, .dport = dport, .proto = (__u8)ctx->protocol };
	const struct lb4_backend *backend = NULL;
	const struct lb_service *master, *slot;
	struct lb_affinity_key affinity;
	bool affinity_on;
	bool missing_int = false;
	__u32 backend_id = 0;
	__u64 now = 0;

	master = lb4_lookup_master(&key, &missing_int);
	if (!master)
		return missing_int ? sock_lb_refused(SOCK_LB_STAT_REFUSED_INCONSISTENT) : SOCK_LB_PASS;
	if (master->count == 0)
		return sock_lb_refused(SOCK_LB_STAT_REFUSED_NO_BACKEND);

	/* Read the flag once: the agent may rewrite the master between two reads, and the
	 * second branch must not use an affinity key the first one never built. */
	affinity_on = master->flags & LB_SVC_F_AFFINITY;
	if (affinity_on) {
		now = monotonic_seconds();
		sock_affinity_key(&affinity, ctx, master->rev_nat_index);
		backend_id = sock_affinity_backend(master, &affinity, now);
		if (backend_id) {
			backend = bpf_map_lookup_elem(&weft_lb4_backends, &backend_id);
			if (backend)
				sock_lb_count(SOCK_LB_STAT_AFFINITY_HIT);
		}
	}
	if (!backend) {
		key.backend_slot = lb_pick_slot(master);
		slot = bpf_map_lookup_elem(&weft_lb4_services, &key);
		if (!slot)
			return sock_lb_refused(SOCK_LB_STAT_REFUSED_INCONSISTENT);
		backend_id = slot->backend_id;
		backend = bpf_map_lookup_elem(&weft_lb4_backends, &backend_id);
		if (!backend)
			return sock_lb_refused(SOCK_LB_STAT_REFUSED_INCONSISTENT);
	}
	if (affinity_on)
		sock_affinity_remember(&affinity, backend_id, now);

	sock4_remember_frontend(ctx, backend, daddr, dport, master->rev_nat_index);
	sock_lb_count(SOCK_LB_STAT_TRANSLATED);
	*picked = backend;
	return SOCK_LB_TRANSLATED;
}

static __always_inline int sock4_xlate_fwd(struct bpf_sock_addr *ctx)
{
	const struct lb4_backend *backend = NULL;
	enum sock_lb_verdict verdict;

	verdict = sock4_forward(ctx, ctx->user_ip4, ctx_dport(ctx), &backend);
	if (verdict == SOCK_LB_TRANSLATED && backend) {
		ctx->user_ip4 = backend->address;
		ctx_set_dport(ctx, backend->port);
	}
	return sock_lb_return(verdict);
}

/* The frontend this socket was translated from when it reached {addr, port}, if any. */
static __always_inline const struct lb4_sock_revnat *sock4_frontend_of(struct bpf_sock_addr *ctx, __be32 addr,
								       __be16 port)
{
	struct lb4_sock_revnat_key key = { .cookie = bpf_get_socket_cookie(ctx), .address = addr, .port = port };

	return bpf_map_lookup_elem(&weft_lb4_sock_revnat, &key);
}

/*
 * recvmsg and getpeername. The entry is trusted for the socket's lifetime even after the
 * frontend is removed: the socket did connect or send to the frontend, and its cookie is never
 * reused, so a reply from that backend is still a reply from the frontend.
 */
static __always_inline int sock4_xlate_rev(struct bpf_sock_addr *ctx)
{
	const struct lb4_sock_revnat *frontend = sock4_frontend_of(ctx, ctx->user_ip4, ctx_dport(ctx));

	if (frontend) {
		ctx->user_ip4 = frontend->address;
		ctx_set_dport(ctx, frontend->port);
		sock_lb_count(SOCK_LB_STAT_REVNAT_REWRITTEN);
	}
	return SYS_PROCEED;
}

/*
 * cgroup/connect4. Reads: the destination, weft_lb4_services/backends, weft_lb_affinity(+match).
 * Writes: the destination, weft_lb4_sock_revnat, weft_lb_affinity, weft_sock_lb_stats.
 * Promises: a connect to a frontend reaches one of its backends or fails with ECONNREFUSED
 * at once; any other connect is untouched.
 */
SEC("cgroup/connect4")
int weft_sock4_connect(struct bpf_sock_addr *ctx)
{
	return sock4_xlate_fwd(ctx);
}

/*
 * cgroup/sendmsg4 (unconnected UDP). Reads and writes as connect4, per datagram. Promises: a
 * datagram to a frontend goes to one of its backends, or sendmsg fails with ECONNREFUSED.
 */
SEC("cgroup/sendmsg4")
int weft_sock4_sendmsg(struct bpf_sock_addr *ctx)
{
	return sock4_xlate_fwd(ctx);
}

/*
 * cgroup/recvmsg4 (UDP). Reads: the datagram's source, weft_lb4_sock_revnat. Writes: the
 * source. Promises: a reply from a backend this socket was sent to appears to come from the
 * frontend it addressed; everything else is untouched. Never fails the call.
 */
SEC("cgroup/recvmsg4")
int weft_sock4_recvmsg(struct bpf_sock_addr *ctx)
{
	return sock4_xlate_rev(ctx);
}

/*
 * cgroup/getpeername4. Reads: the peer, weft_lb4_sock_revnat. Writes: the peer. Promises: a
 * socket connected through a frontend reports the frontend as its peer. Never fails the call.
 */
SEC("cgroup/getpeername4")
int weft_sock4_getpeername(struct bpf_sock_addr *ctx)
{
	return sock4_xlate_rev(ctx);
}

/* ---- IPv6 (and IPv4 frontends reached through v4-mapped addresses) ---------------------- */

static __always_inline const struct lb_service *lb6_lookup_master(struct lb6_key *key, bool *missing_int)
{
	const struct lb_service *master;

	key->backend_slot = 0;
	key->scope = LB_LOOKUP_SCOPE_EXT;
	master = bpf_map_lookup_elem(&weft_lb6_services, key);
	if (!master || !(master->flags2 & LB_SVC_F2_TWO_SCOPES))
		return master;
	key->scope = LB_LOOKUP_SCOPE_INT;
	master = bpf_map_lookup_elem(&weft_lb6_services, key);
	*missing_int = !master;
	return master;
}

static __always_inline void sock6_remember_frontend(struct bpf_sock_addr *ctx, const struct lb6_backend *backend,
						    const union v6addr *frontend, __be16 fport, __u16 rev_nat_index)
{
	struct lb6_sock_revnat_key key = {
		.cookie = bpf_get_socket_cookie(ctx),
		.address = backend->address,
		.port = backend->port,
	};
	struct lb6_sock_revnat want = { .address = *frontend, .port = fport, .rev_nat_index = rev_nat_index };
	const struct lb6_sock_revnat *have;

	have = bpf_map_lookup_elem(&weft_lb6_sock_revnat, &key);
	if (have && have->address.p[0] == want.address.p[0] && have->address.p[1] == want.address.p[1] &&
	    have->address.p[2] == want.address.p[2] && have->address.p[3] == want.address.p[3] &&
	    have->port == want.port && have->rev_nat_index == want.rev_nat_index)
		return;
	if (bpf_map_update_elem(&weft_lb6_sock_revnat, &key, &want, BPF_ANY))
		sock_lb_count(SOCK_LB_STAT_REVNAT_UPDATE_FAILED);
}

static __always_inline enum sock_lb_verdict sock6_forward(struct bpf_sock_addr *ctx, const union v6addr *daddr,
							  __be16 dport, const struct lb6_backend **picked)
{
	struct lb6_key key = { .address = *daddr, .dport = dport, .proto = (__u8)ctx->protocol };
	const struct lb6_backend *backend = NULL;
	const struct lb_service *master, *slot;
	struct lb_affinity_key affinity;
	bool affinity_on;
	bool missing_int = false;
	__u32 backend_id = 0;
	__u64 now = 0;

	master = lb6_lookup_master(&key, &missing_int);
	if (!master)
		return missing_int ? sock_lb_refused(SOCK_LB_STAT_REFUSED_INCONSISTENT) : SOCK_LB_PASS;
	if (master->count == 0)
		return sock_lb_refused(SOCK_LB_STAT_REFUSED_NO_BACKEND);

	/* Read the flag once: the agent may rewrite the master between two reads, and the
	 * second branch must not use an affinity key the first one never built. */
	affinity_on = master->flags & LB_SVC_F_AFFINITY;
	if (affinity_on) {
		now = monotonic_seconds();
		sock_affinity_key(&affinity, ctx, master->rev_nat_index);
		backend_id = sock_affinity_backend(master, &affinity, now);
		if (backend_id) {
			backend = bpf_map_lookup_elem(&weft_lb6_backends, &backend_id);
			if (backend)
				sock_lb_count(SOCK_LB_STAT_AFFINITY_HIT);
		}
	}
	if (!backend) {
		key.backend_slot = lb_pick_slot(master);
		slot = bpf_map_lookup_elem(&weft_lb6_services, &key);
		if (!slot)
			return sock_lb_refused(SOCK_LB_STAT_REFUSED_INCONSISTENT);
		backend_id = slot->backend_id;
		backend = bpf_map_lookup_elem(&weft_lb6_backends, &backend_id);
		if (!backend)
			return sock_lb_refused(SOCK_LB_STAT_REFUSED_INCONSISTENT);
	}
	if (affinity_on)
		sock_affinity_remember(&affinity, backend_id, now);

	sock6_remember_frontend(ctx, backend, daddr, dport, master->rev_nat_index);
	sock_lb_count(SOCK_LB_STAT_TRANSLATED);
	*picked = backend;
	return SOCK_LB_TRANSLATED;
}

static __always_inline int sock6_xlate_fwd(struct bpf_sock_addr *ctx)
{
	enum sock_lb_verdict verdict;
	__be16 dport = ctx_dport(ctx);
	union v6addr daddr;

	ctx_get_ip6(ctx, &daddr);
	if (ip6_is_v4_mapped(&daddr)) {
		const struct lb4_backend *backend4 = NULL;

		verdict = sock4_forward(ctx, daddr.p[3], dport, &backend4);
		if (verdict == SOCK_LB_TRANSLATED && backend4) {
			ctx->user_ip6[3] = backend4->address;
			ctx_set_dport(ctx, backend4->port);
		}
	} else {
		const struct lb6_backend *backend6 = NULL;

		verdict = sock6_forward(ctx, &daddr, dport, &backend6);
		if (verdict == SOCK_LB_TRANSLATED && backend6) {
			ctx_set_ip6(ctx, &backend6->address);
			ctx_set_dport(ctx, backend6->port);
		}
	}
	return sock_lb_return(verdict);
}

static __always_inline int sock6_xlate_rev(struct bpf_sock_addr *ctx)
{
	__be16 port = ctx_dport(ctx);
	union v6addr addr;

	ctx_get_ip6(ctx, &addr);
	if (ip6_is_v4_mapped(&addr)) {
		const struct lb4_sock_revnat *frontend4 = sock4_frontend_of(ctx, addr.p[3], port);

		if (frontend4) {
			ctx->user_ip6[3] = frontend4->address;
			ctx_set_dport(ctx, frontend4->port);
			sock_lb_count(SOCK_LB_STAT_REVNAT_REWRITTEN);
		}
	} else {
		struct lb6_sock_revnat_key key = { .cookie = bpf_get_socket_cookie(ctx), .address = addr, .port = port };
		const struct lb6_sock_revnat *frontend6 = bpf_map_lookup_elem(&weft_lb6_sock_revnat, &key);

		if (frontend6) {
			ctx_set_ip6(ctx, &frontend6->address);
			ctx_set_dport(ctx, frontend6->port);
			sock_lb_count(SOCK_LB_STAT_REVNAT_REWRITTEN);
		}
	}
	return SYS_PROCEED;
}

/*
 * cgroup/connect6. As connect4, for IPv6 frontends (weft_lb6_*) and, for v4-mapped
 * destinations, IPv4 frontends (weft_lb4_*); the rewritten destination keeps its family.
 */
SEC("cgroup/connect6")
int weft_sock6_connect(struct bpf_sock_addr *ctx)
{
	return sock6_xlate_fwd(ctx);
}

/* cgroup/sendmsg6 (unconnected UDP). As sendmsg4, for IPv6 and v4-mapped destinations. */
SEC("cgroup/sendmsg6")
int weft_sock6_sendmsg(struct bpf_sock_addr *ctx)
{
	return sock6_xlate_fwd(ctx);
}

/* cgroup/recvmsg6 (UDP). As recvmsg4, for IPv6 and v4-mapped sources. Never fails the call. */
SEC("cgroup/recvmsg6")
int weft_sock6_recvmsg(struct bpf_sock_addr *ctx)
{
	return sock6_xlate_rev(ctx);
}

/* cgroup/getpeername6. As getpeername4, for IPv6 and v4-mapped peers. Never fails the call. */
SEC("cgroup/getpeername6")
int weft_sock6_getpeername(struct bpf_sock_addr *ctx)
{
	return sock6_xlate_rev(ctx);
}
