/* The platform layer: every call that differs between systems is chosen
 * here, once, by feature tests in the preprocessor (never by OS names in
 * the rest of the code):
 *
 *   tpu_socket()    SOCK_NONBLOCK | SOCK_CLOEXEC where socket() takes them,
 *                   else socket() + fcntl()
 *   tpu_sleep_ms()  clock_nanosleep(TIMER_ABSTIME) against the monotonic
 *                   clock where it exists, else a nanosleep loop against it
 *   TPU_NOSIGPIPE   MSG_NOSIGNAL for send() where it exists (SO_NOSIGPIPE
 *                   is set on the socket where only that exists)
 *   TPU_LINUX       listen mode and owner (NETLINK_SOCK_DIAG, /proc)
 *
 * Defining TPU_PORTABLE compiles every Linux-only path out, so that the
 * portable paths are built and tested on Linux too (make test-portable). */
#ifndef TPU_PLATFORM_H
#define TPU_PLATFORM_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__) && !defined(TPU_PORTABLE)
#define TPU_LINUX 1
#endif

#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC) && !defined(TPU_PORTABLE)
#define TPU_SOCK_FLAGS 1
#endif

#if defined(TIMER_ABSTIME) && defined(_POSIX_MONOTONIC_CLOCK) && _POSIX_MONOTONIC_CLOCK >= 0 \
    && !defined(__APPLE__) && !defined(TPU_PORTABLE)
#define TPU_ABSTIME_SLEEP 1
#endif

#if defined(MSG_NOSIGNAL) && !defined(TPU_PORTABLE)
#define TPU_NOSIGPIPE MSG_NOSIGNAL
#else
#define TPU_NOSIGPIPE 0
#endif

/* A socket, close-on-exec, non-blocking when asked. -1 with errno set. */
static int tpu_socket(int family, int type, int nonblock)
{
#ifdef TPU_SOCK_FLAGS
    return socket(family, type | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
#else
    int fd = socket(family, type, 0);
    if (fd < 0)
        return -1;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0
        || (nonblock && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
#ifdef SO_NOSIGPIPE
    {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
    }
#endif
    return fd;
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
