/* Many connect probes at once (check_many), the kernel's pick of a free
 * port (find_free) and exec for the CLI. Included by core.c.
 *
 * check_many keeps a window of non-blocking connects in flight and refills
 * it as they answer. The window never holds more sockets than the
 * open-file limit leaves room for, so a long list is probed in waves
 * instead of failing with EMFILE. No Lua error can be raised while a
 * socket is open: every allocation happens before the first connect and
 * the results are pushed after the last close. */

#include <dirent.h>
#include <sys/resource.h>

/* Defined in core.c, after the files it includes. */
static const char *tpu_opt_host(lua_State *L, int arg);
static double tpu_check_ms(lua_State *L, int arg, double def);
static int tpu_check_close(lua_State *L, int arg);

#define TPU_MANY_INFLIGHT 1024
/* Descriptors left to the rest of the process (Lua's files, the host
 * program's own sockets) when the limit is what bounds the window: an
 * eighth of the limit, at most this many. */
#define TPU_MANY_HEADROOM 64
/* Tries before find_free gives up on a host with several addresses whose
 * other addresses keep holding the port the kernel picked on the first. */
#define TPU_PORT0_TRIES 16

struct tpu_job {
    int state;
    int err;
};

struct tpu_many {
    int nports, naddrs, njobs, limit, close_mode;
    const int *ports;
    const struct tpu_target *targets;
    struct tpu_job *job;       /* one per (port, address), port-major */
    unsigned char *open;       /* per port: an address accepted */
    struct tpu_slot *win;      /* the connects in flight, [0, active) */
    int *win_job;
    double *win_due;
    struct pollfd *pfd;
};

static void tpu_set_port(struct tpu_target *t, int port)
{
    if (t->sa.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&t->sa)->sin6_port = htons((unsigned short)port);
    else
        ((struct sockaddr_in *)&t->sa)->sin_port = htons((unsigned short)port);
}

