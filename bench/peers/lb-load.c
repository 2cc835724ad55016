// SPDX-License-Identifier: Apache-2.0
/* The load generator of bench/lb.ts: one new TCP connection per HTTP request, closed loop.
 *
 *   lb-load -d SECONDS -c CONCURRENCY [-w WARMUP] [-t THREADS] ADDR:PORT [ADDR:PORT ...]
 *
 * Each of CONCURRENCY slots does, over and over: socket(), connect() to one of the targets
 * (picked at random per connection), write "GET / HTTP/1.1 ... Connection: close", read to EOF
 * (the server closes first, so TIME_WAIT stays on the server and the client never runs out of
 * ports), close(). A connection's latency runs from before socket() to EOF, so it includes what
 * a load balancer costs at connect (the socket LB) and on the first packet (iptables DNAT).
 * Samples in the warm-up are dropped. Prints one JSON line: connections, rate, latency
 * percentiles, errors by kind, which backend answered how often (the response body names it),
 * and the generator's own CPU time, so a reader can check the generator is not the bottleneck.
 *
 * One epoll loop per thread, no allocation per connection; a slot that fails (refused, reset,
 * timed out after 2 s) counts the error and starts again. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_TARGETS 16
#define MAX_BACKEND_NAMES 16
#define RESP_MAX 512
#define TIMEOUT_NS 2000000000ull

static const char REQUEST[] = "GET / HTTP/1.1\r\nHost: weft-bench\r\nUser-Agent: weft-lb-load\r\n"
			      "Connection: close\r\n\r\n";

struct target { struct sockaddr_in addr; };

enum conn_state { CONNECTING, READING };

struct conn {
	int fd;
	enum conn_state state;
	uint64_t start_ns;
	size_t got;
	char resp[RESP_MAX];
};

struct names {
	int n;
	char name[MAX_BACKEND_NAMES][32];
	uint64_t count[MAX_BACKEND_NAMES];
	uint64_t other;
};

struct worker {
	pthread_t thread;
	int id, slots;
	uint64_t seed;
	/* results */
	uint64_t *samples; /* latency in ns, after warm-up */
	size_t nsamples, cap;
	uint64_t completed, all_completed;
	uint64_t err_connect, err_reset, err_timeout, err_bad_response, err_other;
	struct names names;
};

static struct target targets[MAX_TARGETS];
static int ntargets;
static uint64_t t_begin, t_warm, t_end;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void tally_backend(struct names *nm, const char *resp, size_t len)
{
	const char *body = memmem(resp, len, "\r\n\r\n", 4);
	char name[32];
	size_t n = 0;

	if (body) {
		body += 4;
		while (body + n < resp + len && n < sizeof(name) - 1 && body[n] != '\n' && body[n] != '\r')
			n++;
		memcpy(name, body, n);
	}
	name[n] = 0;
	for (int i = 0; i < nm->n; i++) {
		if (strcmp(nm->name[i], name) == 0) {
			nm->count[i]++;
			return;
		}
	}
	if (nm->n < MAX_BACKEND_NAMES) {
		strcpy(nm->name[nm->n], name);
		nm->count[nm->n++] = 1;
	} else {
		nm->other++;
	}
}

/* Opens a new connection in slot c; returns 0, or -1 after counting an immediate failure. */
static int start(struct worker *w, int ep, struct conn *c)
{
	const struct target *t = &targets[ntargets == 1 ? 0 : xorshift(&w->seed) % ntargets];
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };

	c->start_ns = now_ns();
	c->got = 0;
	c->state = CONNECTING;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		perror("socket");
		exit(1);
	}
	if (connect(c->fd, (const struct sockaddr *)&t->addr, sizeof(t->addr)) < 0 && errno != EINPROGRESS) {
		/* The socket LB refuses a frontend without backends right here (ECONNREFUSED). */
		if (c->start_ns >= t_warm)
			w->err_connect++;
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
		perror("epoll_ctl");
		exit(1);
	}
	return 0;
}

