// SPDX-License-Identifier: Apache-2.0
/* The backend "pod" of bench/lb.ts: a minimal HTTP/1.1 server, one epoll loop, one process.
 *
 *   lb-backend ADDR PORT NAME
 *
 * Answers every request with "200 OK", the body "NAME\n" (so the load generator can count which
 * backend a Service sent it to) and "Connection: close", then closes: one request per
 * connection, server-side close first, as nginx does with keepalive off. It is cheaper per
 * connection than nginx, so a load balancer's own cost is a larger share of what is measured.
 * Prints "ready" on stdout once listening; exits on SIGTERM. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FDS 65536
#define REQ_MAX 2048

static unsigned short seen[MAX_FDS]; /* bytes of the request read so far, per fd */
static char tail[MAX_FDS][4];	     /* last bytes read, to find "\r\n\r\n" across reads */

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: lb-backend ADDR PORT NAME\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	char response[256];
	int body_len = (int)strlen(argv[3]) + 1;
	int resp_len = snprintf(response, sizeof(response),
				"HTTP/1.1 200 OK\r\nServer: weft-lb-backend\r\nContent-Type: text/plain\r\n"
				"Content-Length: %d\r\nConnection: close\r\n\r\n%s\n",
				body_len, argv[3]);

	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
	if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
		fprintf(stderr, "lb-backend: bad address %s\n", argv[1]);
		return 2;
	}
	int one = 1;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, 4096) < 0) {
		perror("lb-backend: bind/listen");
		return 1;
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd };
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	printf("ready\n");
	fflush(stdout);

	struct epoll_event evs[256];
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);
		if (n < 0 && errno == EINTR)
			continue;
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == lfd) {
				for (;;) {
					int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
					if (c < 0)
						break;
					if (c >= MAX_FDS) {
						close(c);
						continue;
					}
					seen[c] = 0;
					memset(tail[c], 0, 4);
					struct epoll_event cev = { .events = EPOLLIN, .data.fd = c };
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
				}
				continue;
			}
			char buf[REQ_MAX];
			int done = 0, closed = 0;
			for (;;) {
				ssize_t r = read(fd, buf, sizeof(buf));
				if (r > 0) {
					/* The end of the headers, possibly split across reads. */
					char joined[4 + REQ_MAX];
					memcpy(joined, tail[fd], 4);
					memcpy(joined + 4, buf, r);
					if (memmem(joined, 4 + r, "\r\n\r\n", 4))
						done = 1;
					memcpy(tail[fd], joined + r, 4);
					seen[fd] = seen[fd] + r > REQ_MAX ? REQ_MAX : seen[fd] + r;
					continue;
				}
				if (r == 0 || errno != EAGAIN)
					closed = 1;
				break;
			}
			if (done) {
				if (write(fd, response, resp_len) < 0) {
					/* the client went away: nothing to do but close */
				}
				close(fd);
			} else if (closed || seen[fd] >= REQ_MAX) {
				close(fd);
			}
		}
	}
}
