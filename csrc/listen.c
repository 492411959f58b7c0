/* The Lua functions of listen mode and owner: whether a socket listens on
 * a port of this machine (TCP: in LISTEN; UDP: bound and not connected),
 * and who holds it, asked of the kernel (diag.c,
 * procnet.c, owner.c) so that no connection reaches the server. Which
 * backend answers is chosen in lua/tcp_port_used/listen.lua. Where the
 * platform has neither (not Linux), each answers nil, "ENOTSUP". */

/***
 * local_addresses(host): the addresses of host (nil: both loopbacks), each
 * as a pair: true (an address of this machine) or the code that says why
 * not (EADDRNOTAVAIL: not local), and the address literal. nil, code when
 * host does not resolve.
 */
static int l_local_addresses(lua_State *L)
{
    struct tpu_target t[TPU_MAX_ADDRS];
    const char *host = tpu_opt_host(L, 1);
    int i, rc, err, n;
    tpu_outcome_room(L);
    n = tpu_resolve(host, 0, 0, t, &rc, &err);
    if (n == 0)
        return tpu_push_resolve_error(L, rc, err);
    for (i = 0; i < n; i++) {
        err = host == NULL ? 0 : tpu_is_local(&t[i]);
        if (err == 0)
            lua_pushboolean(L, 1);
        else
            tpu_push_code(L, err);
        tpu_push_address(L, &t[i]);
    }
    return 2 * n;
}

/***
 * user_name(uid): the name of the user uid from the system's user
 * database (getpwuid_r: /etc/passwd, or NSS), or nil where it has none.
 * May block while NSS asks a directory service.
 */
static int l_user_name(lua_State *L)
{
    lua_Number n = luaL_checknumber(L, 1);
    struct passwd pw, *found = NULL;
    char buf[4096];
    if (n < 0 || n > 4294967295.0 || n != floor(n))
        return luaL_argerror(L, 1, "uid must be an integer in 0..4294967295");
    /* a record longer than buf (ERANGE) is as good as none for a message */
    if (getpwuid_r((uid_t)n, &pw, buf, sizeof buf, &found) != 0 || found == NULL)
        return 0;
    lua_pushstring(L, pw.pw_name);
    return 1;
}

#ifdef TPU_LINUX

/* C memory that a Lua error must not leak: the list lives in a userdata
 * made before any descriptor is opened, and its __gc frees what it grew. */
static int tpu_listeners_gc(lua_State *L)
{
    tpu_listeners_free((struct tpu_listeners *)lua_touserdata(L, 1));
    return 0;
}

