/* The connect probe: non-blocking connects to every address of a host,
 * watched together with poll until one accepts, all have answered, or the
 * per-attempt timeout passes. Included by core.c. */

#define TPU_METATABLE "tcp_port_used.probe"

enum { TPU_CLOSE_AUTO, TPU_CLOSE_GRACEFUL, TPU_CLOSE_RESET };
enum { SLOT_PENDING, SLOT_OPEN, SLOT_REFUSED, SLOT_FAILED, SLOT_SKIPPED, SLOT_UNTRIED };

/* Above this many connected probes in the last second, the next ones close
 * with a reset, so that a tight loop cannot fill the ephemeral port range
 * with TIME_WAIT entries. Below it they close with FIN, which servers do
 * not log. */
#define TPU_GRACEFUL_PER_SECOND 100.0

struct tpu_slot {
    int fd;
    int state;
    int err;
    struct tpu_target t;
};

struct tpu_probe {
    int n;
    int close_mode;
    int named;          /* host went through the resolver: name it in messages */
    int closed;
    char host[TPU_MAX_HOST + 1];
    struct tpu_slot slot[TPU_MAX_ADDRS];
};

static double tpu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A sliding estimate over two one-second windows of how many connected
 * probes this process made in the last second. */
static struct {
    double start, prev, cur;
} tpu_rate;

static int tpu_should_reset(int mode)
{
    double now, elapsed, estimate;
    if (mode != TPU_CLOSE_AUTO)
        return mode == TPU_CLOSE_RESET;
    now = tpu_now_ms();
    elapsed = now - tpu_rate.start;
    if (elapsed >= 1000.0) {
        tpu_rate.prev = elapsed >= 2000.0 ? 0.0 : tpu_rate.cur;
        tpu_rate.cur = 0.0;
        tpu_rate.start = elapsed >= 2000.0 ? now : tpu_rate.start + 1000.0;
        elapsed = now - tpu_rate.start;
    }
    estimate = tpu_rate.prev * (1.0 - elapsed / 1000.0) + tpu_rate.cur;
    tpu_rate.cur += 1.0;
    return estimate >= TPU_GRACEFUL_PER_SECOND;
}

static void tpu_close_connected(int fd, int mode)
{
    if (tpu_should_reset(mode)) {
        struct linger lg;
        lg.l_onoff = 1;
        lg.l_linger = 0;
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(fd);
}

static void tpu_slot_finish(struct tpu_slot *s, int state, int err, int close_mode)
{
    if (s->fd >= 0) {
        if (state == SLOT_OPEN)
            tpu_close_connected(s->fd, close_mode);
        else
            close(s->fd);
        s->fd = -1;
    }
    s->state = state;
    s->err = err;
}

static void tpu_slot_failed(struct tpu_slot *s, int err, int close_mode)
{
    if (err == ECONNREFUSED)
        tpu_slot_finish(s, SLOT_REFUSED, err, close_mode);
    else if (tpu_missing_family(&s->t, err))
        tpu_slot_finish(s, SLOT_SKIPPED, err, close_mode);
    else
        tpu_slot_finish(s, SLOT_FAILED, err, close_mode);
}

static void tpu_slot_start(struct tpu_slot *s, int close_mode)
{
    s->fd = socket(s->t.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        tpu_slot_failed(s, errno, close_mode);
        return;
    }
    if (connect(s->fd, (struct sockaddr *)&s->t.sa, s->t.len) == 0) {
        tpu_slot_finish(s, SLOT_OPEN, 0, close_mode);
        return;
    }
    if (errno != EINPROGRESS) {
        tpu_slot_failed(s, errno, close_mode);
        return;
    }
    /* On loopback the handshake is over by the time connect returns
     * EINPROGRESS: asking again answers in one system call (0 once
     * connected, the error once refused, EALREADY while pending) where
     * poll and SO_ERROR would take two. */
    if (connect(s->fd, (struct sockaddr *)&s->t.sa, s->t.len) == 0 || errno == EISCONN)
        tpu_slot_finish(s, SLOT_OPEN, 0, close_mode);
    else if (errno == EALREADY || errno == EINPROGRESS)
        s->state = SLOT_PENDING;
    else
        tpu_slot_failed(s, errno, close_mode);
}

/* A pending connect that poll reported: its outcome is in SO_ERROR. */
static void tpu_slot_settle(struct tpu_slot *s, int close_mode)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err == 0)
        tpu_slot_finish(s, SLOT_OPEN, 0, close_mode);
    else
        tpu_slot_failed(s, err, close_mode);
}

/* Closes every socket still open; safe to call twice. */
static void tpu_probe_close(struct tpu_probe *p)
{
    int i;
    for (i = 0; i < p->n; i++)
        if (p->slot[i].fd >= 0) {
            close(p->slot[i].fd);
            p->slot[i].fd = -1;
        }
    p->closed = 1;
}

