/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The load-balancing maps. Every program that includes this file gets the same definitions,
 * and LIBBPF_PIN_BY_NAME makes libbpf reuse the instance pinned under the agent's pin root
 * (/sys/fs/bpf/weft/<node>/<name>), so the socket LB and the tc NodePort LB share one set and
 * an agent restart finds its maps full.
 *
 * max_entries are defaults sized for 65,536 frontends and 65,536 backends; the agent sets its
 * own before load (a pinned map's size must then match, or load fails with EINVAL). Maps the
 * agent writes are BPF_F_NO_PREALLOC (memory follows use); maps the programs write are LRU
 * (preallocated, evict rather than fail when full).
 */
#ifndef WEFT_LB_MAPS_H
#define WEFT_LB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "weft/lb.h"

/* Masters plus slots: 65,536 frontends with three backends each on average. */
#define WEFT_LB_SERVICES_MAX 262144
#define WEFT_LB_BACKENDS_MAX 65536
#define WEFT_LB_REVNAT_MAX 65536
#define WEFT_LB_SOCK_REVNAT_MAX 65536
#define WEFT_LB_AFFINITY_MAX 65536

#define WEFT_AGENT_HASH(name, key_t, value_t, max)             \
	struct {                                               \
		__uint(type, BPF_MAP_TYPE_HASH);               \
		__type(key, key_t);                            \
		__type(value, value_t);                        \
		__uint(max_entries, max);                      \
		__uint(map_flags, BPF_F_NO_PREALLOC);          \
		__uint(pinning, LIBBPF_PIN_BY_NAME);           \
	} name SEC(".maps")

#define WEFT_PROGRAM_LRU(name, key_t, value_t, max)            \
	struct {                                               \
		__uint(type, BPF_MAP_TYPE_LRU_HASH);           \
		__type(key, key_t);                            \
		__type(value, value_t);                        \
		__uint(max_entries, max);                      \
		__uint(pinning, LIBBPF_PIN_BY_NAME);           \
	} name SEC(".maps")

WEFT_AGENT_HASH(weft_lb4_services, struct lb4_key, struct lb_service, WEFT_LB_SERVICES_MAX);
WEFT_AGENT_HASH(weft_lb6_services, struct lb6_key, struct lb_service, WEFT_LB_SERVICES_MAX);
WEFT_AGENT_HASH(weft_lb4_backends, __u32, struct lb4_backend, WEFT_LB_BACKENDS_MAX);
WEFT_AGENT_HASH(weft_lb6_backends, __u32, struct lb6_backend, WEFT_LB_BACKENDS_MAX);
WEFT_AGENT_HASH(weft_lb4_reverse_nat, __u16, struct lb4_reverse_nat, WEFT_LB_REVNAT_MAX);
WEFT_AGENT_HASH(weft_lb6_reverse_nat, __u16, struct lb6_reverse_nat, WEFT_LB_REVNAT_MAX);
WEFT_AGENT_HASH(weft_lb_aff_match, struct lb_affinity_match_key, __u8, WEFT_LB_AFFINITY_MAX);

WEFT_PROGRAM_LRU(weft_lb4_sock_revnat, struct lb4_sock_revnat_key, struct lb4_sock_revnat, WEFT_LB_SOCK_REVNAT_MAX);
WEFT_PROGRAM_LRU(weft_lb6_sock_revnat, struct lb6_sock_revnat_key, struct lb6_sock_revnat, WEFT_LB_SOCK_REVNAT_MAX);
WEFT_PROGRAM_LRU(weft_lb_affinity, struct lb_affinity_key, struct lb_affinity, WEFT_LB_AFFINITY_MAX);

#endif /* WEFT_LB_MAPS_H */
