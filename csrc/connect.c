/* The connect probe: non-blocking connects to every address of a host,
 * watched together with poll until one accepts, all have answered, or the
 * per-attempt timeout passes. It reports one raw outcome per address
 * (accepted, refused, or an errno code); the answer is made in Lua
 * (lua/tcp_port_used/verdict.lua). */

#define TPU_PROBE_METATABLE "tcp_port_used.probe"

enum { SLOT_UNTRIED, SLOT_PENDING, SLOT_OPEN, SLOT_REFUSED, SLOT_FAILED };

struct tpu_slot {
    int fd;
    int state;
    int err;
    struct tpu_target t;
};

struct tpu_probe {
    int n;
    int reset;          /* close an accepted connect with a reset */
    int closed;
    struct tpu_slot slot[TPU_MAX_ADDRS];
};

static void tpu_close_reset(int fd)
{
    struct linger lg;
    lg.l_onoff = 1;
    lg.l_linger = 0;
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* Whether connected socket fd reached itself: TCP's simultaneous open
 * connects a probe whose kernel-picked source port is the very port it
 * probes (nothing listens there). That is a refused port, and the
 * socket must go at once with a reset: a graceful close would leave a
 * TIME_WAIT entry that keeps the awaited server from binding its port. */
static int tpu_self_connected(int fd, const struct tpu_target *t)
{
    struct sockaddr_storage me;
    socklen_t len = sizeof me;
    if (getsockname(fd, (struct sockaddr *)&me, &len) != 0 || me.ss_family != t->sa.ss_family)
        return 0;
    if (me.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&me;
        const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)&t->sa;
        return a->sin6_port == b->sin6_port
            && memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) == 0;
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&me;
        const struct sockaddr_in *b = (const struct sockaddr_in *)&t->sa;
        return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
    }
}

static void tpu_slot_finish(struct tpu_slot *s, int state, int err)
{
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    s->state = state;
    s->err = err;
}

/* The connect of s completed: accepted, unless it reached itself. */
static void tpu_slot_open(struct tpu_slot *s, int reset)
{
    if (tpu_self_connected(s->fd, &s->t)) {
        tpu_close_reset(s->fd);
        s->fd = -1;
        s->state = SLOT_REFUSED;
        s->err = ECONNREFUSED;
        return;
    }
    if (reset)
        tpu_close_reset(s->fd);
    else
        close(s->fd);
    s->fd = -1;
    s->state = SLOT_OPEN;
    s->err = 0;
}

static void tpu_slot_failed(struct tpu_slot *s, int err)
{
    tpu_slot_finish(s, err == ECONNREFUSED ? SLOT_REFUSED : SLOT_FAILED, err);
}

/* A pending connect that poll reported: its outcome is in SO_ERROR. */
static void tpu_slot_settle(struct tpu_slot *s, int reset)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err == 0)
        tpu_slot_open(s, reset);
    else
        tpu_slot_failed(s, err);
}

