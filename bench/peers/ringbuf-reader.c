// SPDX-License-Identifier: Apache-2.0
/* The native peer for bench/ringbuf.ts: libbpf's own ring_buffer__poll reading the same ring
 * the same way a C agent would. Prints one JSON line when the producer is done.
 *   ringbuf-reader <pinned ring map> <pinned stats map> <expected events> */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

struct state { uint64_t next, delivered, gaps; };

static int on_event(void *ctx, void *data, size_t len)
{
	struct state *s = ctx;
	uint64_t seq = *(uint64_t *)data;

	if (seq != s->next)
		s->gaps++;
	s->next = seq + 1;
	s->delivered++;
	return 0;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct state s = {0};
	struct rusage ru;
	int ring_fd, stats_fd;
	uint64_t expected;
	double t0, t1;
	struct ring_buffer *rb;

	if (argc != 4) {
		fprintf(stderr, "usage: %s <ring pin> <stats pin> <expected events>\n", argv[0]);
		return 2;
	}
	ring_fd = bpf_obj_get(argv[1]);
	stats_fd = bpf_obj_get(argv[2]);
	expected = strtoull(argv[3], NULL, 10);
	if (ring_fd < 0 || stats_fd < 0) {
		fprintf(stderr, "cannot open pinned maps\n");
		return 1;
	}
	rb = ring_buffer__new(ring_fd, on_event, &s, NULL);
	if (!rb)
		return 1;
	printf("ready\n");
	fflush(stdout);
	t0 = 0;
	for (;;) {
		uint32_t zero = 0;
		uint64_t st[4];

		ring_buffer__poll(rb, 100);
		if (s.delivered && !t0)
			t0 = now();
		if (bpf_map_lookup_elem(stats_fd, &zero, st) == 0 && st[0] >= expected &&
		    s.delivered + st[1] >= st[0]) {
			t1 = now();
			getrusage(RUSAGE_SELF, &ru);
			printf("{\"delivered\":%llu,\"gaps\":%llu,\"produced\":%llu,\"dropped\":%llu,"
			       "\"seconds\":%.6f,\"cpuSeconds\":%.6f}\n",
			       (unsigned long long)s.delivered, (unsigned long long)s.gaps,
			       (unsigned long long)st[0], (unsigned long long)st[1], t1 - t0,
			       ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
				       ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
			break;
		}
	}
	ring_buffer__free(rb);
	return 0;
}
