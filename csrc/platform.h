/* The platform layer: every call that differs between systems is chosen
 * here, once, by feature tests in the preprocessor; the rest of the code
 * tests only the TPU_ names below, never an OS name:
 *
 *   tpu_socket_of()   SOCK_NONBLOCK | SOCK_CLOEXEC where socket() takes
 *                     them (TPU_SOCK_FLAGS), else socket() + fcntl()
 *   tpu_connect_ask() a second connect() on a pending socket answers its
 *                     outcome (Linux: TPU_CONNECT_ASK); elsewhere poll()
 *                     and SO_ERROR do (BSD and macOS may answer EISCONN
 *                     for a refused one)
 *   tpu_sleep_ms()    clock_nanosleep(TIMER_ABSTIME) on the monotonic
 *                     clock where POSIX clock selection is there
 *                     (TPU_ABSTIME_SLEEP), else a nanosleep loop against it
 *   TPU_NOSIGPIPE     the send() flag that keeps a write to a closed peer
 *                     from raising SIGPIPE (MSG_NOSIGNAL); where only
 *                     SO_NOSIGPIPE exists, tpu_socket sets that instead
 *   TPU_BIND_NO_PORT  IP_BIND_ADDRESS_NO_PORT: a bind that only asks
 *                     whether an address is local reserves no port
 *   tpu_fds_in_use()  /proc/self/fd where it exists, else poll() over the
 *                     descriptors below the limit
 *   TPU_LINUX         listen mode and owner (NETLINK_SOCK_DIAG, /proc);
 *                     elsewhere they answer nil, "ENOTSUP" (listen.c)
 *
 * Defining TPU_PORTABLE compiles every Linux-only path out, so that the
 * portable paths are built and tested on Linux too (make test-portable).
 *
 * This header comes before any system header (core.c includes it first):
 * the feature macros ask each C library for POSIX.1-2008 plus the BSD
 * socket calls, which -std=c99 alone would hide. */
#ifndef TPU_PLATFORM_H
#define TPU_PLATFORM_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE         /* glibc, musl */
#endif
#ifndef _DARWIN_C_SOURCE
#define _DARWIN_C_SOURCE    /* macOS */
#endif
#ifndef _NETBSD_SOURCE
#define _NETBSD_SOURCE      /* NetBSD; FreeBSD and OpenBSD show all by default */
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__) && !defined(TPU_PORTABLE)
#define TPU_LINUX 1
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <sys/syscall.h>
#include <sys/wait.h>
/* pidfd_getfd (Linux 5.6): the sockets of a process read from the
 * sockets themselves (procs.c); without it, from the kernel's tables */
#if defined(SYS_pidfd_open) && defined(SYS_pidfd_getfd)
#define TPU_PIDFD 1
#endif
#endif

#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC) && !defined(TPU_PORTABLE)
#define TPU_SOCK_FLAGS 1
#endif

#ifdef TPU_LINUX
#define TPU_CONNECT_ASK 1
#endif

/* clock_nanosleep belongs to POSIX clock selection: glibc and musl say
 * they have it, macOS (which lacks the call) and FreeBSD say -1. */
#if defined(TIMER_ABSTIME) && defined(_POSIX_CLOCK_SELECTION) && _POSIX_CLOCK_SELECTION > 0 \
    && defined(_POSIX_MONOTONIC_CLOCK) && _POSIX_MONOTONIC_CLOCK >= 0 && !defined(TPU_PORTABLE)
#define TPU_ABSTIME_SLEEP 1
#endif

/* MSG_NOSIGNAL is POSIX (2008), not Linux's: the portable build keeps
 * it. macOS lacks it and has SO_NOSIGPIPE instead. */
#if defined(MSG_NOSIGNAL)
#define TPU_NOSIGPIPE MSG_NOSIGNAL
#else
#define TPU_NOSIGPIPE 0
#if defined(SO_NOSIGPIPE)
#define TPU_SO_NOSIGPIPE 1
#endif
#endif

#ifdef TPU_LINUX
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24 /* Linux 4.2; older C libraries lack the name */
#endif
#define TPU_BIND_NO_PORT IP_BIND_ADDRESS_NO_PORT
#endif

/* A socket of family, type and protocol, close-on-exec, non-blocking when
 * asked. -1 with errno set. */
static int tpu_socket_of(int family, int type, int protocol, int nonblock)
{
    int fd;
#ifdef TPU_SOCK_FLAGS
    fd = socket(family, type | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), protocol);
    if (fd < 0)
        return -1;
