/* Preloaded into a Lua child by spec/faults_spec.lua: a SIGALRM at 1 kHz
 * with a handler installed without SA_RESTART, so that every blocking call
 * the core makes (poll, clock_nanosleep) keeps being interrupted. Counts
 * the signals, so the spec can see that the storm really ran. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static volatile sig_atomic_t storm_count;

static void storm_handler(int sig)
{
    (void)sig;
    storm_count++;
}

static void storm_report(void)
{
    fprintf(stderr, "sigstorm: %ld signals\n", (long)storm_count);
}

__attribute__((constructor)) static void storm_start(void)
{
    struct sigaction sa;
    struct itimerval it;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = storm_handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    it.it_interval.tv_sec = 0;
    it.it_interval.tv_usec = 1000;
    it.it_value = it.it_interval;
    setitimer(ITIMER_REAL, &it, NULL);
    atexit(storm_report);
}