/* Descriptors open in this process, or -1 where /proc is missing. */
static long tpu_fds_in_use(void)
{
    long n = 0;
    struct dirent *e;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

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
    used = tpu_fds_in_use();
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
    int i, k, rc, wait, poll_err = 0;

    for (i = 0; i < active; i++) {
        m->pfd[i].fd = m->win[i].fd;
        m->pfd[i].events = POLLOUT;
        m->pfd[i].revents = 0;
        if (m->win_due[i] < due)
            due = m->win_due[i];
    }
    wait = due <= now ? 0 : (int)(due - now + 0.999);
    rc = poll(m->pfd, (nfds_t)active, wait);
    if (rc < 0 && errno != EINTR)
        poll_err = errno;
    now = tpu_now_ms();
    for (i = 0; i < active; i++) {
        struct tpu_slot *s = &m->win[i];
        int j = m->win_job[i];
        if (poll_err != 0) {
            tpu_slot_finish(s, SLOT_FAILED, poll_err, m->close_mode);
        } else if (rc > 0 && m->pfd[i].revents != 0) {
            tpu_slot_settle(s, m->close_mode);
        } else if (m->open[j / m->naddrs]) {
            tpu_slot_finish(s, SLOT_UNTRIED, 0, m->close_mode);
        } else if (now >= m->win_due[i]) {
            tpu_slot_finish(s, SLOT_FAILED, ETIMEDOUT, m->close_mode);
        } else {
            continue;
        }
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
            tpu_slot_start(s, m->close_mode);
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

/* Sets results[port], errors[port] and codes[port] (tables at r, r+1,
 * r+2) from the jobs of port pi, as tpu_probe_verdict answers one port. */
static void tpu_many_verdict(lua_State *L, const struct tpu_many *m, int pi,
                             const char *host, int named, int r)
{
    char where[TPU_MAX_HOST + 64], addr[INET6_ADDRSTRLEN + 16];
    const struct tpu_job *job = &m->job[pi * m->naddrs];
    int a, port = m->ports[pi], failed = -1, refused = 0, open = 0;
    struct tpu_target t;

    for (a = 0; a < m->naddrs; a++) {
        if (job[a].state == SLOT_OPEN)
            open = 1;
        else if (job[a].state == SLOT_REFUSED)
            refused = 1;
        else if (job[a].state == SLOT_FAILED && failed < 0)
            failed = a;
    }
    if (open || (failed < 0 && refused)) {
        lua_pushboolean(L, open);
        lua_rawseti(L, r, port);
        lua_pushnil(L);
        lua_rawseti(L, r + 1, port);
        lua_pushnil(L);
        lua_rawseti(L, r + 2, port);
        return;
    }
    t = m->targets[failed < 0 ? 0 : failed];
    tpu_set_port(&t, port);
    tpu_format_addr(&t, addr, sizeof addr);
    if (named)
        snprintf(where, sizeof where, "%.255s:%d (%s)", host, port, addr);
    else
        snprintf(where, sizeof where, "%s", addr);
    if (failed >= 0) {
        lua_pushfstring(L, "connect %s: %s", where, tpu_errno_msg(job[failed].err));
        lua_pushstring(L, tpu_errno_name(job[failed].err));
    } else {
        lua_pushfstring(L, "connect %s: no address of a family this machine has", where);
        lua_pushliteral(L, "EAFNOSUPPORT");
    }
    lua_rawseti(L, r + 2, port);
    lua_rawseti(L, r + 1, port);
    lua_pushnil(L);
    lua_rawseti(L, r, port);
}

/***
 * many(host, ports [, timeout_ms [, close [, max_inflight]]]): a connect
 * probe of every port in the list, up to max_inflight (default 1024, and
 * never more than the open-file limit leaves room for) at once, each
 * bounded by timeout_ms. host nil means 127.0.0.1 and ::1.
 * Returns results, errors, codes: results[port] is true or false as
 * connect would answer; where the probe failed results[port] is nil and
 * errors[port], codes[port] hold the message and code. A host that does
 * not resolve returns nil, message, code.
 */
static int l_many(lua_State *L)
{
    struct tpu_target targets[TPU_MAX_ADDRS];
    struct tpu_many m;
    char name[TPU_MAX_HOST + 1];
    const char *host = tpu_opt_host(L, 1);
    double timeout;
    lua_Integer max_inflight;
    int i, rc, named = 0, *ports;

    name[0] = '\0';
    luaL_checktype(L, 2, LUA_TTABLE);
    timeout = tpu_check_ms(L, 3, 1000);
    m.close_mode = tpu_check_close(L, 4);
    max_inflight = luaL_optinteger(L, 5, TPU_MANY_INFLIGHT);
    luaL_argcheck(L, max_inflight >= 1, 5, "max_inflight must be at least 1");
    m.nports = (int)tpu_rawlen(L, 2);
    luaL_argcheck(L, m.nports >= 1 && m.nports <= 1 << 20, 2,
                  "ports must be a list of 1 to 1048576 ports");
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

    m.naddrs = tpu_resolve(host, 0, 0, targets, &rc);
    if (m.naddrs == 0)
        return tpu_push_gai_error(L, host, rc);
    if (host != NULL) {
        char a[INET6_ADDRSTRLEN];
        tpu_strip_brackets(host, name, sizeof name);
        named = inet_pton(AF_INET, name, a) != 1 && inet_pton(AF_INET6, name, a) != 1;
    }
    m.targets = targets;
    m.njobs = m.nports * m.naddrs;
    m.limit = tpu_fd_room(max_inflight < m.njobs ? (int)max_inflight : m.njobs);
    m.job = (struct tpu_job *)lua_newuserdata(L, (size_t)m.njobs * sizeof *m.job);
    m.open = (unsigned char *)lua_newuserdata(L, (size_t)m.nports);
    memset(m.open, 0, (size_t)m.nports);
    m.win = (struct tpu_slot *)lua_newuserdata(L, (size_t)m.limit * sizeof *m.win);
    m.win_job = (int *)lua_newuserdata(L, (size_t)m.limit * sizeof *m.win_job);
    m.win_due = (double *)lua_newuserdata(L, (size_t)m.limit * sizeof *m.win_due);
    m.pfd = (struct pollfd *)lua_newuserdata(L, (size_t)m.limit * sizeof *m.pfd);
    lua_createtable(L, 0, m.nports);
    lua_createtable(L, 0, 0);
    lua_createtable(L, 0, 0);

    tpu_many_run(&m, timeout);

    for (i = 0; i < m.nports; i++)
        tpu_many_verdict(L, &m, i, name, named, lua_gettop(L) - 2);
    return 3;
}

/* Binds fd to t; on success stores the port the kernel gave it. */
static int tpu_bind_get_port(int fd, struct tpu_target *t, int *port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (bind(fd, (struct sockaddr *)&t->sa, t->len) != 0
        || getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return errno;
    *port = ss.ss_family == AF_INET6
        ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
        : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

/***
 * bind_port0(host): a port the kernel considers free on host, found by
 * binding port 0 there (without SO_REUSEADDR, so nothing at all holds it)
 * and reading it back; the socket is closed before it returns. host nil
 * means every local address of both families (one dual-stack socket on
 * ::, or 0.0.0.0 without IPv6). Returns the port or nil, message, code.
 */
static int l_bind_port0(lua_State *L)
{
    struct tpu_target targets[TPU_MAX_ADDRS];
    char where[INET6_ADDRSTRLEN + 16];
    const char *host = tpu_opt_host(L, 1);
    int n, rc, try, zero = 0;

    if (host == NULL) {
        struct in_addr any4;
        any4.s_addr = htonl(INADDR_ANY);
        tpu_set_v6(&targets[0], &in6addr_any, 0);
        tpu_set_v4(&targets[1], &any4, 0);
        n = 1;
        if (!tpu_ipv6_available())
            targets[0] = targets[1];
    } else {
        n = tpu_resolve(host, 0, 1, targets, &rc);
        if (n == 0)
            return tpu_push_gai_error(L, host, rc);
    }
    for (try = 0; try < TPU_PORT0_TRIES; try++) {
        int i, err, port = 0, taken = 0;
        int fd = socket(targets[0].sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            tpu_format_addr(&targets[0], where, sizeof where);
            return tpu_push_errno(L, "bind", where, errno);
        }
        if (host == NULL && targets[0].sa.ss_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        err = tpu_bind_get_port(fd, &targets[0], &port);
        if (err != 0) {
            close(fd);
            tpu_format_addr(&targets[0], where, sizeof where);
            return tpu_push_errno(L, "bind", where, err);
        }
        /* The other addresses of a name must be free on that port too;
         * fd still holds the first so the kernel cannot hand it out. */
        for (i = 1; i < n && !taken; i++) {
            tpu_set_port(&targets[i], port);
            rc = tpu_bind_one(&targets[i], &err);
            if (rc == BIND_USED)
                taken = 1;
            else if (rc == BIND_FAILED) {
                close(fd);
                tpu_format_addr(&targets[i], where, sizeof where);
                return tpu_push_errno(L, "bind", where, err);
            }
        }
        close(fd);
        if (!taken) {
            lua_pushinteger(L, port);
            return 1;
        }
    }
    lua_pushnil(L);
    lua_pushfstring(L, "bind %s: no port free on every address after %d tries",
                    host, TPU_PORT0_TRIES);
    lua_pushliteral(L, "EADDRINUSE");
    return 3;
}

/***
 * exec(argv): replaces the process with argv[1] (searched in PATH), given
 * argv as its arguments; the CLI's `-- command args`. Returns only on
 * failure: nil, message, code.
 */
static int l_exec(lua_State *L)
{
    const char **argv;
    int i, n, err;
    luaL_checktype(L, 1, LUA_TTABLE);
    n = (int)tpu_rawlen(L, 1);
    luaL_argcheck(L, n >= 1, 1, "argv must be a non-empty list of strings");
    argv = (const char **)lua_newuserdata(L, (size_t)(n + 1) * sizeof *argv);
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, 1, i + 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_argerror(L, 1, "argv must be a non-empty list of strings");
        /* the table keeps the string alive after the pop */
        argv[i] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    argv[n] = NULL;
    execvp(argv[0], (char *const *)argv);
    err = errno;
    lua_pushnil(L);
    lua_pushfstring(L, "exec %s: %s", argv[0], strerror(err));
    lua_pushstring(L, tpu_errno_name(err));
    return 3;
}

static const luaL_Reg tpu_many_functions[] = {
    { "many", l_many },
    { "bind_port0", l_bind_port0 },
    { "exec", l_exec },
    { NULL, NULL }
};
