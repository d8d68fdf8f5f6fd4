/*
 * c_echo: the "close to the kernel" floor for scripts/compare-servers.sh.
 *
 * Wire format: a 4-byte big-endian body length, then the body (len:be:4). Every
 * complete frame is written back unchanged.
 *
 * One thread per CPU in the process's affinity mask (so `taskset -c 0` gives one
 * thread), each with its own SO_REUSEPORT listener on the same port and its own
 * level-triggered epoll loop. Sockets are non-blocking. Each connection has one
 * buffer: bytes are read into it, the complete frames at its front are written
 * back in one send(), a partial frame stays for the next read. While a reply is
 * not fully written the connection waits for EPOLLOUT and reads nothing
 * (backpressure: a client that does not read stops being read).
 *
 *   c_echo [-listen 127.0.0.1:0] [-threads N] [-max BYTES] [-ping-ms N]
 *
 * With -ping-ms N it is also the floor of a server's heartbeat (scripts/idle-memory.sh):
 * every N ms each connection is sent a ping, an empty frame (a zero length header), and
 * an empty frame received is taken as the pong and not echoed. The pings are spread over
 * the interval, a share of the connections on each tick of the largest power of two of ms
 * not above N/64 (at most 1024 ms, at least 1 ms), as keepwire coalesces its deadlines.
 * No pong deadline is kept: only the cost of sending pings and reading pongs is measured.
 *
 * Prints "listening on ADDR" as its first stdout line. IPv4 only.
 * Build: cc -O2 -Wall -o c_echo c_echo.c -lpthread
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEADER 4
#define FIRST_CAP 1024
#define EVENTS 256

static uint32_t max_body = 16u << 20; /* largest body accepted (-max) */
static struct sockaddr_in bind_addr;
static long ping_ms; /* -ping-ms: 0 for no pings */

struct conn {
	int fd;
	unsigned char *buf;
	size_t cap;  /* allocated bytes */
	size_t len;  /* bytes held */
	size_t out;  /* bytes at the front being echoed (complete frames) */
	size_t sent; /* of those, bytes already written */
	size_t idx;  /* position in the thread's connection list (pings) */
	long born;   /* accepted at (ms, monotonic): the first ping waits one interval */
};

/* The connections of one thread, pinged in turn (-ping-ms). */
static __thread struct conn **all;
static __thread size_t n_all, cap_all, next_ping;

static int track(struct conn *c) {
	if (n_all == cap_all) {
		size_t cap = cap_all ? cap_all * 2 : 1024;
		struct conn **v = realloc(all, cap * sizeof *v);
		if (!v) return -1;
		all = v;
		cap_all = cap;
	}
	c->idx = n_all;
	all[n_all++] = c;
	return 0;
}

static void untrack(struct conn *c) {
	struct conn *last = all[--n_all];
	all[c->idx] = last;
	last->idx = c->idx;
}

static void die(const char *what) {
	perror(what);
	exit(1);
}

static int listener(void) {
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0) die("socket");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) die("SO_REUSEADDR");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) die("SO_REUSEPORT");
	if (bind(fd, (struct sockaddr *)&bind_addr, sizeof bind_addr) < 0) die("bind");
	if (listen(fd, 4096) < 0) die("listen");
	return fd;
}

static void conn_close(int ep, struct conn *c) {
	if (ping_ms > 0) untrack(c);
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->buf);
	free(c);
}

/* Length of the complete frames at the front of c->buf; -1 when a header exceeds -max. */
static long complete_frames(const struct conn *c) {
	size_t at = 0;
	while (c->len - at >= HEADER) {
		const unsigned char *h = c->buf + at;
		uint32_t body = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
		if (body > max_body) return -1;
		if (c->len - at - HEADER < body) break;
		at += HEADER + body;
	}
	return (long)at;
}

/* With pings on: drops the empty frames (pongs) among the first `whole` bytes; returns the
 * length of the frames left to echo. */
static size_t drop_pongs(struct conn *c, size_t whole) {
	size_t at = 0, kept = 0;
	while (at < whole) {
		const unsigned char *h = c->buf + at;
		size_t frame = HEADER + ((size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3]);
		if (frame > HEADER) {
			if (kept != at) memmove(c->buf + kept, c->buf + at, frame);
			kept += frame;
		}
		at += frame;
	}
	if (kept != whole) {
		memmove(c->buf + kept, c->buf + whole, c->len - whole);
		c->len -= whole - kept;
	}
	return kept;
}

