/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The NodePort maps, pinned by name under the agent's per-node pin root next to the LB maps
 * (lb_maps.h), so that a restarted agent re-attaching its programs finds every tracked flow
 * and SNAT port where it left them.
 *
 * Default sizes: 131,072 conntrack entries (a local flow takes two, a remote one one plus its
 * SNAT entry), 65,536 SNAT entries, 8,192 datagrams in reassembly, 16,384 source ranges. The
 * agent sets its own
 * before load; a pinned map's size must then match.
 */
#ifndef WEFT_NODEPORT_MAPS_H
#define WEFT_NODEPORT_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "weft/lb_maps.h"
#include "weft/nodeport.h"

#define WEFT_NP_UPLINKS_MAX 64
#define WEFT_NP_CT_MAX 131072
#define WEFT_NP_SNAT_MAX 65536
#define WEFT_NP_FRAG_MAX 8192
#define WEFT_NP_LOCAL_BACKENDS_MAX 65536
#define WEFT_NP_SOURCE_RANGES_MAX 16384

/* Keyed by uplink ifindex: the agent attaches the programs to every uplink it is given. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct np_config);
	__uint(max_entries, WEFT_NP_UPLINKS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weft_np_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, NP_STAT_SLOTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weft_np_stats SEC(".maps");

WEFT_PROGRAM_LRU(weft_np4_ct, struct np4_tuple, struct np4_ct_entry, WEFT_NP_CT_MAX);
WEFT_PROGRAM_LRU(weft_np4_snat, struct np4_tuple, struct np4_snat_entry, WEFT_NP_SNAT_MAX);
WEFT_PROGRAM_LRU(weft_np4_frag, struct np4_frag_key, struct np4_frag_ports, WEFT_NP_FRAG_MAX);
WEFT_AGENT_HASH(weft_np4_local_backends, __be32, __u8, WEFT_NP_LOCAL_BACKENDS_MAX);

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct np4_source_range_key);
	__type(value, __u8);
	__uint(max_entries, WEFT_NP_SOURCE_RANGES_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weft_np4_source_ranges SEC(".maps");

#endif /* WEFT_NODEPORT_MAPS_H */