static void tpu_slot_start(struct tpu_slot *s, int reset)
{
    int err;
    s->fd = tpu_socket(s->t.sa.ss_family, SOCK_STREAM, 1);
    if (s->fd < 0) {
        tpu_slot_failed(s, errno);
        return;
    }
    if (connect(s->fd, (struct sockaddr *)&s->t.sa, s->t.len) == 0) {
        tpu_slot_open(s, reset);
        return;
    }
    /* EINTR leaves the connect going on, as EINPROGRESS does (POSIX): one
     * rule with stream.c, it is pending and poll gives its outcome */
    if (errno != EINPROGRESS && errno != EINTR) {
        tpu_slot_failed(s, errno);
        return;
    }
    if (!tpu_connect_ask(s->fd, (struct sockaddr *)&s->t.sa, s->t.len, &err))
        s->state = SLOT_PENDING;
    else if (err == 0)
        tpu_slot_open(s, reset);
    else
        tpu_slot_failed(s, err);
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

/* Starts a connect to each of the n targets, stopping early when one
 * accepts at once. */
static void tpu_probe_begin(struct tpu_probe *p, const struct tpu_target *t, int n, int reset)
{
    int i;
    p->closed = 0;
    p->reset = reset;
    p->n = n;
    for (i = 0; i < n; i++) {
        p->slot[i].fd = -1;
        p->slot[i].state = SLOT_UNTRIED;
        p->slot[i].err = 0;
        p->slot[i].t = t[i];
    }
    for (i = 0; i < n && !tpu_probe_has(p, SLOT_OPEN); i++)
        tpu_slot_start(&p->slot[i], reset);
}

/* Waits up to timeout_ms (0: just looks) for pending connects to answer;
 * with expire set, what is still pending then has timed out. Blocks the
 * calling thread for at most timeout_ms. */
static void tpu_probe_wait(struct tpu_probe *p, double timeout_ms, int expire)
{
    struct pollfd pfd[TPU_MAX_ADDRS];
    int idx[TPU_MAX_ADDRS];
    double deadline = tpu_now_ms() + timeout_ms;

    for (;;) {
        int i, k = 0, rc;
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
        rc = poll(pfd, (nfds_t)k, tpu_poll_ms(deadline - tpu_now_ms()));
        if (rc < 0 && errno != EINTR) {
            int err = errno;
            for (i = 0; i < k; i++)
                tpu_slot_finish(&p->slot[idx[i]], SLOT_FAILED, err);
            return;
        }
        for (i = 0; rc > 0 && i < k; i++)
            if (pfd[i].revents != 0)
                tpu_slot_settle(&p->slot[idx[i]], p->reset);
        if (rc == 0 && tpu_now_ms() >= deadline) {
            if (expire)
                for (i = 0; i < k; i++)
                    tpu_slot_finish(&p->slot[idx[i]], SLOT_FAILED, ETIMEDOUT);
            return;
        }
    }
}

/* Pushes one outcome: true (accepted), false (refused), or the code. */
static void tpu_push_state(lua_State *L, int state, int err)
{
    if (state == SLOT_OPEN || state == SLOT_REFUSED)
        lua_pushboolean(L, state == SLOT_OPEN);
    else
        tpu_push_code(L, err);
}

/* Pushes the outcomes of a finished probe as state, address pairs (only
 * the accepting address when one accepted), or the string "pending";
 * closes every socket once the outcomes are final. The stack has room
 * (tpu_outcome_room). */
static int tpu_probe_push(lua_State *L, struct tpu_probe *p)
{
    int i, k = 0;
    if (tpu_probe_has(p, SLOT_PENDING) && !tpu_probe_has(p, SLOT_OPEN)) {
        lua_pushliteral(L, "pending");
        return 1;
    }
    tpu_probe_close(p);
    for (i = 0; i < p->n; i++) {
        const struct tpu_slot *s = &p->slot[i];
        if (s->state == SLOT_UNTRIED || (tpu_probe_has(p, SLOT_OPEN) && s->state != SLOT_OPEN))
            continue;
        tpu_push_state(L, s->state, s->err);
        tpu_push_address(L, &s->t);
        k += 2;
        if (s->state == SLOT_OPEN)
            break;
    }
    return k;
}

static void tpu_outcome_room(lua_State *L)
{
    luaL_checkstack(L, 2 * TPU_MAX_ADDRS + 4, "too many addresses");
}

/***
 * connect(host, port [, timeout_ms [, close]]): one connect probe of every
 * address of host (nil: 127.0.0.1 and ::1), blocking for at most
 * timeout_ms (default 1000). close is "graceful" (default) or "reset".
 * Returns the outcomes as state, address pairs (state true: accepted,
 * false: refused, or a code), or nil, code when host does not resolve.
 */
static int l_connect(lua_State *L)
{
    struct tpu_target t[TPU_MAX_ADDRS];
    struct tpu_probe p;
    const char *host = tpu_opt_host(L, 1);
    int port = tpu_check_port(L, 2);
    double timeout = tpu_check_ms(L, 3, 1000);
    int reset = tpu_check_reset(L, 4);
    int rc, err, n;
    tpu_outcome_room(L);
    n = tpu_resolve(host, port, 0, t, &rc, &err);
    if (n == 0)
        return tpu_push_resolve_error(L, rc, err);
    tpu_probe_begin(&p, t, n, reset);
    tpu_probe_wait(&p, timeout, 1);
    return tpu_probe_push(L, &p);
}

/***
 * start(host, port [, close]): starts a connect probe without waiting.
 * Returns the outcomes (as connect) when they are known at once, else a
 * probe object whose poll(ms) returns them or "pending". Never blocks.
 */
static int l_start(lua_State *L)
{
    struct tpu_target t[TPU_MAX_ADDRS];
    struct tpu_probe *p;
    const char *host = tpu_opt_host(L, 1);
    int port = tpu_check_port(L, 2);
    int reset = tpu_check_reset(L, 3);
    int i, rc, err, n;
    tpu_outcome_room(L);
    n = tpu_resolve(host, port, 0, t, &rc, &err);
    if (n == 0)
        return tpu_push_resolve_error(L, rc, err);
    /* the object that will own the sockets exists before them */
    p = (struct tpu_probe *)lua_newuserdata(L, sizeof *p);
    p->n = 0;
    p->closed = 1;
    luaL_getmetatable(L, TPU_PROBE_METATABLE);
    lua_setmetatable(L, -2);
    tpu_probe_begin(p, t, n, reset);
    if (!tpu_probe_has(p, SLOT_PENDING) || tpu_probe_has(p, SLOT_OPEN))
        return tpu_probe_push(L, p);
    /* the host argument does not outlive this call */
    for (i = 0; i < n; i++)
        p->slot[i].t.text = NULL;
    return 1;
}

static struct tpu_probe *tpu_check_probe(lua_State *L)
{
    return (struct tpu_probe *)luaL_checkudata(L, 1, TPU_PROBE_METATABLE);
}

/***
 * probe:poll([ms]): waits up to ms (default 0) for the outcomes; returns
 * them, or "pending". A closed probe answers nil, "ECLOSED".
 */
static int l_probe_poll(lua_State *L)
{
    struct tpu_probe *p = tpu_check_probe(L);
    double ms = tpu_check_ms(L, 2, 0);
    tpu_outcome_room(L);
    if (p->closed) {
        lua_pushnil(L);
        lua_pushliteral(L, "ECLOSED");
        return 2;
    }
    tpu_probe_wait(p, ms, 0);
    return tpu_probe_push(L, p);
}

/***
 * probe:expire(): gives up on connects still pending (the attempt's time
 * is up: they count as ETIMEDOUT) and returns the final outcomes.
 */
static int l_probe_expire(lua_State *L)
{
    struct tpu_probe *p = tpu_check_probe(L);
    if (!p->closed) {
        int i;
        for (i = 0; i < p->n; i++)
            if (p->slot[i].state == SLOT_PENDING)
                tpu_slot_finish(&p->slot[i], SLOT_FAILED, ETIMEDOUT);
    }
    return l_probe_poll(L);
}

/***
 * probe:fds(): the descriptors still connecting, for a host loop to watch
 * for writability (luv's poll handles).
 */
static int l_probe_fds(lua_State *L)
{
    struct tpu_probe *p = tpu_check_probe(L);
    int i, k = 0;
    lua_newtable(L);
    for (i = 0; !p->closed && i < p->n; i++)
        if (p->slot[i].state == SLOT_PENDING) {
            lua_pushinteger(L, p->slot[i].fd);
            lua_rawseti(L, -2, ++k);
        }
    return 1;
}

/* probe:close(), __gc and __close: closes what is still open; idempotent. */
static int l_probe_close(lua_State *L)
{
    tpu_probe_close(tpu_check_probe(L));
    return 0;
}

static const luaL_Reg tpu_probe_methods[] = {
    { "poll", l_probe_poll },
    { "expire", l_probe_expire },
    { "fds", l_probe_fds },
    { "close", l_probe_close },
    { NULL, NULL }
};

static const luaL_Reg tpu_connect_functions[] = {
    { "connect", l_connect },
    { "start", l_start },
    { NULL, NULL }
};

static void tpu_connect_open(lua_State *L)
{
    if (luaL_newmetatable(L, TPU_PROBE_METATABLE)) {
        lua_newtable(L);
        luaL_setfuncs(L, tpu_probe_methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_probe_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_probe_close);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    luaL_setfuncs(L, tpu_connect_functions, 0);
}