/* Sends a ping to the next connections in turn: as many as the interval's share of a tick. */
static void ping_some(long tick_ms, long now) {
	if (n_all == 0) return;
	size_t due = (size_t)((n_all * (unsigned long)tick_ms + (unsigned long)ping_ms - 1) / (unsigned long)ping_ms);
	static const unsigned char ping[HEADER];
	for (size_t i = 0; i < due && i < n_all; i++) {
		if (next_ping >= n_all) next_ping = 0;
		struct conn *c = all[next_ping++];
		if (c->out == 0 && now - c->born >= ping_ms) send(c->fd, ping, HEADER, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
}

static long now_ms(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

/* Room for the next read: the whole next frame when its header is in, else at least 4 KiB. */
static int reserve(struct conn *c) {
	size_t want = c->len + 4096;
	if (c->len >= HEADER) {
		uint32_t body = (uint32_t)c->buf[0] << 24 | (uint32_t)c->buf[1] << 16 |
				(uint32_t)c->buf[2] << 8 | c->buf[3];
		if (HEADER + (size_t)body > want) want = HEADER + (size_t)body;
	}
	if (want <= c->cap) return 0;
	size_t cap = c->cap ? c->cap : FIRST_CAP;
	while (cap < want) cap *= 2;
	unsigned char *b = realloc(c->buf, cap);
	if (!b) return -1;
	c->buf = b;
	c->cap = cap;
	return 0;
}

/* Writes what is pending; 1 when all of it went, 0 when the socket is full, -1 on error. */
static int flush_out(struct conn *c) {
	while (c->sent < c->out) {
		ssize_t n = send(c->fd, c->buf + c->sent, c->out - c->sent, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR) continue;
			return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
		}
		c->sent += (size_t)n;
	}
	memmove(c->buf, c->buf + c->out, c->len - c->out);
	c->len -= c->out;
	c->out = c->sent = 0;
	return 1;
}

/* Reads until EAGAIN, echoing complete frames; -1 closes the connection. */
static int on_readable(int ep, struct conn *c) {
	for (;;) {
		if (reserve(c) < 0) return -1;
		ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (n == 0) return -1;
		if (n < 0) {
			if (errno == EINTR) continue;
			return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
		}
		c->len += (size_t)n;
		long whole = complete_frames(c);
		if (whole < 0) return -1;
		if (whole > 0 && ping_ms > 0) {
			whole = (long)drop_pongs(c, (size_t)whole);
			if (whole == 0 && c->len == 0 && (size_t)n < 4096) return 0; /* only pongs */
		}
		if (whole == 0) continue;
		c->out = (size_t)whole;
		int r = flush_out(c);
		if (r < 0) return -1;
		if (r == 0) { /* socket full: stop reading until it drains */
			struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
			if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) return -1;
			return 0;
		}
		if ((size_t)n < 4096) return 0; /* a short read: most likely drained */
	}
}

static int on_writable(int ep, struct conn *c) {
	int r = flush_out(c);
	if (r <= 0) return r;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
	if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) return -1;
	/* Frames that were read behind the stalled reply may already be complete. */
	long whole = complete_frames(c);
	if (whole < 0) return -1;
	if (whole > 0) {
		c->out = (size_t)whole;
		r = flush_out(c);
		if (r < 0) return -1;
		if (r == 0) {
			ev.events = EPOLLOUT;
			if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) return -1;
		}
	}
	return 0;
}

static void on_accept(int ep, int lfd) {
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) return; /* EAGAIN, or EMFILE & co: level-triggered, retried next wait */
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		struct conn *c = calloc(1, sizeof *c);
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		if (ping_ms > 0) c->born = now_ms();
		struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
		if ((ping_ms > 0 && track(c) < 0) || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			if (ping_ms > 0 && n_all > 0 && all[c->idx] == c) untrack(c);
			close(fd);
			free(c);
		}
	}
}

static void *worker(void *arg) {
	int lfd = (int)(intptr_t)arg;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0) die("epoll_create1");
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL}, evs[EVENTS];
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) die("epoll_ctl listener");
	long tick = 1;
	while (tick * 2 <= ping_ms / 64 && tick < 1024) tick *= 2;
	long next_tick = now_ms() + tick;
	for (;;) {
		int timeout = -1;
		if (ping_ms > 0) {
			long now = now_ms();
			if (now >= next_tick) {
				ping_some(tick, now);
				next_tick = now + tick - (now - next_tick) % tick;
			}
			timeout = (int)(next_tick - now);
		}
		int n = epoll_wait(ep, evs, EVENTS, timeout);
		if (n < 0 && errno != EINTR) die("epoll_wait");
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (!c) {
				on_accept(ep, lfd);
				continue;
			}
			int r;
			if (evs[i].events & (EPOLLERR | EPOLLHUP)) r = -1;
			else if (evs[i].events & EPOLLOUT) r = on_writable(ep, c);
			else r = on_readable(ep, c);
			if (r < 0) conn_close(ep, c);
		}
	}
	return NULL;
}

static void parse_listen(const char *s) {
	char host[64];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof host) {
		fprintf(stderr, "c_echo: -listen wants HOST:PORT, got %s\n", s);
		exit(2);
	}
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	bind_addr.sin_family = AF_INET;
	bind_addr.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &bind_addr.sin_addr) != 1) {
		fprintf(stderr, "c_echo: -listen: %s is not an IPv4 address\n", host);
		exit(2);
	}
}

int main(int argc, char **argv) {
	int threads = 0;
	parse_listen("127.0.0.1:0");
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-listen") && i + 1 < argc) parse_listen(argv[++i]);
		else if (!strcmp(argv[i], "-threads") && i + 1 < argc) threads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-max") && i + 1 < argc) max_body = (uint32_t)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "-ping-ms") && i + 1 < argc) ping_ms = atol(argv[++i]);
		else {
			fprintf(stderr, "usage: c_echo [-listen HOST:PORT] [-threads N] [-max BYTES] [-ping-ms N]\n");
			return 2;
		}
	}
	if (threads <= 0) {
		cpu_set_t set;
		threads = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
	}
	signal(SIGPIPE, SIG_IGN);
	/* The first listener fixes the port (when 0 was asked); the others join it. */
	int first = listener();
	socklen_t alen = sizeof bind_addr;
	if (getsockname(first, (struct sockaddr *)&bind_addr, &alen) < 0) die("getsockname");
	int *lfds = calloc((size_t)threads, sizeof *lfds);
	if (!lfds) die("calloc");
	lfds[0] = first;
	for (int t = 1; t < threads; t++) lfds[t] = listener();
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &bind_addr.sin_addr, ip, sizeof ip);
	printf("listening on %s:%u\n", ip, ntohs(bind_addr.sin_port));
	fflush(stdout);
	for (int t = 1; t < threads; t++) {
		pthread_t th;
		if (pthread_create(&th, NULL, worker, (void *)(intptr_t)lfds[t]) != 0) die("pthread_create");
	}
	worker((void *)(intptr_t)first);
	return 0;
}
