/* The sockets a process tree holds (Linux): the processes (a pid and its
 * descendants, from /proc), whether the first has exited, and the
 * listening TCP and bound UDP sockets among their descriptors.
 *
 * A socket's address is read from the socket itself: pidfd_getfd lends
 * this process a duplicate of the holder's descriptor for the few calls
 * that read its name and state (getsockname, SO_ACCEPTCONN), which costs
 * a few microseconds per socket whatever the number of sockets on the
 * machine. Where the kernel refuses the duplicate (another user's
 * process, a kernel before 5.6), the socket is reported by inode only and
 * lua/tcp_port_used/procs.lua finds it in the kernel's socket tables. */

#ifdef TPU_LINUX

/* Pids in C memory while /proc directories are open. */
struct tpu_pids {
    long *v;
    size_t n, cap;
    int err;
};

static void tpu_pids_add(struct tpu_pids *p, long pid)
{
    if (p->err != 0)
        return;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        long *v = (long *)realloc(p->v, cap * sizeof *v);
        if (v == NULL) {
            p->err = ENOMEM;
            return;
        }
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = pid;
}

static int tpu_pids_gc(lua_State *L)
{
    struct tpu_pids *p = (struct tpu_pids *)lua_touserdata(L, 1);
    free(p->v);
    p->v = NULL;
    return 0;
}

