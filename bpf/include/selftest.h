/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Layouts of the datapath self-test object (bpf/selftest.bpf.c): the binding's kernel tests
 * and the ring-buffer and map-sync benchmarks use it. Mirrored by src/datapath/selftest.ts. */
#ifndef WEFT_SELFTEST_H
#define WEFT_SELFTEST_H

#include <linux/types.h>

/* One 64-byte event, the size of a flow record. */
struct selftest_event {
	__u64 seq;       /* 0, 1, 2, ... per producer: gaps mean loss */
	__u64 ktime_ns;
	__u32 cpu;
	__u32 len;
	__u8 payload[40];
};

/* The map-sync benchmark's entries: 16-byte key and value, like an LB frontend and backend. */
struct selftest_key {
	__u32 a;
	__u32 b;
	__u32 c;
	__u32 d;
};

struct selftest_value {
	__u64 x;
	__u64 y;
};

struct selftest_config {
	__u32 events_per_run; /* events each program run emits (≤ 256) */
	__u32 pad;
};

struct selftest_stats {
	__u64 produced;
	__u64 dropped;  /* bpf_ringbuf_reserve failed: the ring was full */
	__u64 packets;  /* seen by weft_selftest_count */
	__u64 connects; /* seen by weft_selftest_connect4 */
};

#endif