static void finish(struct worker *w, struct conn *c, int ok, uint64_t *err)
{
	uint64_t end = now_ns();

	close(c->fd);
	c->fd = -1;
	if (ok)
		w->all_completed++;
	if (c->start_ns < t_warm)
		return;
	if (!ok) {
		(*err)++;
		return;
	}
	w->completed++;
	if (w->nsamples == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 1 << 16;
		w->samples = realloc(w->samples, w->cap * sizeof(*w->samples));
		if (!w->samples) {
			perror("realloc");
			exit(1);
		}
	}
	w->samples[w->nsamples++] = end - c->start_ns;
	tally_backend(&w->names, c->resp, c->got);
}

static void *run(void *arg)
{
	struct worker *w = arg;
	struct conn *conns = calloc(w->slots, sizeof(*conns));
	struct epoll_event evs[256];
	int ep = epoll_create1(EPOLL_CLOEXEC);
	uint64_t last_sweep = now_ns();

	if (!conns || ep < 0) {
		perror("setup");
		exit(1);
	}
	for (int i = 0; i < w->slots; i++)
		while (start(w, ep, &conns[i]) < 0 && now_ns() < t_end)
			;
	for (;;) {
		uint64_t now = now_ns();
		if (now >= t_end)
			break;
		int n = epoll_wait(ep, evs, 256, 50);
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c->state == CONNECTING) {
				int soerr = 0;
				socklen_t len = sizeof(soerr);
				getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
				if (soerr || write(c->fd, REQUEST, sizeof(REQUEST) - 1) != sizeof(REQUEST) - 1) {
					finish(w, c, 0, &w->err_connect);
					goto again;
				}
				struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
				epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
				c->state = READING;
				continue;
			}
			for (;;) {
				char scratch[512];
				char *dst = c->got < RESP_MAX ? c->resp + c->got : scratch;
				size_t room = c->got < RESP_MAX ? RESP_MAX - c->got : sizeof(scratch);
				ssize_t r = read(c->fd, dst, room);
				if (r > 0) {
					if (c->got < RESP_MAX)
						c->got += r;
					continue;
				}
				if (r == 0) {
					int ok = c->got >= 12 && memcmp(c->resp, "HTTP/1.1 200", 12) == 0;
					finish(w, c, ok, &w->err_bad_response);
					goto again;
				}
				if (errno == EAGAIN)
					break;
				finish(w, c, 0, errno == ECONNRESET ? &w->err_reset : &w->err_other);
				goto again;
			}
			continue;
again:
			while (start(w, ep, c) < 0 && now_ns() < t_end)
				;
		}
		now = now_ns();
		if (now - last_sweep > 100000000ull) {
			last_sweep = now;
			for (int i = 0; i < w->slots; i++) {
				struct conn *c = &conns[i];
				if (c->fd >= 0 && now - c->start_ns > TIMEOUT_NS) {
					finish(w, c, 0, &w->err_timeout);
					while (start(w, ep, c) < 0 && now_ns() < t_end)
						;
				}
			}
		}
	}
	for (int i = 0; i < w->slots; i++)
		if (conns[i].fd >= 0)
			close(conns[i].fd);
	close(ep);
	free(conns);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(const uint64_t *s, size_t n, double p)
{
	if (n == 0)
		return -1;
	size_t i = (size_t)(p / 100.0 * n);
	if (i >= n)
		i = n - 1;
	return s[i] / 1000.0;
}

