// SPDX-License-Identifier: GPL-2.0
/* Datapath self-test programs: not part of the product's datapath. They give the binding's
 * kernel tests and the benchmarks something real to load, attach and measure. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "selftest.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} weft_selftest_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct selftest_config);
} weft_selftest_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct selftest_stats);
} weft_selftest_stats SEC(".maps");

/* Pinned by name so tests can reopen it from another process. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, struct selftest_key);
	__type(value, struct selftest_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weft_selftest_hash SEC(".maps");

/* tc hook (run through BPF_PROG_TEST_RUN by the ring-buffer benchmark). Reads the config;
 * writes events_per_run 64-byte events to the ring buffer with consecutive sequence numbers,
 * counting every event it could not reserve. Promises: produced == delivered + dropped. */
SEC("tc")
int weft_selftest_emit(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct selftest_config *cfg = bpf_map_lookup_elem(&weft_selftest_config, &zero);
	struct selftest_stats *st = bpf_map_lookup_elem(&weft_selftest_stats, &zero);
	__u32 n, i;

	if (!cfg || !st)
		return TC_ACT_OK;
	n = cfg->events_per_run;
	for (i = 0; i < 256 && i < n; i++) {
		__u64 seq = __sync_fetch_and_add(&st->produced, 1);
		struct selftest_event *ev = bpf_ringbuf_reserve(&weft_selftest_events, sizeof(*ev), 0);

		if (!ev) {
			__sync_fetch_and_add(&st->dropped, 1);
			continue;
		}
		ev->seq = seq;
		ev->ktime_ns = bpf_ktime_get_ns();
		ev->cpu = bpf_get_smp_processor_id();
		ev->len = skb->len;
		__builtin_memset(ev->payload, 0, sizeof(ev->payload));
		bpf_ringbuf_submit(ev, 0);
	}
	return TC_ACT_OK;
}

/* tc hook for attach tests: counts packets, passes them all. */
SEC("tc")
int weft_selftest_count(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct selftest_stats *st = bpf_map_lookup_elem(&weft_selftest_stats, &zero);

	if (st)
		__sync_fetch_and_add(&st->packets, 1);
	return TC_ACT_OK;
}

/* cgroup/connect4 hook for link tests: counts connect() calls, lets them all through. */
SEC("cgroup/connect4")
int weft_selftest_connect4(struct bpf_sock_addr *ctx)
{
	__u32 zero = 0;
	struct selftest_stats *st = bpf_map_lookup_elem(&weft_selftest_stats, &zero);

	if (st)
		__sync_fetch_and_add(&st->connects, 1);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
