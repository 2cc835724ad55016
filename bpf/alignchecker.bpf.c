// SPDX-License-Identifier: GPL-2.0
/* Never loaded. Like Cilium's bpf_alignchecker.c, it exists so that every layout in
 * bpf/include/ appears in a built object's BTF, including event records that only travel
 * through ring buffers (and so are not a map's key or value). A kernel test compares the
 * TypeScript codecs with these layouts. Add one line per struct. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "selftest.h"
#include "weft/lb.h"
#include "weft/nodeport.h"

#define WEFT_LAYOUT(type) struct type weft_layout_##type __attribute__((unused))
#define WEFT_ENUM(type) enum type weft_enum_##type __attribute__((unused))

WEFT_LAYOUT(selftest_event);
WEFT_LAYOUT(selftest_key);
WEFT_LAYOUT(selftest_value);
WEFT_LAYOUT(selftest_config);
WEFT_LAYOUT(selftest_stats);
WEFT_LAYOUT(lb4_key);
WEFT_LAYOUT(lb6_key);
WEFT_LAYOUT(lb_service);
WEFT_LAYOUT(lb4_backend);
WEFT_LAYOUT(lb6_backend);
WEFT_LAYOUT(lb4_reverse_nat);
WEFT_LAYOUT(lb6_reverse_nat);
WEFT_LAYOUT(lb4_sock_revnat_key);
WEFT_LAYOUT(lb4_sock_revnat);
WEFT_LAYOUT(lb6_sock_revnat_key);
WEFT_LAYOUT(lb6_sock_revnat);
WEFT_LAYOUT(lb_affinity_key);
WEFT_LAYOUT(lb_affinity);
WEFT_LAYOUT(lb_affinity_match_key);
WEFT_ENUM(lb_lookup_scope);
WEFT_ENUM(lb_svc_flags);
WEFT_ENUM(lb_svc_flags2);
WEFT_ENUM(lb_backend_state);
WEFT_ENUM(lb_affinity_client_kind);
WEFT_ENUM(sock_lb_stat);
WEFT_LAYOUT(np_config);
WEFT_LAYOUT(np4_tuple);
WEFT_LAYOUT(np4_ct_entry);
WEFT_LAYOUT(np4_snat_entry);
WEFT_LAYOUT(np4_frag_key);
WEFT_LAYOUT(np4_frag_ports);
WEFT_LAYOUT(np4_source_range_key);
WEFT_ENUM(np_ct_dir);
WEFT_ENUM(np_ct_flags);
WEFT_ENUM(np_stat);

char LICENSE[] SEC("license") = "GPL";