static int tpu_probe_has(const struct tpu_probe *p, int state)
{
    int i;
    for (i = 0; i < p->n; i++)
        if (p->slot[i].state == state)
            return 1;
    return 0;
}

/* Resolves and starts a connect to each address, stopping early when one
 * accepts at once. Returns 0, or a getaddrinfo code. */
static int tpu_probe_begin(struct tpu_probe *p, const char *host, int port, int close_mode)
{
    struct tpu_target targets[TPU_MAX_ADDRS];
    int i, rc, n;

    p->closed = 0;
    p->close_mode = close_mode;
    p->named = 0;
    p->host[0] = '\0';
    p->n = 0;
    n = tpu_resolve(host, port, 0, targets, &rc);
    if (n == 0)
        return rc;
    if (host != NULL) {
        char a[INET6_ADDRSTRLEN];
        tpu_strip_brackets(host, p->host, sizeof p->host);
        p->named = inet_pton(AF_INET, p->host, a) != 1 && inet_pton(AF_INET6, p->host, a) != 1;
    }
    p->n = n;
    for (i = 0; i < n; i++) {
        p->slot[i].fd = -1;
        p->slot[i].state = SLOT_UNTRIED;
        p->slot[i].err = 0;
        p->slot[i].t = targets[i];
    }
    for (i = 0; i < n && !tpu_probe_has(p, SLOT_OPEN); i++)
        tpu_slot_start(&p->slot[i], close_mode);
    return 0;
}

/* Waits up to timeout_ms (0: just look) for pending connects to answer.
 * Marks what is still pending at the end as timed out when expire is set. */
static void tpu_probe_wait(struct tpu_probe *p, double timeout_ms, int expire)
{
    struct pollfd pfd[TPU_MAX_ADDRS];
    int idx[TPU_MAX_ADDRS];
    double deadline = tpu_now_ms() + timeout_ms;

    for (;;) {
        int i, k = 0, rc, wait;
        double left;
        if (tpu_probe_has(p, SLOT_OPEN))
            return;
        for (i = 0; i < p->n; i++)
            if (p->slot[i].state == SLOT_PENDING) {
                pfd[k].fd = p->slot[i].fd;
                pfd[k].events = POLLOUT;
                pfd[k].revents = 0;
                idx[k++] = i;
            }
        if (k == 0)
            return;
        left = deadline - tpu_now_ms();
        wait = left <= 0 ? 0 : (int)(left + 0.999);
        rc = poll(pfd, (nfds_t)k, wait);
        if (rc < 0 && errno != EINTR) {
            int err = errno;
            for (i = 0; i < k; i++)
                tpu_slot_finish(&p->slot[idx[i]], SLOT_FAILED, err, p->close_mode);
            return;
        }
        for (i = 0; rc > 0 && i < k; i++)
            if (pfd[i].revents != 0)
                tpu_slot_settle(&p->slot[idx[i]], p->close_mode);
        if (rc == 0 && tpu_now_ms() >= deadline) {
            if (expire)
                for (i = 0; i < k; i++)
                    tpu_slot_finish(&p->slot[idx[i]], SLOT_FAILED, ETIMEDOUT, p->close_mode);
            return;
        }
    }
}

static void tpu_probe_where(const struct tpu_probe *p, const struct tpu_slot *s,
                            char *buf, size_t size)
{
    char addr[INET6_ADDRSTRLEN + 16];
    tpu_format_addr(&s->t, addr, sizeof addr);
    if (p->named)
        snprintf(buf, size, "%.255s:%u (%s)", p->host,
                 (unsigned)ntohs(((const struct sockaddr_in *)&s->t.sa)->sin_port), addr);
    else
        snprintf(buf, size, "%s", addr);
}

/* Pushes the answer (true / false / nil, err, code) or the string
 * "pending"; closes every socket once the answer is final. */
static int tpu_probe_verdict(lua_State *L, struct tpu_probe *p)
{
    char where[TPU_MAX_HOST + 64];
    int i;
    if (tpu_probe_has(p, SLOT_OPEN)) {
        tpu_probe_close(p);
        lua_pushboolean(L, 1);
        return 1;
    }
    if (tpu_probe_has(p, SLOT_PENDING)) {
        lua_pushliteral(L, "pending");
        return 1;
    }
    tpu_probe_close(p);
    for (i = 0; i < p->n; i++)
        if (p->slot[i].state == SLOT_FAILED) {
            tpu_probe_where(p, &p->slot[i], where, sizeof where);
            return tpu_push_errno(L, "connect", where, p->slot[i].err);
        }
    if (tpu_probe_has(p, SLOT_REFUSED)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    tpu_probe_where(p, &p->slot[0], where, sizeof where);
    lua_pushnil(L);
    lua_pushfstring(L, "connect %s: no address of a family this machine has", where);
    lua_pushliteral(L, "EAFNOSUPPORT");
    return 3;
}
