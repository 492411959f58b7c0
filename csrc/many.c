/* Many connect probes at once (check_many). A window of non-blocking
 * connects stays in flight and is refilled as they answer. The window
 * never holds more sockets than the open-file limit leaves room for, so a
 * long list is probed in waves instead of failing with EMFILE. No Lua
 * error can be raised while a socket is open: every allocation happens
 * before the first connect and the outcomes are pushed after the last
 * close. */

#define TPU_MANY_INFLIGHT 1024
/* Descriptors left to the rest of the process (Lua's files, the host
 * program's own sockets) when the limit is what bounds the window: an
 * eighth of the limit, at most this many. */
#define TPU_MANY_HEADROOM 64

struct tpu_job {
    int state;
    int err;
};

struct tpu_many {
    int nports, naddrs, njobs, limit, reset;
    const int *ports;
    const struct tpu_target *targets;
    struct tpu_job *job;       /* one per (port, address), port-major */
    unsigned char *open;       /* per port: an address accepted */
    struct tpu_slot *win;      /* the connects in flight, [0, active) */
    int *win_job;
    double *win_due;
    struct pollfd *pfd;
};

/* How many sockets may be in flight at once: want, or less where the
 * open-file limit leaves less room. Counting open descriptors is skipped
 * when the limit is far above anything a call could use. */
static int tpu_fd_room(int want)
{
    struct rlimit rl;
    long used, room, headroom;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY
        || rl.rlim_cur > (rlim_t)want + TPU_MANY_HEADROOM + 65536)
        return want;
    used = tpu_fds_in_use((long)rl.rlim_cur);
    if (used < 0)
        return want; /* EMFILE, if it comes, shrinks the window */
    headroom = (long)rl.rlim_cur / 8 < TPU_MANY_HEADROOM ? (long)rl.rlim_cur / 8 : TPU_MANY_HEADROOM;
    room = (long)rl.rlim_cur - used - headroom;
    if (room < 1)
        room = 1;
    return room < want ? (int)room : want;
}

static void tpu_many_record(struct tpu_many *m, int j, const struct tpu_slot *s)
{
    m->job[j].state = s->state;
    m->job[j].err = s->err;
    if (s->state == SLOT_OPEN)
        m->open[j / m->naddrs] = 1;
}

/* One poll over the window; records what answered, what timed out and
 * what no longer matters (another address of its port accepted), and
 * compacts the window. Returns how many stay in flight. */
static int tpu_many_poll(struct tpu_many *m, int active)
{
    double now = tpu_now_ms(), due = m->win_due[0];
    int i, k, rc, poll_err = 0;

    for (i = 0; i < active; i++) {
        m->pfd[i].fd = m->win[i].fd;
        m->pfd[i].events = POLLOUT;
        m->pfd[i].revents = 0;
        if (m->win_due[i] < due)
            due = m->win_due[i];
    }
    rc = poll(m->pfd, (nfds_t)active, tpu_poll_ms(due - now));
    if (rc < 0 && errno != EINTR)
        poll_err = errno;
    now = tpu_now_ms();
    for (i = 0; i < active; i++) {
        struct tpu_slot *s = &m->win[i];
        int j = m->win_job[i];
        if (poll_err != 0)
            tpu_slot_finish(s, SLOT_FAILED, poll_err);
        else if (rc > 0 && m->pfd[i].revents != 0)
            tpu_slot_settle(s, m->reset);
        else if (m->open[j / m->naddrs])
            tpu_slot_finish(s, SLOT_UNTRIED, 0);
        else if (now >= m->win_due[i])
            tpu_slot_finish(s, SLOT_FAILED, ETIMEDOUT);
        else
            continue;
        tpu_many_record(m, j, s);
    }
    for (i = 0, k = 0; i < active; i++)
        if (m->win[i].state == SLOT_PENDING) {
            if (k != i) {
                m->win[k] = m->win[i];
                m->win_job[k] = m->win_job[i];
                m->win_due[k] = m->win_due[i];
            }
            k++;
        }
    return k;
}

/* Blocks until every job has answered or timed out. */
static void tpu_many_run(struct tpu_many *m, double timeout_ms)
{
    int next = 0, active = 0;
    while (next < m->njobs || active > 0) {
        while (active < m->limit && next < m->njobs) {
            int j = next++, pi = j / m->naddrs;
            struct tpu_slot *s = &m->win[active];
            if (m->open[pi]) {
                m->job[j].state = SLOT_UNTRIED;
                continue;
            }
            s->t = m->targets[j % m->naddrs];
            tpu_set_port(&s->t, m->ports[pi]);
            s->err = 0;
            tpu_slot_start(s, m->reset);
            if (s->state == SLOT_PENDING) {
                m->win_job[active] = j;
                m->win_due[active] = tpu_now_ms() + timeout_ms;
                active++;
            } else if ((s->err == EMFILE || s->err == ENFILE) && active > 0) {
                /* Someone else took the room we counted on: wait for
                 * ours to answer instead of failing this port. */
                m->limit = active;
                next--;
            } else {
                tpu_many_record(m, j, s);
            }
        }
        if (active > 0)
            active = tpu_many_poll(m, active);
    }
}