static void usage(void)
{
	fprintf(stderr, "usage: lb-load -d SECONDS -c CONCURRENCY [-w WARMUP] [-t THREADS] ADDR:PORT...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	double duration = 5, warmup = 0.5;
	int concurrency = 16, threads = 1, opt;

	while ((opt = getopt(argc, argv, "d:c:w:t:")) != -1) {
		switch (opt) {
		case 'd': duration = atof(optarg); break;
		case 'c': concurrency = atoi(optarg); break;
		case 'w': warmup = atof(optarg); break;
		case 't': threads = atoi(optarg); break;
		default: usage();
		}
	}
	if (duration <= 0 || concurrency < 1 || threads < 1 || threads > concurrency || optind >= argc)
		usage();
	for (int i = optind; i < argc && ntargets < MAX_TARGETS; i++) {
		char host[64];
		char *colon = strrchr(argv[i], ':');
		if (!colon || colon - argv[i] >= (long)sizeof(host))
			usage();
		memcpy(host, argv[i], colon - argv[i]);
		host[colon - argv[i]] = 0;
		struct sockaddr_in *a = &targets[ntargets].addr;
		a->sin_family = AF_INET;
		a->sin_port = htons(atoi(colon + 1));
		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			usage();
		ntargets++;
	}

	struct worker *ws = calloc(threads, sizeof(*ws));
	t_begin = now_ns();
	t_warm = t_begin + (uint64_t)(warmup * 1e9);
	t_end = t_warm + (uint64_t)(duration * 1e9);
	for (int i = 0; i < threads; i++) {
		ws[i].id = i;
		ws[i].slots = concurrency / threads + (i < concurrency % threads);
		ws[i].seed = 0x9e3779b97f4a7c15ull ^ (now_ns() + (uint64_t)i * 7919);
		pthread_create(&ws[i].thread, NULL, run, &ws[i]);
	}
	for (int i = 0; i < threads; i++)
		pthread_join(ws[i].thread, NULL);
	double seconds = (now_ns() - t_warm) / 1e9;

	/* Merge. */
	size_t total = 0;
	for (int i = 0; i < threads; i++)
		total += ws[i].nsamples;
	uint64_t *all = malloc((total ? total : 1) * sizeof(*all));
	struct names nm = { 0 };
	uint64_t completed = 0, all_completed = 0, e_conn = 0, e_reset = 0, e_to = 0, e_bad = 0, e_other = 0;
	double sum = 0;
	size_t k = 0;
	for (int i = 0; i < threads; i++) {
		memcpy(all + k, ws[i].samples, ws[i].nsamples * sizeof(*all));
		k += ws[i].nsamples;
		completed += ws[i].completed;
		all_completed += ws[i].all_completed;
		e_conn += ws[i].err_connect;
		e_reset += ws[i].err_reset;
		e_to += ws[i].err_timeout;
		e_bad += ws[i].err_bad_response;
		e_other += ws[i].err_other;
		for (int j = 0; j < ws[i].names.n; j++) {
			int found = 0;
			for (int m = 0; m < nm.n; m++) {
				if (strcmp(nm.name[m], ws[i].names.name[j]) == 0) {
					nm.count[m] += ws[i].names.count[j];
					found = 1;
				}
			}
			if (!found && nm.n < MAX_BACKEND_NAMES) {
				strcpy(nm.name[nm.n], ws[i].names.name[j]);
				nm.count[nm.n++] = ws[i].names.count[j];
			}
		}
	}
	for (size_t i = 0; i < total; i++)
		sum += all[i];
	qsort(all, total, sizeof(*all), cmp_u64);

	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double user = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
	double sys = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;

	/* allConnections: warm-up included, to divide CPU time measured around the whole run. */
	printf("{\"connections\":%llu,\"allConnections\":%llu,\"seconds\":%.4f,\"rate\":%.1f,"
	       "\"concurrency\":%d,\"threads\":%d,",
	       (unsigned long long)completed, (unsigned long long)all_completed, seconds, completed / seconds,
	       concurrency, threads);
	printf("\"latencyUs\":{\"mean\":%.2f,\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,\"p999\":%.2f,\"max\":%.2f},",
	       total ? sum / total / 1000.0 : -1, pct(all, total, 50), pct(all, total, 90), pct(all, total, 99),
	       pct(all, total, 99.9), total ? all[total - 1] / 1000.0 : -1);
	printf("\"errors\":{\"connect\":%llu,\"reset\":%llu,\"timeout\":%llu,\"badResponse\":%llu,\"other\":%llu},",
	       (unsigned long long)e_conn, (unsigned long long)e_reset, (unsigned long long)e_to,
	       (unsigned long long)e_bad, (unsigned long long)e_other);
	printf("\"backends\":{");
	for (int m = 0; m < nm.n; m++)
		printf("%s\"%s\":%llu", m ? "," : "", nm.name[m], (unsigned long long)nm.count[m]);
	/* CPU of the whole run, warm-up included: the generator's own cost is user time per connection. */
	printf("},\"cpu\":{\"userSeconds\":%.4f,\"sysSeconds\":%.4f,\"wallSeconds\":%.4f}}\n", user, sys,
	       (now_ns() - t_begin) / 1e9);
	return 0;
}