static struct tpu_pids *tpu_new_pids(lua_State *L)
{
    struct tpu_pids *p = (struct tpu_pids *)lua_newuserdata(L, sizeof *p);
    memset(p, 0, sizeof *p);
    if (luaL_newmetatable(L, "tcp_port_used.pids")) {
        lua_pushcfunction(L, tpu_pids_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return p;
}

/* Reads /proc/<pid>/stat: the state letter, the parent, and the exit
 * status (waitpid's encoding; the kernel shows 0 to a reader that may not
 * inspect the process). 0, ESRCH (no such process) or errno. */
static int tpu_proc_stat(long pid, char *state, long *ppid, int *exit_code)
{
    char path[64], buf[1024];
    const char *p;
    ssize_t n;
    int field;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    n = tpu_proc_slurp(path, buf, sizeof buf - 1);
    if (n < 0)
        return errno == ENOENT ? ESRCH : errno;
    buf[n] = '\0';
    /* the command (field 2) may hold spaces and parentheses: fields 3 on
     * follow its last ')' */
    p = strrchr(buf, ')');
    if (p == NULL || sscanf(p + 1, " %c %ld", state, ppid) != 2)
        return EBADMSG;
    *exit_code = 0;
    for (field = 2; *p != '\0'; p++) {
        if (*p == ' ' && ++field == 52) {
            *exit_code = (int)strtol(p + 1, NULL, 10);
            break;
        }
    }
    return 0;
}

/* Appends the children of pid: from /proc/<pid>/task/<tid>/children where
 * the kernel has them (CONFIG_PROC_CHILDREN), else 1 in *unsupported. */
static void tpu_children_files(long pid, struct tpu_pids *out, int *unsupported)
{
    char path[96];
    DIR *tasks;
    struct dirent *e;
    snprintf(path, sizeof path, "/proc/%ld/task", pid);
    if ((tasks = opendir(path)) == NULL)
        return;
    while (out->err == 0 && (e = readdir(tasks)) != NULL) {
        FILE *f;
        long child;
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%ld/task/%.20s/children", pid, e->d_name);
        if ((f = fopen(path, "re")) == NULL) {
            if (errno == ENOENT)
                *unsupported = 1;
            break;
        }
        while (fscanf(f, "%ld", &child) == 1)
            tpu_pids_add(out, child);
        fclose(f);
    }
    closedir(tasks);
}

/* Appends the descendants of out->v[0] by the parent of every process in
 * /proc: one pass collects (pid, parent) pairs, then each found process
 * adds its children. */
static int tpu_descendants_scan(struct tpu_pids *out, struct tpu_pids *pairs)
{
    DIR *proc = opendir("/proc");
    struct dirent *e;
    size_t i, k;
    if (proc == NULL)
        return errno;
    while (pairs->err == 0 && (e = readdir(proc)) != NULL) {
        long pid, ppid;
        char state;
        int code;
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        pid = strtol(e->d_name, NULL, 10);
        if (tpu_proc_stat(pid, &state, &ppid, &code) != 0)
            continue;
        tpu_pids_add(pairs, pid);
        tpu_pids_add(pairs, ppid);
    }
    closedir(proc);
    if (pairs->err != 0)
        return pairs->err;
    for (i = 0; i < out->n && out->err == 0; i++)
        for (k = 0; k + 1 < pairs->n; k += 2)
            if (pairs->v[k + 1] == out->v[i] && pairs->v[k] != out->v[i])
                tpu_pids_add(out, pairs->v[k]);
    return out->err;
}

/***
 * proc_tree(pid [, tree]): pid and, with tree, every descendant of it
 * (children first), as a list of pids; nil, "ESRCH" when pid does not
 * exist or has exited (a zombie holds no descriptors), nil, code on
 * failure.
 */
static int l_proc_tree(lua_State *L)
{
    lua_Integer pid = luaL_checkinteger(L, 1);
    int tree = lua_toboolean(L, 2), rc, code, unsupported = 0;
    struct tpu_pids *out, *pairs;
    long ppid;
    char state;
    size_t i;
    luaL_argcheck(L, pid >= 1 && pid <= INT_MAX, 1, "pid must be a positive integer");
    out = tpu_new_pids(L);
    pairs = tpu_new_pids(L);
    rc = tpu_proc_stat((long)pid, &state, &ppid, &code);
    if (rc == 0 && (state == 'Z' || state == 'X'))
        rc = ESRCH;
    tpu_pids_add(out, (long)pid);
    if (rc == 0 && tree) {
        for (i = 0; i < out->n && out->err == 0 && !unsupported; i++)
            tpu_children_files(out->v[i], out, &unsupported);
        if (unsupported) {
            out->n = 1;
            rc = tpu_descendants_scan(out, pairs);
        }
    }
    if (rc == 0)
        rc = out->err;
    if (rc != 0) {
        lua_pushnil(L);
        tpu_push_code(L, rc);
        return 2;
    }
    lua_createtable(L, (int)out->n, 0);
    for (i = 0; i < out->n; i++) {
        lua_pushinteger(L, out->v[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

/***
 * proc_state(pid): "running"; "exited", exit code or false, signal or
 * false (either false where this process cannot know); or "gone" (no
 * such process: it exited and was reaped, or never was). A child of this
 * process is asked with waitid(WNOWAIT), which leaves it for its owner
 * to reap; any other process is read from /proc while it is a zombie.
 */
static int l_proc_state(lua_State *L)
{
    lua_Integer pid = luaL_checkinteger(L, 1);
    siginfo_t info;
    long ppid;
    char state;
    int code = 0, rc;
    luaL_argcheck(L, pid >= 1 && pid <= INT_MAX, 1, "pid must be a positive integer");
    memset(&info, 0, sizeof info);
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0) {
        if (info.si_pid == 0) {
            lua_pushliteral(L, "running");
            return 1;
        }
        lua_pushliteral(L, "exited");
        if (info.si_code == CLD_EXITED) {
            lua_pushinteger(L, info.si_status);
            lua_pushboolean(L, 0);
        } else {
            lua_pushboolean(L, 0);
            lua_pushinteger(L, info.si_status);
        }
        return 3;
    }
    rc = tpu_proc_stat((long)pid, &state, &ppid, &code);
    if (rc == ESRCH) {
        lua_pushliteral(L, "gone");
        return 1;
    }
    if (rc != 0 || (state != 'Z' && state != 'X')) {
        lua_pushliteral(L, "running");
        return 1;
    }
    lua_pushliteral(L, "exited");
    /* the kernel writes 0 for a reader it will not show the status to */
    if (code == 0 && getuid() != 0) {
        lua_pushboolean(L, 0);
        lua_pushboolean(L, 0);
    } else if (WIFSIGNALED(code)) {
        lua_pushboolean(L, 0);
        lua_pushinteger(L, WTERMSIG(code));
    } else {
        lua_pushinteger(L, WEXITSTATUS(code));
        lua_pushboolean(L, 0);
    }
    return 3;
}

/* One socket of the tree: its address when it could be read (known), or
 * only its inode. */
struct tpu_psock {
    long pid;
    unsigned long inode;
    int known, proto;
    size_t cmd;
    struct tpu_listener l;
};

struct tpu_psocks {
    struct tpu_psock *v;
    size_t n, cap;
    struct tpu_holders names; /* the pool of command lines (owner.c) */
    int denied;
};

static int tpu_psocks_gc(lua_State *L)
{
    struct tpu_psocks *s = (struct tpu_psocks *)lua_touserdata(L, 1);
    free(s->v);
    free(s->names.pool);
    s->v = NULL;
    s->names.pool = NULL;
    return 0;
}

static struct tpu_psocks *tpu_new_psocks(lua_State *L)
{
    struct tpu_psocks *s = (struct tpu_psocks *)lua_newuserdata(L, sizeof *s);
    memset(s, 0, sizeof *s);
    if (luaL_newmetatable(L, "tcp_port_used.psocks")) {
        lua_pushcfunction(L, tpu_psocks_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return s;
}

static void tpu_psocks_add(struct tpu_psocks *s, const struct tpu_psock *e)
{
    if (s->names.err != 0)
        return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        struct tpu_psock *v = (struct tpu_psock *)realloc(s->v, cap * sizeof *v);
        if (v == NULL) {
            s->names.err = ENOMEM;
            return;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = *e;
}

#define TPU_ANY 2

/* Reads the name and state of socket fd (ours, a duplicate): 1 when it
 * listens (TCP) or is bound and unconnected (UDP) with a protocol in
 * want, its address in *e; 0 otherwise. */
static int tpu_psock_inspect(int fd, int want, struct tpu_psock *e)
{
    struct sockaddr_storage sa, peer;
    socklen_t len = sizeof sa, plen = sizeof peer, olen;
    int protocol = 0, accepting = 0, proto;
    /* an accepting socket of an inet family (checked below) is a TCP
     * listener: the one call tells, whatever else the process holds */
    olen = sizeof accepting;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &olen) != 0)
        return 0;
    if (accepting) {
        proto = TPU_TCP;
    } else if (want == TPU_TCP) {
        return 0;
    } else if ((olen = sizeof protocol,
                getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &olen) == 0)
               && protocol == IPPROTO_UDP) {
        /* a connected UDP socket hears only its peer: a client's */
        if (getpeername(fd, (struct sockaddr *)&peer, &plen) == 0)
            return 0;
        proto = TPU_UDP;
    } else {
        return 0;
    }
    /* the protocol numbers of other families (netlink's) mean other things */
    if ((want != TPU_ANY && want != proto) || getsockname(fd, (struct sockaddr *)&sa, &len) != 0
        || (sa.ss_family != AF_INET && sa.ss_family != AF_INET6))
        return 0;
    e->proto = proto;
    e->l.family = sa.ss_family;
    if (sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&sa;
        memcpy(e->l.addr, &s6->sin6_addr, 16);
        e->l.port = ntohs(s6->sin6_port);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&sa;
        memcpy(e->l.addr, &s4->sin_addr, 4);
        e->l.port = ntohs(s4->sin_port);
    }
    /* an unbound UDP socket (port 0) receives nothing */
    return e->l.port != 0;
}

/* Adds the sockets among the descriptors of pid. 0, or errno for a
 * process whose descriptors may not be read (EACCES) or that is gone
 * (ENOENT). */
static int tpu_psocks_of(long pid, int want, int lend, struct tpu_psocks *s)
{
    char path[64], name[24];
    DIR *fds;
    struct dirent *d;
    int pidfd = -1, dirn, have_cmd = 0;
    size_t cmd = 0;
    snprintf(name, sizeof name, "%ld", pid);
    snprintf(path, sizeof path, "/proc/%ld/fd", pid);
    if ((fds = opendir(path)) == NULL)
        return errno;
    dirn = dirfd(fds);
    while (s->names.err == 0 && (d = readdir(fds)) != NULL) {
        char link[64];
        struct tpu_psock e;
        ssize_t n;
        if (d->d_name[0] == '.')
            continue;
        n = readlinkat(dirn, d->d_name, link, sizeof link - 1);
        if (n <= 0)
            continue;
        link[n] = '\0';
        memset(&e, 0, sizeof e);
        if (sscanf(link, "socket:[%lu]", &e.inode) != 1)
            continue;
        e.pid = pid;
#ifdef TPU_PIDFD
        if (pidfd == -1 && (!lend || (pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0)) < 0))
            pidfd = -2;
        if (pidfd >= 0) {
            int fd = (int)syscall(SYS_pidfd_getfd, pidfd, (int)strtol(d->d_name, NULL, 10), 0);
            if (fd >= 0) {
                int hit = tpu_psock_inspect(fd, want, &e);
                close(fd);
                if (!hit)
                    continue;
                e.known = 1;
            }
        }
#else
        (void)want;
        (void)lend;
#endif
        if (!have_cmd) {
            tpu_holders_command(&s->names, name, &cmd);
            have_cmd = 1;
        }
        e.cmd = cmd;
        tpu_psocks_add(s, &e);
    }
    if (pidfd >= 0)
        close(pidfd);
    closedir(fds);
    return 0;
}

/***
 * proc_sockets(pids [, proto [, by_inode]]): the sockets held by the processes in the
 * list pids, for proto "tcp" (listening, the default), "udp" (bound, not
 * connected) or "any", as a list of { pid, command, inode, proto, family,
 * address, port }; where this process may not read a socket's name, an
 * entry with pid, command and inode only. Also the list of pids whose
 * descriptors may not be read. nil, code on failure. by_inode: every
 * socket by inode only, as where the kernel refuses to lend them (specs).
 */
static int l_proc_sockets(lua_State *L)
{
    static const char *const protos[] = { "tcp", "udp", "any", NULL };
    int want, lend, i, n, ndenied = 0;
    struct tpu_psocks *s;
    size_t k;
    luaL_checktype(L, 1, LUA_TTABLE);
    want = luaL_checkoption(L, 2, "tcp", protos);
    lend = !lua_toboolean(L, 3);
    n = (int)tpu_rawlen(L, 1);
    s = tpu_new_psocks(L);
    lua_newtable(L); /* the denied pids */
    for (i = 1; i <= n && s->names.err == 0; i++) {
        lua_Integer pid;
        int rc;
        lua_rawgeti(L, 1, i);
        pid = lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (pid < 1 || pid > INT_MAX)
            continue;
        rc = tpu_psocks_of((long)pid, want, lend, s);
        if (rc == EACCES || rc == EPERM) {
            lua_pushinteger(L, pid);
            lua_rawseti(L, -2, ++ndenied);
        }
    }
    if (s->names.err != 0) {
        lua_pushnil(L);
        tpu_push_code(L, s->names.err);
        return 2;
    }
    lua_createtable(L, (int)s->n, 0);
    for (k = 0; k < s->n; k++) {
        const struct tpu_psock *e = &s->v[k];
        lua_createtable(L, 0, 7);
        lua_pushinteger(L, e->pid);
        lua_setfield(L, -2, "pid");
        lua_pushstring(L, s->names.pool + e->cmd);
        lua_setfield(L, -2, "command");
        lua_pushinteger(L, (lua_Integer)e->inode);
        lua_setfield(L, -2, "inode");
        if (e->known) {
            char ip[INET6_ADDRSTRLEN];
            if (inet_ntop(e->l.family, e->l.addr, ip, sizeof ip) == NULL)
                strcpy(ip, "?");
            lua_pushstring(L, e->proto == TPU_UDP ? "udp" : "tcp");
            lua_setfield(L, -2, "proto");
            lua_pushstring(L, e->l.family == AF_INET6 ? "inet6" : "inet");
            lua_setfield(L, -2, "family");
            lua_pushstring(L, ip);
            lua_setfield(L, -2, "address");
            lua_pushinteger(L, e->l.port);
            lua_setfield(L, -2, "port");
        }
        lua_rawseti(L, -2, (int)k + 1);
    }
    lua_insert(L, -2);
    return 2;
}

#else /* the sockets of a process need Linux */

#define l_proc_tree tpu_listen_unsupported
#define l_proc_state tpu_listen_unsupported
#define l_proc_sockets tpu_listen_unsupported

#endif

static const luaL_Reg tpu_procs_functions[] = {
    { "proc_tree", l_proc_tree },
    { "proc_state", l_proc_state },
    { "proc_sockets", l_proc_sockets },
    { NULL, NULL }
};
