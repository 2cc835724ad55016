// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Per-packet load-balancing on the node's uplink for clients outside the node: NodePort,
 * ExternalIP and LoadBalancer frontends (Cilium's bpf_host.c + lib/nodeport.h, IPv4). Such
 * traffic never passes a socket hook on this node, so it is translated packet by packet here,
 * with connection tracking so that every packet of a flow reaches the backend its first
 * packet was given:
 *
 *   local backend  (weft_np4_local_backends): DNAT only, the client's address is kept, the stack
 *                  forwards to the pod; its replies are given the frontend as source on egress.
 *   remote backend: DNAT and SNAT to node_ipv4:snat_port, then out through the FIB
 *                  (bpf_fib_lookup + redirect: a packet with a local source address handed to
 *                  the stack would be dropped as martian); replies to that port are translated
 *                  back on ingress and redirected to the client the same way.
 *   no backend:    TCP gets a RST and UDP an ICMP port unreachable, built in place and sent
 *                  back out the device it came in on, so the client fails at once.
 *
 * Frontends, backends and affinity come from the LB maps (lb.h, shared with sock_lb.bpf.c);
 * this program's own layouts are in include/weft/nodeport.h. IPv6 and SCTP pass untouched.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <stddef.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "weft/nodeport_maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define IP_MF 0x2000
#define IP_DF 0x4000
#define IP_OFFSET 0x1fff
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10
#define ICMP_DEST_UNREACH 3
#define ICMP_PORT_UNREACH 3
#define NP_REPLY_TTL 64

#define IP_OFF(field) (ETH_HLEN + offsetof(struct iphdr, field))

/* ---- the packet ------------------------------------------------------------------------- */

/* What the programs need of one IPv4 TCP/UDP packet, read once. */
struct np_packet {
	struct np4_tuple tuple; /* as this hook sees it; dir 0 */
	__u32 l4_off;
	__u16 tot_len;
	__u16 ihl_len;	 /* IPv4 header with options, bytes */
	__u8 ttl;
	__u8 tcp_flags;	 /* 0 for UDP and for a later fragment */
	bool has_l4;	 /* false: a later fragment, its ports from weft_np4_frag */
	bool more_frags; /* a first fragment: its L4 checksum covers fragments not here */
};

enum np_parsed {
	NP_PARSED,
	NP_NOT_OURS, /* not IPv4 TCP/UDP, malformed, or a later fragment whose first we missed */
};

static __always_inline void np_count(__u32 stat)
{
	__u64 *n = bpf_map_lookup_elem(&weft_np_stats, &stat);

	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline __u32 np_now(void)
{
	return (__u32)(bpf_ktime_get_ns() / WEFT_NSEC_PER_SEC);
}

/* This uplink's configuration, or NULL when the programs should pass this packet. */
static __always_inline const struct np_config *np_config_for(const struct __sk_buff *ctx)
{
	__u32 ifindex = ctx->ifindex;
	const struct np_config *cfg = bpf_map_lookup_elem(&weft_np_config, &ifindex);

	if (!cfg || cfg->node_ipv4 == 0 || cfg->uplink_ifindex != ctx->ifindex)
		return NULL;
	return cfg;
}

static __always_inline __u32 np_csum_off(__u8 proto)
{
	return proto == IPPROTO_TCP ? 16 : 6; /* offsetof(check) in tcphdr / udphdr */
}

/*
 * Parses the IPv4 and TCP/UDP headers. A datagram's first fragment records its ports in
 * weft_np4_frag; a later fragment takes them from there, or is not ours.
 */
static __always_inline enum np_parsed np_parse(struct __sk_buff *ctx, struct np_packet *pkt)
{
	struct np4_frag_key frag = {};
	struct np4_frag_ports ports;
	struct iphdr ip;
	__u16 frag_off;

	if (ctx->protocol != bpf_htons(ETH_P_IP))
		return NP_NOT_OURS;
	if (bpf_skb_load_bytes(ctx, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return NP_NOT_OURS;
	if (ip.version != 4 || ip.ihl < 5)
		return NP_NOT_OURS;
	if (ip.protocol != IPPROTO_TCP && ip.protocol != IPPROTO_UDP)
		return NP_NOT_OURS;
	pkt->ihl_len = ip.ihl * 4;
	pkt->tot_len = bpf_ntohs(ip.tot_len);
	if (pkt->tot_len < pkt->ihl_len)
		return NP_NOT_OURS;
	pkt->l4_off = ETH_HLEN + pkt->ihl_len;
	pkt->ttl = ip.ttl;
	pkt->tcp_flags = 0;
	pkt->tuple.saddr = ip.saddr;
	pkt->tuple.daddr = ip.daddr;
	pkt->tuple.proto = ip.protocol;
	pkt->tuple.dir = 0;
	pkt->tuple.pad[0] = 0;
	pkt->tuple.pad[1] = 0;

	frag_off = bpf_ntohs(ip.frag_off);
	frag.saddr = ip.saddr;
	frag.daddr = ip.daddr;
	frag.id = ip.id;
	frag.proto = ip.protocol;

	if (frag_off & IP_OFFSET) {
		const struct np4_frag_ports *seen = bpf_map_lookup_elem(&weft_np4_frag, &frag);

		if (!seen) {
			np_count(NP_STAT_FRAG_UNTRACKED);
			return NP_NOT_OURS;
		}
		pkt->tuple.sport = seen->sport;
		pkt->tuple.dport = seen->dport;
		pkt->has_l4 = false;
		pkt->more_frags = frag_off & IP_MF;
		return NP_PARSED;
	}

	if (pkt->tot_len < pkt->ihl_len + (ip.protocol == IPPROTO_TCP ? 20 : 8))
		return NP_NOT_OURS;
	if (bpf_skb_load_bytes(ctx, pkt->l4_off, &ports, sizeof(ports)) < 0)
		return NP_NOT_OURS;
	pkt->tuple.sport = ports.sport;
	pkt->tuple.dport = ports.dport;
	pkt->has_l4 = true;
	pkt->more_frags = frag_off & IP_MF;
	if (ip.protocol == IPPROTO_TCP && bpf_skb_load_bytes(ctx, pkt->l4_off + 13, &pkt->tcp_flags, 1) < 0)
		return NP_NOT_OURS;
	if ((frag_off & IP_MF) && bpf_map_update_elem(&weft_np4_frag, &frag, &ports, BPF_ANY))
		np_count(NP_STAT_CT_UPDATE_FAILED);
	return NP_PARSED;
}

/* ---- rewriting --------------------------------------------------------------------------- */

/*
 * Every rewrite goes through the checksum helpers, which keep the L4 checksum right whatever
 * state the skb is in: complete (a NIC's rx), none (test runs), or partial (a veth from a
 * local namespace, where the field holds only the pseudo-header sum). UDP's "no checksum" (0)
 * stays 0 (BPF_F_MARK_MANGLED_0). A later fragment has no L4 header: only its IP header changes,
 * and the first fragment's L4 checksum, updated for the same addresses, covers the datagram.
 */
static __always_inline int np_set_addr(struct __sk_buff *ctx, const struct np_packet *pkt, __u32 off,
				       __be32 from, __be32 to)
{
	__u64 l4_flags = BPF_F_PSEUDO_HDR | sizeof(to);

	if (from == to)
		return 0;
	if (pkt->tuple.proto == IPPROTO_UDP)
		l4_flags |= BPF_F_MARK_MANGLED_0;
	if (pkt->has_l4 &&
	    bpf_l4_csum_replace(ctx, pkt->l4_off + np_csum_off(pkt->tuple.proto), from, to, l4_flags) < 0)
		return -1;
	if (bpf_l3_csum_replace(ctx, IP_OFF(check), from, to, sizeof(to)) < 0)
		return -1;
	return bpf_skb_store_bytes(ctx, off, &to, sizeof(to), 0) < 0 ? -1 : 0;
}

/* `port_off`: 0 for the source port, 2 for the destination port. */
static __always_inline int np_set_port(struct __sk_buff *ctx, const struct np_packet *pkt, __u32 port_off,
				       __be16 from, __be16 to)
{
	__u64 l4_flags = sizeof(to);

	if (from == to || !pkt->has_l4)
		return 0;
	if (pkt->tuple.proto == IPPROTO_UDP)
		l4_flags |= BPF_F_MARK_MANGLED_0;
	if (bpf_l4_csum_replace(ctx, pkt->l4_off + np_csum_off(pkt->tuple.proto), from, to, l4_flags) < 0)
		return -1;
	return bpf_skb_store_bytes(ctx, pkt->l4_off + port_off, &to, sizeof(to), 0) < 0 ? -1 : 0;
}

/* The node forwards what it redirects itself: one hop, as ip_forward() would count it. */
static __always_inline int np_decrement_ttl(struct __sk_buff *ctx, const struct np_packet *pkt)
{
	__u8 ttl = pkt->ttl - 1;

	if (pkt->ttl <= 1)
		return -1;
	/* TTL is the high byte of the 16-bit word it shares with the protocol. */
	if (bpf_l3_csum_replace(ctx, IP_OFF(check), bpf_htons((__u16)pkt->ttl << 8), bpf_htons((__u16)ttl << 8),
				2) < 0)
		return -1;
	return bpf_skb_store_bytes(ctx, IP_OFF(ttl), &ttl, 1, 0) < 0 ? -1 : 0;
}

/*
 * Sends the (already translated) packet toward `daddr` as the node's routing table says:
 * neighbour known, rewrite the MACs and redirect; unknown, let bpf_redirect_neigh resolve it.
 * The lookup is an input lookup on the uplink (forwarding must be on, as on any node); its
 * MTU check is the kernel's own for this skb (tot_len 0), so GSO packets pass.
 */
static __always_inline int np_redirect_fib(struct __sk_buff *ctx, const struct np_packet *pkt, __be32 saddr,
					   __be32 daddr, __be16 sport, __be16 dport)
{
	struct bpf_fib_lookup fib = {};
	long ret;

	fib.family = AF_INET;
	fib.l4_protocol = pkt->tuple.proto;
	fib.sport = sport;
	fib.dport = dport;
	fib.ifindex = ctx->ifindex;
	fib.ipv4_src = saddr;
	fib.ipv4_dst = daddr;
	ret = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (ret == BPF_FIB_LKUP_RET_SUCCESS) {
		if (bpf_skb_store_bytes(ctx, 0, fib.dmac, ETH_ALEN, 0) < 0 ||
		    bpf_skb_store_bytes(ctx, ETH_ALEN, fib.smac, ETH_ALEN, 0) < 0) {
			np_count(NP_STAT_REWRITE_FAILED);
			return TC_ACT_SHOT;
		}
		return bpf_redirect(fib.ifindex, 0);
	}
	if (ret == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct bpf_redir_neigh nh;

		/* A designated initializer leaves the rest of the v6 union unwritten, which the
		 * strict verifier (no CAP_PERFMON) rejects as an uninitialised stack read. */
		__builtin_memset(&nh, 0, sizeof(nh));
		nh.nh_family = AF_INET;
		nh.ipv4_nh = fib.ipv4_dst;
		return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
	np_count(NP_STAT_FIB_FAIL);
	return TC_ACT_SHOT;
}

static __always_inline int np_rewrite_failed(void)
{
	np_count(NP_STAT_REWRITE_FAILED);
	return TC_ACT_SHOT;
}

/* ---- connection tracking ------------------------------------------------------------------ */

static __always_inline __u32 np_ct_lifetime(__u8 proto, __u8 flags)
{
	if (proto != IPPROTO_TCP)
		return NP_CT_LIFETIME_NONTCP;
	if (flags & NP_CT_F_CLOSING)
		return NP_CT_LIFETIME_TCP_CLOSING;
	if (flags & NP_CT_F_SEEN_REPLY)
		return NP_CT_LIFETIME_TCP;
	return NP_CT_LIFETIME_TCP_SYN;
}

/*
 * Folds one packet of the flow into its ORIGINAL entry: TCP state flags and expiry. Returns
 * true when the expiry was written (flags changed, or a second or more to gain), so the caller
 * copies it to the flow's reverse entry; most packets write nothing.
 */
static __always_inline bool np_ct_observe(struct np4_ct_entry *orig, const struct np_packet *pkt, bool from_backend,
					  __u32 now)
{
	__u8 flags = orig->flags;
	__u32 expires;

	if (from_backend)
		flags |= NP_CT_F_SEEN_REPLY;
	if (pkt->tuple.proto == IPPROTO_TCP) {
		if (pkt->tcp_flags & TCP_FLAG_RST)
			flags |= NP_CT_F_CLOSING;
		if (pkt->tcp_flags & TCP_FLAG_FIN)
			flags |= from_backend ? NP_CT_F_BACKEND_FIN : NP_CT_F_CLIENT_FIN;
		if ((flags & (NP_CT_F_CLIENT_FIN | NP_CT_F_BACKEND_FIN)) == (NP_CT_F_CLIENT_FIN | NP_CT_F_BACKEND_FIN))
			flags |= NP_CT_F_CLOSING;
	}
	expires = now + np_ct_lifetime(pkt->tuple.proto, flags);
	if (flags == orig->flags && expires < orig->expires + NP_CT_REFRESH_INTERVAL)
		return false;
	orig->flags = flags;
	orig->expires = expires;
	return true;
}

/* An ORIGINAL entry still decides where this packet goes. */
static __always_inline bool np_ct_live(const struct np4_ct_entry *orig, const struct np_packet *pkt, __u32 now)
{
	if (now > orig->expires)
		return false;
	/* A SYN on a closed flow is a new connection reusing the client's port. */
	if ((orig->flags & NP_CT_F_CLOSING) && (pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
		return false;
	return true;
}

/* The reverse entry of a flow's ORIGINAL entry (`key`: the ORIGINAL tuple). */
static __always_inline void np_ct_copy_expiry(const struct np4_tuple *orig_key, const struct np4_ct_entry *orig,
					      const struct np_config *cfg)
{
	if (orig->flags & NP_CT_F_SNAT) {
		struct np4_tuple rkey = {
			.saddr = orig->nat_addr,
			.daddr = cfg->node_ipv4,
			.sport = orig->nat_port,
			.dport = orig->snat_port,
			.proto = orig_key->proto,
		};
		struct np4_snat_entry *snat = bpf_map_lookup_elem(&weft_np4_snat, &rkey);

		if (snat)
			snat->expires = orig->expires;
	} else {
		struct np4_tuple rkey = {
			.saddr = orig->nat_addr,
			.daddr = orig_key->saddr,
			.sport = orig->nat_port,
			.dport = orig_key->sport,
			.proto = orig_key->proto,
			.dir = NP_CT_REPLY,
		};
		struct np4_ct_entry *reply = bpf_map_lookup_elem(&weft_np4_ct, &rkey);

		if (reply)
			reply->expires = orig->expires;
	}
}

/* ---- refusing: answer the client in place ------------------------------------------------- */

static __always_inline __u16 np_csum_fold(__s64 sum)
{
	__u32 s = (__u32)sum;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* A 20-byte IPv4 header from `saddr` to `daddr`, checksum included. */
static __always_inline void np_ip_header(struct iphdr *ip, __u8 proto, __u16 tot_len, __u16 frag_off,
					 __be32 saddr, __be32 daddr)
{
	__builtin_memset(ip, 0, sizeof(*ip));
	ip->version = 4;
	ip->ihl = 5;
	ip->tot_len = bpf_htons(tot_len);
	ip->frag_off = bpf_htons(frag_off);
	ip->ttl = NP_REPLY_TTL;
	ip->protocol = proto;
	ip->saddr = saddr;
	ip->daddr = daddr;
	ip->check = np_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)ip, sizeof(*ip), 0));
}

/* Swaps the Ethernet addresses: the reply goes back to whoever handed us the packet. */
static __always_inline int np_swap_macs(struct __sk_buff *ctx)
{
	__u8 macs[2 * ETH_ALEN];
	__u8 swapped[2 * ETH_ALEN];

	if (bpf_skb_load_bytes(ctx, 0, macs, sizeof(macs)) < 0)
		return -1;
	__builtin_memcpy(swapped, macs + ETH_ALEN, ETH_ALEN);
	__builtin_memcpy(swapped + ETH_ALEN, macs, ETH_ALEN);
	return bpf_skb_store_bytes(ctx, 0, swapped, sizeof(swapped), 0) < 0 ? -1 : 0;
}

/* Never answer a source that cannot have sent a real request (RFC 1122 3.2.2). */
static __always_inline bool np_answerable(__be32 saddr)
{
	__u32 a = bpf_ntohl(saddr);

	return a != 0 && a != 0xffffffff && (a & 0xf0000000) != 0xe0000000;
}

#define NP_CSUM_CHUNK 64
#define NP_RST_MAX_TRIM_CHUNKS 24 /* options and payload up to 1,536 bytes */

/*
 * Turns a TCP segment into the RST that answers it (RFC 793 "Reset Generation"): ports and
 * addresses swapped, no options or payload, sent back out the device it came in on. The TCP
 * checksum is updated incrementally through the helpers, so it is right whether the skb holds
 * a full checksum or a partial (offloaded) one.
 */
static __always_inline int np_reply_tcp_rst(struct __sk_buff *ctx, const struct np_packet *pkt)
{
	__u32 tcp_len = pkt->tot_len - pkt->ihl_len;
	__u32 check_off = pkt->l4_off + 16;
	__u8 chunk[NP_CSUM_CHUNK];
	struct tcphdr_bytes {
		__be16 source;
		__be16 dest;
		__be32 seq;
		__be32 ack_seq;
		__u8 doff_res;
		__u8 flags;
		__be16 window;
		__be16 check;
		__be16 urg_ptr;
	} old, rst;
	struct iphdr ip;
	__be16 check;
	__s64 diff;
	__u32 seg_len, off, i;

	if (pkt->tcp_flags & TCP_FLAG_RST)
		return -1; /* never answer a RST */
	if (pkt->more_frags)
		return -1; /* the checksum covers bytes we cannot see: no answer beats a bad one */
	if (bpf_skb_load_bytes(ctx, pkt->l4_off, &old, sizeof(old)) < 0)
		return -1;
	if ((old.doff_res >> 4) < 5 || (__u32)(old.doff_res >> 4) * 4 > tcp_len)
		return -1;

	seg_len = tcp_len - (old.doff_res >> 4) * 4;
	if (old.flags & TCP_FLAG_SYN)
		seg_len++;
	if (old.flags & TCP_FLAG_FIN)
		seg_len++;
	__builtin_memset(&rst, 0, sizeof(rst));
	rst.source = old.dest;
	rst.dest = old.source;
	rst.doff_res = 5 << 4;
	if (old.flags & TCP_FLAG_ACK) {
		rst.seq = old.ack_seq;
		rst.flags = TCP_FLAG_RST;
	} else {
		rst.ack_seq = bpf_htonl(bpf_ntohl(old.seq) + seg_len);
		rst.flags = TCP_FLAG_RST | TCP_FLAG_ACK;
	}

	/* Checksum: the header's change (check fields left out), minus every byte past the 20 we
	 * keep; the check field itself is then adjusted in place by the helper. */
	check = old.check;
	old.check = 0;
	diff = bpf_csum_diff((__be32 *)&old, sizeof(old), (__be32 *)&rst, sizeof(rst), 0);
	rst.check = check;
	off = pkt->l4_off + sizeof(rst);
	for (i = 0; i < NP_RST_MAX_TRIM_CHUNKS; i++) {
		__u64 len;

		if (off >= pkt->l4_off + tcp_len)
			break;
		len = pkt->l4_off + tcp_len - off;
		/* Keep the bound in the register the helper gets (clang may otherwise check a copy);
		 * len is never 0 here (off < end), the test only tells the verifier so. */
		asm volatile("" : "+r"(len));
		if (len == 0 || len > NP_CSUM_CHUNK)
			len = NP_CSUM_CHUNK;
		__builtin_memset(chunk, 0, sizeof(chunk));
		if (bpf_skb_load_bytes(ctx, off, chunk, len) < 0)
			return -1;
		diff = bpf_csum_diff((__be32 *)chunk, sizeof(chunk), NULL, 0, diff);
		off += NP_CSUM_CHUNK;
	}
	if (off < pkt->l4_off + tcp_len)
		return -1; /* more than we sum: drop rather than send a bad checksum */

	if (bpf_skb_store_bytes(ctx, pkt->l4_off, &rst, sizeof(rst), 0) < 0)
		return -1;
	if (bpf_l4_csum_replace(ctx, check_off, 0, diff, 0) < 0)
		return -1;
	if (bpf_l4_csum_replace(ctx, check_off, bpf_htons(tcp_len), bpf_htons(sizeof(rst)),
				BPF_F_PSEUDO_HDR | 2) < 0)
		return -1;
	if (bpf_skb_change_tail(ctx, pkt->l4_off + sizeof(rst), 0) < 0)
		return -1;
	/* IP options are not echoed: they go, and the header is rebuilt (addresses swapped). */
	if (pkt->ihl_len > sizeof(struct iphdr) &&
	    bpf_skb_adjust_room(ctx, -(__s32)(pkt->ihl_len - sizeof(struct iphdr)), BPF_ADJ_ROOM_NET, 0) < 0)
		return -1;
	np_ip_header(&ip, IPPROTO_TCP, sizeof(ip) + sizeof(rst), IP_DF, pkt->tuple.daddr, pkt->tuple.saddr);
	if (bpf_skb_store_bytes(ctx, ETH_HLEN, &ip, sizeof(ip), 0) < 0)
		return -1;
	return np_swap_macs(ctx);
}

#define NP_ICMP_QUOTE_MAX (60 + 8) /* the offending IP header with options, and 8 bytes of it */

/*
 * Turns a UDP datagram into the ICMP port unreachable that answers it (RFC 792/1812): a new
 * IP and ICMP header in front of the datagram's IP header and first 8 bytes, sent back out
 * the device it came in on. A connected UDP socket sees ECONNREFUSED.
 */
static __always_inline int np_reply_icmp_unreach(struct __sk_buff *ctx, const struct np_packet *pkt)
{
	struct {
		__u8 type;
		__u8 code;
		__be16 check;
		__be32 unused;
		__u8 quote[NP_ICMP_QUOTE_MAX];
	} icmp;
	__u32 ihl_len = pkt->ihl_len;
	__u32 quote_len, grow = sizeof(struct iphdr) + 8;
	struct iphdr ip;

	if (ihl_len < 20 || ihl_len > 60)
		return -1;
	quote_len = ihl_len + 8;
	__builtin_memset(&icmp, 0, sizeof(icmp));
	if (bpf_skb_load_bytes(ctx, ETH_HLEN, icmp.quote, quote_len) < 0)
		return -1;
	if (bpf_skb_adjust_room(ctx, grow, BPF_ADJ_ROOM_MAC, 0) < 0)
		return -1;
	if (bpf_skb_change_tail(ctx, ETH_HLEN + grow + quote_len, 0) < 0)
		return -1;

	icmp.type = ICMP_DEST_UNREACH;
	icmp.code = ICMP_PORT_UNREACH;
	/* The quote is a multiple of 4 bytes (ihl_len is), as bpf_csum_diff wants. */
	icmp.check = np_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&icmp, 8 + quote_len, 0));
	if (bpf_skb_store_bytes(ctx, ETH_HLEN + sizeof(ip), &icmp, 8, 0) < 0)
		return -1;
	np_ip_header(&ip, IPPROTO_ICMP, grow + quote_len, 0, pkt->tuple.daddr, pkt->tuple.saddr);
	if (bpf_skb_store_bytes(ctx, ETH_HLEN, &ip, sizeof(ip), 0) < 0)
		return -1;
	return np_swap_macs(ctx);
}

/* A frontend that cannot serve this packet answers it at once, so the client fails fast. */
static __always_inline int np_refuse(struct __sk_buff *ctx, const struct np_packet *pkt)
{
	bool tcp = pkt->tuple.proto == IPPROTO_TCP;

	if (!pkt->has_l4 || !np_answerable(pkt->tuple.saddr) ||
	    (tcp ? np_reply_tcp_rst(ctx, pkt) : np_reply_icmp_unreach(ctx, pkt)) < 0) {
		np_count(NP_STAT_REFUSED_DROPPED);
		return TC_ACT_SHOT;
	}
	np_count(tcp ? NP_STAT_REFUSED_TCP_RST : NP_STAT_REFUSED_ICMP);
	return bpf_redirect(ctx->ifindex, 0);
}

/* ---- choosing a backend --------------------------------------------------------------------- */

static __always_inline bool np_is_local(__be32 address)
{
	return bpf_map_lookup_elem(&weft_np4_local_backends, &address) != NULL;
}

static __always_inline void np_affinity_key(struct lb_affinity_key *key, __be32 client, __u16 rev_nat_index)
{
	/* Zero the whole key: the union's unused bytes are part of the hash. */
	__builtin_memset(key, 0, sizeof(*key));
	key->client.addr.p[2] = bpf_htonl(0xffff); /* ::ffff:a.b.c.d */
	key->client.addr.p[3] = client;
	key->rev_nat_index = rev_nat_index;
	key->client_kind = LB_AFFINITY_CLIENT_ADDR;
}

/*
 * The ClientIP-affinity backend of this client, while its entry has not timed out and the
 * agent still pairs that backend with the frontend (weft_lb_aff_match). With
 * externalTrafficPolicy Local it must also still be local.
 */
static __always_inline const struct lb4_backend *np_affinity_backend(const struct lb_service *master,
								      const struct lb_affinity_key *key, __u64 now,
								      __u32 *backend_id)
{
	struct lb_affinity_match_key match = {};
	const struct lb4_backend *backend;
	const struct lb_affinity *seen;

	seen = bpf_map_lookup_elem(&weft_lb_affinity, key);
	if (!seen || now - seen->last_used > lb_svc_affinity_timeout(master))
		return NULL;
	match.backend_id = seen->backend_id;
	match.rev_nat_index = master->rev_nat_index;
	if (!bpf_map_lookup_elem(&weft_lb_aff_match, &match))
		return NULL;
	*backend_id = seen->backend_id;
	backend = bpf_map_lookup_elem(&weft_lb4_backends, backend_id);
	if (backend && (master->flags & LB_SVC_F_EXT_LOCAL) && !np_is_local(backend->address))
		return NULL;
	return backend;
}

/* loadBalancerSourceRanges: is `client` in one of the frontend's ranges? */
static __always_inline bool np_source_allowed(const struct lb_service *master, __be32 client)
{
	struct np4_source_range_key key = {
		.prefixlen = 32 + 32,
		.rev_nat_index = master->rev_nat_index,
		.address = client,
	};

	return bpf_map_lookup_elem(&weft_np4_source_ranges, &key) != NULL;
}

/* ---- the forward path (uplink ingress) ------------------------------------------------------- */

/* Rewrites a client's packet toward its backend; a remote backend's also gets the node's source. */
static __always_inline int np_translate_forward(struct __sk_buff *ctx, const struct np_config *cfg,
						const struct np_packet *pkt, const struct np4_ct_entry *orig)
{
	if (np_set_addr(ctx, pkt, IP_OFF(daddr), pkt->tuple.daddr, orig->nat_addr) ||
	    np_set_port(ctx, pkt, 2, pkt->tuple.dport, orig->nat_port))
		return np_rewrite_failed();
	if (!(orig->flags & NP_CT_F_SNAT))
		return TC_ACT_OK;
	if (np_set_addr(ctx, pkt, IP_OFF(saddr), pkt->tuple.saddr, cfg->node_ipv4) ||
	    np_set_port(ctx, pkt, 0, pkt->tuple.sport, orig->snat_port))
		return np_rewrite_failed();
	if (np_decrement_ttl(ctx, pkt)) {
		np_count(NP_STAT_TTL_EXCEEDED);
		return TC_ACT_SHOT;
	}
	return np_redirect_fib(ctx, pkt, cfg->node_ipv4, orig->nat_addr, orig->snat_port, orig->nat_port);
}

/*
 * Takes a free SNAT port for a flow to `backend` by inserting its reply key; an entry whose
 * flow expired is taken over. Returns the port (network order), or 0 when none was free.
 */
static __always_inline __be16 np_snat_take_port(const struct np_config *cfg, const struct lb4_backend *backend,
						 __u8 proto, const struct np4_snat_entry *value, __u32 now)
{
	struct np4_tuple key = {
		.saddr = backend->address,
		.daddr = cfg->node_ipv4,
		.sport = backend->port,
		.proto = proto,
	};
	__u32 min = cfg->snat_port_min, max = cfg->snat_port_max;
	__u32 start = bpf_get_prandom_u32();
	__u32 range, i;

	if (min == 0 || max < min)
		return 0;
	range = max - min + 1;
	for (i = 0; i < NP_SNAT_PORT_ATTEMPTS; i++) {
		const struct np4_snat_entry *old;

		key.dport = bpf_htons((__u16)(min + (start + i) % range));
		if (bpf_map_update_elem(&weft_np4_snat, &key, value, BPF_NOEXIST) == 0)
			return key.dport;
		old = bpf_map_lookup_elem(&weft_np4_snat, &key);
		if (old && now > old->expires && bpf_map_update_elem(&weft_np4_snat, &key, value, BPF_EXIST) == 0)
			return key.dport;
	}
	return 0;
}

/*
 * A new flow to a frontend: choose its backend, record the flow, translate. `master` is the
 * frontend's EXT master, which has backends.
 */
static __always_inline int np_new_flow(struct __sk_buff *ctx, const struct np_config *cfg,
				       const struct np_packet *pkt, const struct lb_service *master, __u32 now)
{
	struct lb4_key key = {
		.address = pkt->tuple.daddr,
		.dport = pkt->tuple.dport,
		.proto = pkt->tuple.proto,
		.scope = LB_LOOKUP_SCOPE_EXT,
	};
	struct np4_tuple orig_key = pkt->tuple;
	const struct lb4_backend *backend = NULL;
	struct lb_affinity_key affinity;
	struct np4_ct_entry orig = {};
	const struct lb_service *slot;
	__u32 backend_id = 0;
	__u64 now64 = now;
	/* Read the flag once: the agent may rewrite the master between two reads, and the
	 * update below must not use an affinity key the lookup above never built. */
	bool affinity_on = master->flags & LB_SVC_F_AFFINITY;

	if (affinity_on) {
		np_affinity_key(&affinity, pkt->tuple.saddr, master->rev_nat_index);
		backend = np_affinity_backend(master, &affinity, now64, &backend_id);
		if (backend)
			np_count(NP_STAT_AFFINITY_HIT);
	}
	if (!backend) {
		key.backend_slot = (__u16)(bpf_get_prandom_u32() % master->count) + 1;
		slot = bpf_map_lookup_elem(&weft_lb4_services, &key);
		if (!slot)
			goto inconsistent;
		backend_id = slot->backend_id;
		backend = bpf_map_lookup_elem(&weft_lb4_backends, &backend_id);
		if (!backend)
			goto inconsistent;
	}
	if (affinity_on) {
		struct lb_affinity seen = { .last_used = now64, .backend_id = backend_id };

		bpf_map_update_elem(&weft_lb_affinity, &affinity, &seen, BPF_ANY);
	}

	orig.nat_addr = backend->address;
	orig.nat_port = backend->port;
	orig.rev_nat_index = master->rev_nat_index;
	orig.backend_id = backend_id;
	orig.expires = now + np_ct_lifetime(pkt->tuple.proto, 0);

	if (np_is_local(backend->address)) {
		struct np4_tuple reply_key = {
			.saddr = backend->address,
			.daddr = pkt->tuple.saddr,
			.sport = backend->port,
			.dport = pkt->tuple.sport,
			.proto = pkt->tuple.proto,
			.dir = NP_CT_REPLY,
		};
		struct np4_ct_entry reply = {
			.nat_addr = pkt->tuple.daddr,
			.nat_port = pkt->tuple.dport,
			.rev_nat_index = master->rev_nat_index,
			.backend_id = backend_id,
			.expires = orig.expires,
		};

		/* The reply's entry first: the backend can answer only after the forward entry acts. */
		if (bpf_map_update_elem(&weft_np4_ct, &reply_key, &reply, BPF_ANY))
			np_count(NP_STAT_CT_UPDATE_FAILED);
		np_count(NP_STAT_FWD_LOCAL);
	} else {
		struct np4_snat_entry snat = {
			.client_addr = pkt->tuple.saddr,
			.frontend_addr = pkt->tuple.daddr,
			.client_port = pkt->tuple.sport,
			.frontend_port = pkt->tuple.dport,
			.rev_nat_index = master->rev_nat_index,
			.expires = orig.expires,
		};

		orig.snat_port = np_snat_take_port(cfg, backend, pkt->tuple.proto, &snat, now);
		if (!orig.snat_port) {
			np_count(NP_STAT_SNAT_PORT_EXHAUSTED);
			return TC_ACT_SHOT;
		}
		orig.flags = NP_CT_F_SNAT;
		np_count(NP_STAT_FWD_SNAT);
	}
	orig_key.dir = NP_CT_ORIGINAL;
	if (bpf_map_update_elem(&weft_np4_ct, &orig_key, &orig, BPF_ANY))
		np_count(NP_STAT_CT_UPDATE_FAILED);
	return np_translate_forward(ctx, cfg, pkt, &orig);

inconsistent:
	np_count(NP_STAT_INCONSISTENT);
	return np_refuse(ctx, pkt);
}

/* A client's packet: its tracked flow, or a new flow if it is for an external frontend. */
static __always_inline int np_forward(struct __sk_buff *ctx, const struct np_config *cfg,
				      const struct np_packet *pkt, __u32 now)
{
	struct np4_tuple orig_key = pkt->tuple;
	const struct lb_service *master;
	struct np4_ct_entry *orig;
	struct lb4_key key = {
		.address = pkt->tuple.daddr,
		.dport = pkt->tuple.dport,
		.proto = pkt->tuple.proto,
		.scope = LB_LOOKUP_SCOPE_EXT,
	};

	orig_key.dir = NP_CT_ORIGINAL;
	orig = bpf_map_lookup_elem(&weft_np4_ct, &orig_key);
	if (orig && np_ct_live(orig, pkt, now)) {
		__u32 backend_id = orig->backend_id;
		const struct lb4_backend *backend = bpf_map_lookup_elem(&weft_lb4_backends, &backend_id);

		if (backend && backend->address == orig->nat_addr && backend->port == orig->nat_port) {
			np_count(NP_STAT_CT_HIT);
			if (np_ct_observe(orig, pkt, false, now))
				np_ct_copy_expiry(&orig_key, orig, cfg);
			return np_translate_forward(ctx, cfg, pkt, orig);
		}
		np_count(NP_STAT_CT_BACKEND_GONE);
	}

	/* A later fragment of a datagram whose first fragment started no flow is not ours. */
	if (!pkt->has_l4)
		return TC_ACT_OK;
	master = bpf_map_lookup_elem(&weft_lb4_services, &key);
	if (!master || !(master->flags & (LB_SVC_F_NODEPORT | LB_SVC_F_EXTERNAL_IP | LB_SVC_F_LOADBALANCER)))
		return TC_ACT_OK;
	np_count(NP_STAT_CT_MISS);
	if ((master->flags & LB_SVC_F_SOURCE_RANGE) && !np_source_allowed(master, pkt->tuple.saddr)) {
		np_count(NP_STAT_SOURCE_RANGE_DENIED);
		return TC_ACT_SHOT;
	}
	if (master->count == 0)
		return np_refuse(ctx, pkt);
	return np_new_flow(ctx, cfg, pkt, master, now);
}

/* ---- the reply paths ------------------------------------------------------------------------ */

/* The ORIGINAL entry of a flow, from its client and frontend. */
static __always_inline struct np4_ct_entry *np_ct_original(__be32 client, __be16 client_port, __be32 frontend,
							   __be16 frontend_port, __u8 proto, struct np4_tuple *key)
{
	__builtin_memset(key, 0, sizeof(*key));
	key->saddr = client;
	key->daddr = frontend;
	key->sport = client_port;
	key->dport = frontend_port;
	key->proto = proto;
	key->dir = NP_CT_ORIGINAL;
	return bpf_map_lookup_elem(&weft_np4_ct, key);
}

/*
 * A remote backend's reply to node_ipv4:snat_port: back to the client, from the frontend.
 * Returns -1 when the packet is no SNAT flow's reply.
 */
static __always_inline int np_reverse_snat(struct __sk_buff *ctx, const struct np_config *cfg,
					   const struct np_packet *pkt, __u32 now)
{
	struct np4_snat_entry *snat = bpf_map_lookup_elem(&weft_np4_snat, &pkt->tuple);
	struct np4_ct_entry *orig;
	struct np4_tuple orig_key;

	if (!snat)
		return -1;
	orig = np_ct_original(snat->client_addr, snat->client_port, snat->frontend_addr, snat->frontend_port,
			      pkt->tuple.proto, &orig_key);
	if (orig && np_ct_observe(orig, pkt, true, now))
		snat->expires = orig->expires;

	if (np_set_addr(ctx, pkt, IP_OFF(daddr), pkt->tuple.daddr, snat->client_addr) ||
	    np_set_port(ctx, pkt, 2, pkt->tuple.dport, snat->client_port) ||
	    np_set_addr(ctx, pkt, IP_OFF(saddr), pkt->tuple.saddr, snat->frontend_addr) ||
	    np_set_port(ctx, pkt, 0, pkt->tuple.sport, snat->frontend_port))
		return np_rewrite_failed();
	np_count(NP_STAT_REV_SNAT);
	if (np_decrement_ttl(ctx, pkt)) {
		np_count(NP_STAT_TTL_EXCEEDED);
		return TC_ACT_SHOT;
	}
	return np_redirect_fib(ctx, pkt, snat->frontend_addr, snat->client_addr, snat->frontend_port,
			       snat->client_port);
}

/*
 * tc ingress on the uplink ("weft_np_ingress").
 * Reads: the packet; weft_np_config; the LB maps (EXT-scope masters and slots, backends,
 * affinity and its match); weft_np4_local_backends, weft_np4_source_ranges, weft_np4_ct,
 * weft_np4_snat, weft_np4_frag.
 * Writes: the packet (DNAT, SNAT, TTL, or a RST / ICMP answer in place); weft_np4_ct,
 * weft_np4_snat, weft_np4_frag, weft_lb_affinity, weft_np_stats.
 * Promises: a TCP/UDP packet to a NodePort, ExternalIP or LoadBalancer frontend reaches one
 * backend, the same for every packet of its flow while that backend exists; a frontend with no
 * backend is answered at once; a new flow from outside a frontend's loadBalancerSourceRanges is
 * dropped; a remote backend's reply goes back to its client from the frontend; every other
 * packet passes untouched (TC_ACT_OK).
 */
SEC("tc")
int weft_np_ingress(struct __sk_buff *ctx)
{
	const struct np_config *cfg = np_config_for(ctx);
	struct np_packet pkt;
	__u16 dport;
	__u32 now;
	int ret;

	if (!cfg || np_parse(ctx, &pkt) != NP_PARSED)
		return TC_ACT_OK;
	now = np_now();
	dport = bpf_ntohs(pkt.tuple.dport);
	if (pkt.tuple.daddr == cfg->node_ipv4 && dport >= cfg->snat_port_min && dport <= cfg->snat_port_max) {
		ret = np_reverse_snat(ctx, cfg, &pkt, now);
		if (ret >= 0)
			return ret;
	}
	return np_forward(ctx, cfg, &pkt, now);
}

/*
 * tc egress on the uplink ("weft_np_egress").
 * Reads: the packet; weft_np_config; weft_np4_ct (REPLY entries), weft_np4_frag.
 * Writes: the packet's source (address, port, checksums); weft_np4_ct (flow state and expiry),
 * weft_np4_frag, weft_np_stats.
 * Promises: a local backend's reply to a client of a NodePort/ExternalIP/LoadBalancer frontend
 * leaves from the frontend's address and port; every other packet passes untouched. Drops only
 * a reply it failed to rewrite half-way (NP_STAT_REWRITE_FAILED).
 */
SEC("tc")
int weft_np_egress(struct __sk_buff *ctx)
{
	const struct np_config *cfg = np_config_for(ctx);
	struct np4_ct_entry *reply, *orig;
	struct np4_tuple orig_key;
	struct np_packet pkt;
	__u32 now;

	if (!cfg || np_parse(ctx, &pkt) != NP_PARSED)
		return TC_ACT_OK;
	pkt.tuple.dir = NP_CT_REPLY;
	reply = bpf_map_lookup_elem(&weft_np4_ct, &pkt.tuple);
	pkt.tuple.dir = 0;
	if (!reply)
		return TC_ACT_OK;
	now = np_now();
	orig = np_ct_original(pkt.tuple.daddr, pkt.tuple.dport, reply->nat_addr, reply->nat_port, pkt.tuple.proto,
			      &orig_key);
	if (orig && np_ct_observe(orig, &pkt, true, now))
		reply->expires = orig->expires;
	if (np_set_addr(ctx, &pkt, IP_OFF(saddr), pkt.tuple.saddr, reply->nat_addr) ||
	    np_set_port(ctx, &pkt, 0, pkt.tuple.sport, reply->nat_port))
		return np_rewrite_failed();
	np_count(NP_STAT_REV_LOCAL);
	return TC_ACT_OK;
}
