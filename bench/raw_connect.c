/* The floor that `make bench` compares tcp_port_used against: the least a
 * C program can do to probe a port, with nothing around it.
 *
 *   raw_connect connect HOST PORT N   socket + connect + close, N times
 *   raw_connect bind HOST PORT N      socket + SO_REUSEADDR + bind + close
 *
 *   raw_connect serve HOST            listens on HOST, port 0; prints the
 *                                     port, then accepts and closes forever
 *
 * HOST is an IPv4 or IPv6 literal. Prints the mean ns per operation.
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

int main(int argc, char **argv)
{
    struct sockaddr_storage ss;
    struct linger lg;
    socklen_t len;
    long i, n;
    int one = 1, bind_mode, failures = 0;
    double t0;

    if (argc == 3 && strcmp(argv[1], "serve") == 0)
        return serve(argv[2]);
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
    printf("%.1f\n", (now_ns() - t0) / (double)n);
    if (failures > 0)
        fprintf(stderr, "%s: %d of %ld operations failed\n", argv[0], failures, n);
    return 0;
}
