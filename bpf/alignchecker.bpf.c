// SPDX-License-Identifier: GPL-2.0
/* Never loaded. Like Cilium's bpf_alignchecker.c, it exists so that every layout in
 * bpf/include/ appears in a built object's BTF, including event records that only travel
 * through ring buffers (and so are not a map's key or value). A kernel test compares the
 * TypeScript codecs with these layouts. Add one line per struct. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "selftest.h"

#define WEFT_LAYOUT(type) struct type weft_layout_##type __attribute__((unused))

WEFT_LAYOUT(selftest_event);
WEFT_LAYOUT(selftest_key);
WEFT_LAYOUT(selftest_value);
WEFT_LAYOUT(selftest_config);
WEFT_LAYOUT(selftest_stats);

char LICENSE[] SEC("license") = "GPL";