/* Pushes the outcome list of port pi, as tpu_probe_push would for a
 * probe of that port alone: { state, address, ... }. */
static void tpu_many_push(lua_State *L, const struct tpu_many *m, int pi)
{
    const struct tpu_job *job = &m->job[pi * m->naddrs];
    int a, k = 0;
    lua_createtable(L, m->open[pi] ? 2 : 2 * m->naddrs, 0);
    for (a = 0; a < m->naddrs; a++) {
        struct tpu_target t;
        if (job[a].state == SLOT_UNTRIED || (m->open[pi] && job[a].state != SLOT_OPEN))
            continue;
        tpu_push_state(L, job[a].state, job[a].err);
        lua_rawseti(L, -2, ++k);
        t = m->targets[a];
        tpu_push_address(L, &t);
        lua_rawseti(L, -2, ++k);
        if (job[a].state == SLOT_OPEN)
            break;
    }
}

/***
 * many(host, ports [, timeout_ms [, close [, max_inflight]]]): a connect
 * probe of every port in the list, up to max_inflight (default 1024, and
 * never more than the open-file limit leaves room for) at once, each
 * bounded by timeout_ms; blocks until all have answered. host nil means
 * 127.0.0.1 and ::1. Returns { [port] = { state, address, ... } }, the
 * outcomes of each port as connect returns them, or nil, code when host
 * does not resolve.
 */
static int l_many(lua_State *L)
{
    struct tpu_target targets[TPU_MAX_ADDRS];
    struct tpu_many m;
    const char *host = tpu_opt_host(L, 1);
    double timeout;
    size_t nports;
    int max_inflight;
    int i, rc, err, result, *ports;

    luaL_checktype(L, 2, LUA_TTABLE);
    timeout = tpu_check_ms(L, 3, 1000);
    m.reset = tpu_check_reset(L, 4);
    max_inflight = tpu_check_count(L, 5, TPU_MANY_INFLIGHT, "max_inflight must be an integer >= 1");
    nports = tpu_rawlen(L, 2);
    /* checked before the cast: a length beyond int must not wrap into range */
    luaL_argcheck(L, nports >= 1 && nports <= 1 << 20, 2,
                  "ports must be a list of 1 to 1048576 ports");
    m.nports = (int)nports;
    ports = (int *)lua_newuserdata(L, (size_t)m.nports * sizeof *ports);
    for (i = 0; i < m.nports; i++) {
        lua_Number n;
        lua_rawgeti(L, 2, i + 1);
        n = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || !(n >= 1 && n <= 65535) || n != floor(n))
            luaL_argerror(L, 2, "ports must be integers in 1..65535");
        ports[i] = (int)n;
        lua_pop(L, 1);
    }
    m.ports = ports;

    m.naddrs = tpu_resolve(host, 0, 0, targets, &rc, &err);
    if (m.naddrs == 0)
        return tpu_push_resolve_error(L, rc, err);
    m.targets = targets;
    m.njobs = m.nports * m.naddrs;
    m.limit = tpu_fd_room(max_inflight < m.njobs ? max_inflight : m.njobs);
    m.job = (struct tpu_job *)lua_newuserdata(L, (size_t)m.njobs * sizeof *m.job);
    m.open = (unsigned char *)lua_newuserdata(L, (size_t)m.nports);
    memset(m.open, 0, (size_t)m.nports);
    m.win = (struct tpu_slot *)lua_newuserdata(L, (size_t)m.limit * sizeof *m.win);
    m.win_job = (int *)lua_newuserdata(L, (size_t)m.limit * sizeof *m.win_job);
    m.win_due = (double *)lua_newuserdata(L, (size_t)m.limit * sizeof *m.win_due);
    m.pfd = (struct pollfd *)lua_newuserdata(L, (size_t)m.limit * sizeof *m.pfd);
    lua_createtable(L, 0, m.nports);
    result = lua_gettop(L);

    tpu_many_run(&m, timeout);

    for (i = 0; i < m.nports; i++) {
        tpu_many_push(L, &m, i);
        lua_rawseti(L, result, ports[i]);
    }
    return 1;
}

static const luaL_Reg tpu_many_functions[] = {
    { "many", l_many },
    { NULL, NULL }
};
