/* The floor that `make bench` compares tcp_port_used against: the least a
 * C program can do to probe a port, with nothing around it.
 *
 *   raw_connect connect HOST PORT N   socket + connect + close, N times
 *   raw_connect bind HOST PORT N      socket + SO_REUSEADDR + bind + close
 *
 *   raw_connect serve HOST            listens on HOST, port 0; prints the
 *                                     port, then accepts and closes forever
 *
 *   raw_connect http HOST PORT N PATH the readiness exchanges of
 *   raw_connect redis HOST PORT N     tcp_port_used, N times: connect, send
 *                                     the same request (GET PATH with the
 *                                     same headers; PING), read up to the
 *                                     end of the first line, read what else
 *                                     has arrived without waiting, close
 *
 * HOST is an IPv4 or IPv6 literal. Prints the mean ns per operation, of
 * wall time and of this process's CPU time (user + system).
 * The connect loop uses a blocking socket, as the simplest client would;
 * an accepted connection is closed with a reset, so that a million probes
 * of an open port leave no TIME_WAIT entries behind to slow later ones. */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static socklen_t parse_addr(const char *host, int port, struct sockaddr_storage *ss)
{
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof *ss);
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((unsigned short)port);
        return sizeof *s4;
    }
    if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((unsigned short)port);
        return sizeof *s6;
    }
    return 0;
}

/* The open port both sides probe: accepts as fast as it can, so that the
 * accept queue never fills and no probe waits on the server. */
static int serve(const char *host)
{
    struct sockaddr_storage ss;
    socklen_t len = parse_addr(host, 0, &ss);
    int one = 1, fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (len == 0 || fd < 0) {
        fprintf(stderr, "serve: bad host %s\n", host);
        return 2;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 4096) != 0
        || getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        perror("serve");
        return 2;
    }
    printf("%u\n", (unsigned)ntohs(ss.ss_family == AF_INET6
                                   ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                   : ((struct sockaddr_in *)&ss)->sin_port));
    fflush(stdout);
    for (;;) {
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (c >= 0)
            close(c);
    }
}

/* One exchange: send req, read to the first "\n", drop what else is
 * there (so that the close is a FIN, as tcp_port_used's is), close.
 * Returns 0, or -1 on a failure or a reply without a line. */
static int exchange(const struct sockaddr_storage *ss, socklen_t len, const char *req,
                    size_t req_len)
{
    char buf[8192];
    size_t got = 0;
    int rc = -1, fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)ss, len) == 0
        && send(fd, req, req_len, MSG_NOSIGNAL) == (ssize_t)req_len) {
        while (got < sizeof buf) {
            ssize_t n = recv(fd, buf + got, sizeof buf - got, 0);
            if (n <= 0)
                break;
            if (memchr(buf + got, '\n', (size_t)n) != NULL) {
                rc = 0;
                break;
            }
            got += (size_t)n;
        }
        while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0)
            ;
    }
    close(fd);
    return rc;
}

static int exchanges(int argc, char **argv)
{
    struct sockaddr_storage ss;
    char req[1024];
    socklen_t len;
    long i, n;
    int failures = 0, req_len;
    double t0, c0;
    int http = strcmp(argv[1], "http") == 0;
    if (argc != (http ? 6 : 5)) {
        fprintf(stderr, "usage: %s http HOST PORT N PATH | redis HOST PORT N\n", argv[0]);
        return 2;
    }
    len = parse_addr(argv[2], atoi(argv[3]), &ss);
    n = atol(argv[4]);
    if (http)
        req_len = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%s\r\n"
                           "User-Agent: tcp-port-used/0.2.0\r\nConnection: close\r\n\r\n",
                           argv[5], argv[2], argv[3]);
    else
        req_len = snprintf(req, sizeof req, "PING\r\n");
    if (len == 0 || n < 1 || req_len <= 0 || (size_t)req_len >= sizeof req) {
        fprintf(stderr, "%s: bad host, count or path\n", argv[0]);
        return 2;
    }
    t0 = now_ns();
    c0 = cpu_ns();
    for (i = 0; i < n; i++)
        if (exchange(&ss, len, req, (size_t)req_len) != 0)
            failures++;
    printf("%.1f %.1f\n", (now_ns() - t0) / (double)n, (cpu_ns() - c0) / (double)n);
    if (failures > 0)
        fprintf(stderr, "%s: %d of %ld exchanges failed\n", argv[0], failures, n);
    return 0;
}

int main(int argc, char **argv)
{
    struct sockaddr_storage ss;
    struct linger lg;
    socklen_t len;
    long i, n;
    int one = 1, bind_mode, failures = 0;
    double t0, c0;

    if (argc == 3 && strcmp(argv[1], "serve") == 0)
        return serve(argv[2]);
    if (argc >= 2 && (strcmp(argv[1], "http") == 0 || strcmp(argv[1], "redis") == 0))
        return exchanges(argc, argv);
    if (argc != 5 || (strcmp(argv[1], "connect") != 0 && strcmp(argv[1], "bind") != 0)) {
        fprintf(stderr, "usage: %s connect|bind HOST PORT N\n", argv[0]);
        return 2;
    }
    bind_mode = strcmp(argv[1], "bind") == 0;
    len = parse_addr(argv[2], atoi(argv[3]), &ss);
    n = atol(argv[4]);
    if (len == 0 || n < 1) {
        fprintf(stderr, "%s: bad host or count\n", argv[0]);
        return 2;
    }
    lg.l_onoff = 1;
    lg.l_linger = 0;
    t0 = now_ns();
    c0 = cpu_ns();
    for (i = 0; i < n; i++) {
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            perror("socket");
            return 2;
        }
        if (bind_mode) {
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (bind(fd, (struct sockaddr *)&ss, len) != 0)
                failures++;
        } else if (connect(fd, (struct sockaddr *)&ss, len) == 0) {
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        } else if (errno != ECONNREFUSED) {
            failures++;
        }
        close(fd);
    }
    printf("%.1f %.1f\n", (now_ns() - t0) / (double)n, (cpu_ns() - c0) / (double)n);
    if (failures > 0)
        fprintf(stderr, "%s: %d of %ld operations failed\n", argv[0], failures, n);
    return 0;
}