static struct tpu_listeners *tpu_new_listeners(lua_State *L)
{
    struct tpu_listeners *ls = (struct tpu_listeners *)lua_newuserdata(L, sizeof *ls);
    memset(ls, 0, sizeof *ls);
    if (luaL_newmetatable(L, "tcp_port_used.listeners")) {
        lua_pushcfunction(L, tpu_listeners_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return ls;
}

static int tpu_holders_gc(lua_State *L)
{
    struct tpu_holders *h = (struct tpu_holders *)lua_touserdata(L, 1);
    free(h->v);
    free(h->pool);
    h->v = NULL;
    h->pool = NULL;
    return 0;
}

static struct tpu_holders *tpu_new_holders(lua_State *L)
{
    struct tpu_holders *h = (struct tpu_holders *)lua_newuserdata(L, sizeof *h);
    memset(h, 0, sizeof *h);
    if (luaL_newmetatable(L, "tcp_port_used.holders")) {
        lua_pushcfunction(L, tpu_holders_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return h;
}

/* Pushes the list of listeners as { family, address, port, uid, inode,
 * v6only, queue, backlog } tables (v6only, queue and backlog absent where
 * the backend cannot tell or the socket has none). */
static void tpu_push_listeners(lua_State *L, const struct tpu_listeners *ls)
{
    size_t i;
    lua_createtable(L, (int)ls->n, 0);
    for (i = 0; i < ls->n; i++) {
        const struct tpu_listener *l = &ls->v[i];
        char ip[INET6_ADDRSTRLEN];
        if (inet_ntop(l->family, l->addr, ip, sizeof ip) == NULL)
            strcpy(ip, "?");
        lua_createtable(L, 0, 6);
        lua_pushstring(L, l->family == AF_INET6 ? "inet6" : "inet");
        lua_setfield(L, -2, "family");
        lua_pushstring(L, ip);
        lua_setfield(L, -2, "address");
        lua_pushinteger(L, l->port);
        lua_setfield(L, -2, "port");
        if (l->v6only >= 0) {
            lua_pushboolean(L, l->v6only);
            lua_setfield(L, -2, "v6only");
        }
        lua_pushinteger(L, (lua_Integer)l->uid);
        lua_setfield(L, -2, "uid");
        lua_pushinteger(L, (lua_Integer)l->inode);
        lua_setfield(L, -2, "inode");
        if (l->queue >= 0) {
            lua_pushinteger(L, (lua_Integer)l->queue);
            lua_setfield(L, -2, "queue");
        }
        if (l->backlog >= 0) {
            lua_pushinteger(L, (lua_Integer)l->backlog);
            lua_setfield(L, -2, "backlog");
        }
        lua_rawseti(L, -2, (int)i + 1);
    }
}

/* The netlink socket of one Lua state: opened at the first query that
 * needs it, kept for the next ones (a socket per query cost a third of a
 * listen-mode check), closed by the __gc of the userdata that holds it,
 * an upvalue of the queries below (no file-scope state: two Lua
 * states never share it). */
struct tpu_diag_sock {
    int fd;
    pid_t pid; /* the process that opened fd */
};

static int tpu_diag_sock_gc(lua_State *L)
{
    struct tpu_diag_sock *d = (struct tpu_diag_sock *)lua_touserdata(L, 1);
    if (d->fd >= 0)
        close(d->fd);
    d->fd = -1;
    return 0;
}

/* The state's socket: 0 with *fd set, or errno. A child of fork() (an
 * nginx worker after init_by_lua) opens its own: parent and child would
 * read each other's replies from a shared one. */
static int tpu_diag_sock_get(lua_State *L, int *fd)
{
    struct tpu_diag_sock *d = (struct tpu_diag_sock *)lua_touserdata(L, lua_upvalueindex(1));
    pid_t pid = getpid();
    if (d->fd >= 0 && d->pid != pid) {
        close(d->fd);
        d->fd = -1;
    }
    if (d->fd < 0) {
        int rc = tpu_diag_open(&d->fd);
        if (rc != 0)
            return rc;
        d->pid = pid;
    }
    *fd = d->fd;
    return 0;
}

/* After a failed query (a timeout, a malformed or interrupted reply) the
 * socket may still hold part of a reply: the next query opens a fresh
 * one. Answers ENOENT ("no such socket") leave nothing behind. */
static void tpu_diag_sock_failed(lua_State *L, int rc)
{
    struct tpu_diag_sock *d = (struct tpu_diag_sock *)lua_touserdata(L, lua_upvalueindex(1));
    if (rc != 0 && rc != ENOENT && d->fd >= 0) {
        close(d->fd);
        d->fd = -1;
    }
}

/***
 * diag_check([proto]): whether exact NETLINK_SOCK_DIAG lookups of proto
 * ("tcp", default, or "udp") work here (one of our own listeners is
 * found): true, or nil, code (EPERM, EACCES, EPROTONOSUPPORT where
 * netlink is refused; EOPNOTSUPP for a kernel without tcp_diag or
 * udp_diag). Opens and closes a listener of its own.
 */
static int l_diag_check(lua_State *L)
{
    int rc = tpu_diag_verify(tpu_check_proto(L, 1));
    if (rc == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    tpu_push_code(L, rc);
    return 2;
}

/***
 * listen_exact(host, port [, proto]): whether a connection (TCP, the
 * default) or a datagram (proto "udp") to host:port (host nil: 127.0.0.1
 * and ::1) would reach a listening socket, by an exact lookup per
 * address. Returns state, address pairs, state true (a listener),
 * false (none) or a code (EADDRNOTAVAIL: not an address of this
 * machine), stopping at the first address with a listener; nil, code when
 * host does not resolve.
 */
static int l_listen_exact(lua_State *L)
{
    struct tpu_target t[TPU_MAX_ADDRS];
    int state[TPU_MAX_ADDRS], code[TPU_MAX_ADDRS];
    const char *host = tpu_opt_host(L, 1);
    int port = tpu_check_port(L, 2);
    int proto = tpu_check_proto(L, 3);
    int i, k, rc, err, fd = -1, n;
    tpu_outcome_room(L);
    n = tpu_resolve(host, port, 0, t, &rc, &err);
    if (n == 0)
        return tpu_push_resolve_error(L, rc, err);
    for (i = 0; i < n; i++) {
        int found = 0;
        state[i] = 0;
        code[i] = host == NULL ? 0 : tpu_is_local(&t[i]);
        if (code[i] == 0 && fd < 0)
            code[i] = tpu_diag_sock_get(L, &fd);
        if (code[i] == 0) {
            code[i] = tpu_diag_exact(fd, &t[i], proto, &found);
            if (code[i] != 0) {
                tpu_diag_sock_failed(L, code[i]);
                fd = -1;
            }
        }
        state[i] = found;
        if (found) {
            n = i + 1;
            break;
        }
    }
    for (i = 0, k = 0; i < n; i++, k += 2) {
        if (code[i] != 0)
            tpu_push_code(L, code[i]);
        else
            lua_pushboolean(L, state[i]);
        tpu_push_address(L, &t[i]);
    }
    return k;
}

/***
 * listen_sockets(host, port [, proto]): the listening sockets of proto
 * that a connection (TCP, default) or a datagram (UDP) to each address of
 * host (nil: 127.0.0.1 and ::1; every address must be this machine's)
 * would reach, by an exact NETLINK_SOCK_DIAG lookup per address: a list
 * as listeners gives, one entry per address that has one (a dual-stack
 * listener may appear twice). nil, code on failure.
 */
static int l_listen_sockets(lua_State *L)
{
    struct tpu_target t[TPU_MAX_ADDRS];
    const char *host = tpu_opt_host(L, 1);
    int port = tpu_check_port(L, 2);
    int proto = tpu_check_proto(L, 3);
    struct tpu_listeners *ls;
    int i, rc, err, fd = -1, n;
    n = tpu_resolve(host, port, 0, t, &rc, &err);
    if (n == 0)
        return tpu_push_resolve_error(L, rc, err);
    ls = tpu_new_listeners(L);
    rc = tpu_diag_sock_get(L, &fd);
    for (i = 0; i < n && rc == 0; i++)
        rc = tpu_diag_exact_into(fd, &t[i], proto, ls);
    if (fd >= 0)
        tpu_diag_sock_failed(L, rc);
    if (rc != 0) {
        lua_pushnil(L);
        tpu_push_code(L, rc);
        return 2;
    }
    tpu_push_listeners(L, ls);
    return 1;
}

/***
 * listeners(lo, hi [, backend [, proto]]): every listening socket of
 * proto ("tcp", default, or "udp") of this machine (network namespace)
 * with lo <= port <= hi, as a list of { family, address, port, uid,
 * inode, v6only }. backend "netlink" (default: one kernel-filtered dump
 * per family) or "proc" (/proc/net/tcp and tcp6, or udp and udp6). nil,
 * code on failure; never a partial list.
 */
static int l_listeners(lua_State *L)
{
    static const char *const backends[] = { "netlink", "proc", NULL };
    int lo = tpu_check_port(L, 1), hi = tpu_check_port(L, 2);
    int proc = luaL_checkoption(L, 3, "netlink", backends) == 1;
    int proto = tpu_check_proto(L, 4);
    struct tpu_listeners *ls;
    int rc, fd = -1;
    if (hi < lo)
        luaL_argerror(L, 2, "hi must not be below lo");
    ls = tpu_new_listeners(L);
    if (proc) {
        rc = tpu_proc_listeners(lo, hi, proto, ls);
    } else {
        rc = tpu_diag_sock_get(L, &fd);
        if (rc == 0)
            rc = tpu_diag_dump(fd, AF_INET, lo, hi, proto, ls);
        if (rc == 0)
            rc = tpu_diag_dump(fd, AF_INET6, lo, hi, proto, ls);
        if (fd >= 0)
            tpu_diag_sock_failed(L, rc);
    }
    if (rc != 0) {
        lua_pushnil(L);
        tpu_push_code(L, rc);
        return 2;
    }
    tpu_push_listeners(L, ls);
    return 1;
}

/***
 * time_wait(port [, backend]): how many TCP sockets of this machine
 * (network namespace) are in TIME_WAIT with remote port port: the ends of
 * connections to it that closed first. backend "netlink" (default: one
 * kernel-filtered dump per family) or "proc". nil, code on failure.
 */
static int l_time_wait(lua_State *L)
{
    static const char *const backends[] = { "netlink", "proc", NULL };
    int port = tpu_check_port(L, 1);
    int proc = luaL_checkoption(L, 2, "netlink", backends) == 1;
    struct tpu_listeners *ls = tpu_new_listeners(L);
    int rc, fd = -1;
    if (proc) {
        rc = tpu_proc_time_wait(port, ls);
    } else {
        rc = tpu_diag_sock_get(L, &fd);
        if (rc == 0)
            rc = tpu_diag_time_wait(fd, AF_INET, port, ls);
        if (rc == 0)
            rc = tpu_diag_time_wait(fd, AF_INET6, port, ls);
        if (fd >= 0)
            tpu_diag_sock_failed(L, rc);
    }
    if (rc != 0) {
        lua_pushnil(L);
        tpu_push_code(L, rc);
        return 2;
    }
    lua_pushinteger(L, (lua_Integer)ls->n);
    return 1;
}

/***
 * listen_parse(reply, seq, dump [, proto]): runs the netlink reply parser
 * on bytes the caller built, so that specs and the fuzz harness can feed
 * it truncated, malformed and oversized replies. Returns the list of
 * listeners of proto (TCP: state LISTEN, UDP: state CLOSE) and "done" or
 * "more", or nil, code.
 */
static int l_listen_parse(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_Number seq = luaL_checknumber(L, 2);
    int dump = lua_toboolean(L, 3), rc;
    int state = tpu_diag_protos[tpu_check_proto(L, 4)].state;
    struct tpu_listeners *ls;
    unsigned char *copy;
    if (len > TPU_DIAG_BUF) {
        lua_pushnil(L);
        lua_pushliteral(L, "EMSGSIZE");
        return 2;
    }
    ls = tpu_new_listeners(L);
    /* an exact-size heap copy, so that a sanitizer sees any overread */
    copy = (unsigned char *)malloc(len ? len : 1);
    if (copy == NULL)
        return luaL_error(L, "out of memory");
    memcpy(copy, s, len);
    rc = tpu_diag_parse(copy, len, seq >= 0 && seq <= 4294967295.0 ? (unsigned)seq : 0, dump, state,
                        ls);
    free(copy);
    if (rc == TPU_DIAG_MORE || rc == TPU_DIAG_DONE) {
        tpu_push_listeners(L, ls);
        lua_pushstring(L, rc == TPU_DIAG_DONE ? "done" : "more");
        return 2;
    }
    lua_pushnil(L);
    tpu_push_code(L, rc);
    return 2;
}

/***
 * socket_holders(inodes): which processes hold the sockets whose inodes
 * are the keys of the table inodes, by reading /proc/<pid>/fd. Returns
 * { [inode] = { { pid =, command = }, ... } } and the number of processes
 * whose descriptors this one may not read; nil, code on failure.
 */
static int l_socket_holders(lua_State *L)
{
    struct tpu_holders *h;
    unsigned long *want;
    size_t nwant = 0, i;
    int rc, result;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        nwant++;
        lua_pop(L, 1);
    }
    want = (unsigned long *)lua_newuserdata(L, (nwant ? nwant : 1) * sizeof *want);
    nwant = 0;
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        lua_Number n = lua_type(L, -2) == LUA_TNUMBER ? lua_tonumber(L, -2) : -1;
        if (n >= 0 && n <= 4294967295.0)
            want[nwant++] = (unsigned long)n;
        lua_pop(L, 1);
    }
    qsort(want, nwant, sizeof *want, tpu_cmp_inode);
    h = tpu_new_holders(L);
    rc = tpu_find_holders(want, nwant, h);
    if (rc != 0) {
        lua_pushnil(L);
        tpu_push_code(L, rc);
        return 2;
    }
    lua_newtable(L);
    result = lua_gettop(L);
    for (i = 0; i < h->n; i++) {
        lua_pushinteger(L, (lua_Integer)h->v[i].inode);
        lua_rawget(L, result);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushinteger(L, (lua_Integer)h->v[i].inode);
            lua_pushvalue(L, -2);
            lua_rawset(L, result);
        }
        lua_createtable(L, 0, 2);
        lua_pushinteger(L, (lua_Integer)h->v[i].pid);
        lua_setfield(L, -2, "pid");
        lua_pushstring(L, h->pool + h->v[i].cmd);
        lua_setfield(L, -2, "command");
        lua_rawseti(L, -2, (int)tpu_rawlen(L, -2) + 1);
        lua_pop(L, 1);
    }
    lua_pushinteger(L, h->denied);
    return 2;
}

#else /* listen mode needs Linux */

static int tpu_listen_unsupported(lua_State *L)
{
    lua_pushnil(L);
    lua_pushliteral(L, "ENOTSUP");
    return 2;
}

#define l_diag_check tpu_listen_unsupported
#define l_listen_exact tpu_listen_unsupported
#define l_listeners tpu_listen_unsupported
#define l_listen_parse tpu_listen_unsupported
#define l_socket_holders tpu_listen_unsupported
#define l_time_wait tpu_listen_unsupported
#define l_listen_sockets tpu_listen_unsupported

#endif

static const luaL_Reg tpu_listen_functions[] = {
    { "local_addresses", l_local_addresses },
    { "diag_check", l_diag_check },
    { "listen_parse", l_listen_parse },
    { "socket_holders", l_socket_holders },
    { "user_name", l_user_name },
    { NULL, NULL }
};

/* The queries that share the state's netlink socket (its upvalue). */
static const luaL_Reg tpu_listen_query_functions[] = {
    { "listen_exact", l_listen_exact },
    { "listeners", l_listeners },
    { "listen_sockets", l_listen_sockets },
    { "time_wait", l_time_wait },
    { NULL, NULL }
};

static void tpu_listen_open(lua_State *L)
{
    luaL_setfuncs(L, tpu_listen_functions, 0);
#ifdef TPU_LINUX
    {
        struct tpu_diag_sock *d = (struct tpu_diag_sock *)lua_newuserdata(L, sizeof *d);
        d->fd = -1;
        d->pid = 0;
        if (luaL_newmetatable(L, "tcp_port_used.diag_socket")) {
            lua_pushcfunction(L, tpu_diag_sock_gc);
            lua_setfield(L, -2, "__gc");
        }
        lua_setmetatable(L, -2);
    }
    luaL_setfuncs(L, tpu_listen_query_functions, 1);
#else
    luaL_setfuncs(L, tpu_listen_query_functions, 0);
#endif
}