#else
    fd = socket(family, type, protocol);
    if (fd < 0)
        return -1;
    /* a fresh socket has no other status flag to keep: no F_GETFL */
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 || (nonblock && fcntl(fd, F_SETFL, O_NONBLOCK) != 0)) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
#endif
#ifdef TPU_SO_NOSIGPIPE
    {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
    }
#endif
    return fd;
}

/* tpu_socket_of for the default protocol of type (TCP, UDP). */
static int tpu_socket(int family, int type, int nonblock)
{
    return tpu_socket_of(family, type, 0, nonblock);
}

/* Whether the outcome of a non-blocking connect of fd to sa, which
 * said EINPROGRESS, is known without waiting: 1 with *err 0 (connected)
 * or the error, 0 while it is pending. On loopback the handshake is over
 * by then: Linux answers a second connect() in one system call (0 once
 * connected, the error once refused, EALREADY while pending); elsewhere
 * a poll that does not wait and SO_ERROR tell. */
static int tpu_connect_ask(int fd, const struct sockaddr *sa, socklen_t len, int *err)
{
#ifdef TPU_CONNECT_ASK
    if (connect(fd, sa, len) == 0 || errno == EISCONN) {
        *err = 0;
        return 1;
    }
    if (errno == EALREADY || errno == EINPROGRESS || errno == EINTR)
        return 0;
    *err = errno;
    return 1;
#else
    struct pollfd pfd;
    socklen_t elen = sizeof *err;
    (void)sa;
    (void)len;
    pfd.fd = fd;
    pfd.events = POLLOUT;
    pfd.revents = 0;
    if (poll(&pfd, 1, 0) != 1)
        return 0;
    *err = 0;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, err, &elen) != 0)
        *err = errno;
    return 1;
#endif
}

/* Descriptors open in this process, or -1 where it cannot be told. limit
 * is the open-file limit: no descriptor is at or above it. */
static long tpu_fds_in_use(long limit)
{
#ifdef TPU_LINUX
    long n = 0;
    struct dirent *e;
    DIR *d = opendir("/proc/self/fd");
    (void)limit;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
#else
    /* poll() marks a descriptor that is not open POLLNVAL: one system call
     * per 256 descriptors, where fcntl() would take one per descriptor */
    struct pollfd pfd[256];
    long n = 0, base;
    for (base = 0; base < limit; base += 256) {
        int i, k = limit - base < 256 ? (int)(limit - base) : 256;
        for (i = 0; i < k; i++) {
            pfd[i].fd = (int)(base + i);
            pfd[i].events = 0;
            pfd[i].revents = 0;
        }
        if (poll(pfd, (nfds_t)k, 0) < 0)
            return -1;
        for (i = 0; i < k; i++)
            if (!(pfd[i].revents & POLLNVAL))
                n++;
    }
    return n;
#endif
}

/* Milliseconds on the monotonic clock (fractional). */
static double tpu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A millisecond count for poll(): rounded up, clamped to 0..INT_MAX
 * before the cast. */
static int tpu_poll_ms(double ms)
{
    if (!(ms > 0))
        return 0;
    if (ms >= (double)INT_MAX)
        return INT_MAX;
    return (int)(ms + 0.999);
}

/* Blocks the thread for ms against the monotonic clock, so that signals
 * neither cut the sleep short (EINTR is resumed) nor stretch it. */
static void tpu_sleep_ms(double ms)
{
#ifdef TPU_ABSTIME_SLEEP
    struct timespec ts;
    double end;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    end = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + ms / 1e3;
    ts.tv_sec = (time_t)end;
    ts.tv_nsec = (long)((end - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    if (ts.tv_nsec < 0)
        ts.tv_nsec = 0;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
#else
    double end = tpu_now_ms() + ms;
    for (;;) {
        struct timespec ts;
        double left = end - tpu_now_ms();
        if (left <= 0)
            return;
        ts.tv_sec = (time_t)(left / 1e3);
        ts.tv_nsec = (long)((left - (double)ts.tv_sec * 1e3) * 1e6);
        if (ts.tv_nsec >= 1000000000L)
            ts.tv_nsec = 999999999L;
        if (ts.tv_nsec < 0)
            ts.tv_nsec = 0;
        nanosleep(&ts, NULL);
    }
#endif
}

#endif
