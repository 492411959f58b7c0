/* Listen mode: asking the kernel (NETLINK_SOCK_DIAG) whether a socket
 * listens on a port, and who holds it. Included by core.c.
 *
 * One port: an exact inet_diag lookup per address. The kernel answers it
 * with the same lookup an incoming SYN gets (established sockets first,
 * then the listener for daddr:dport, wildcards and dual-stack [::]
 * included), so the answer is "would a connection reach a listener", it
 * sends no packet, and its cost does not depend on how many sockets the
 * machine has. Many ports, or any local address ("*"): one dump per family
 * of the listening sockets only, filtered in the kernel by a bytecode range
 * on the source port. Where netlink is refused, /proc/net/tcp and tcp6
 * give the same list, slowly; the Lua side picks the backend. */

/* Defined in core.c, after the included files. */
static const char *tpu_opt_host(lua_State *L, int arg);
static int tpu_check_port(lua_State *L, int arg);

#ifdef __linux__

#include <dirent.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>

#define TPU_TCP_LISTEN 10
/* The kernel never builds a dump datagram larger than this (netlink caps
 * its dump allocation at 32 KiB); anything larger is refused as malformed. */
#define TPU_DIAG_BUF 32768
#define TPU_DIAG_MORE (-1)
#define TPU_DIAG_DONE 0

struct tpu_listener {
    int family;
    unsigned char addr[16];
    int port;
    int v6only;            /* 1, 0, or -1 where the backend cannot tell */
    unsigned long uid;
    unsigned long inode;
};

typedef void (*tpu_listener_fn)(void *ctx, const struct tpu_listener *l);

/* Parses one datagram of a sock_diag reply, calling each() for every
 * listening socket in it. Returns TPU_DIAG_MORE (a dump goes on),
 * TPU_DIAG_DONE, or an errno value: the kernel's error, or EBADMSG for
 * anything that is not a well-formed reply to request seq. Every field is
 * copied out with memcpy and every length is checked against what is left
 * of the buffer, so a hostile or truncated reply cannot make it read past
 * len. */
static int tpu_diag_parse(const unsigned char *buf, size_t len, unsigned seq, int dump,
                          tpu_listener_fn each, void *ctx)
{
    size_t off = 0;
    int seen = 0;
    while (len - off >= sizeof(struct nlmsghdr)) {
        struct nlmsghdr h;
        const unsigned char *body;
        size_t blen, step;
        memcpy(&h, buf + off, sizeof h);
        if (h.nlmsg_len < NLMSG_HDRLEN || h.nlmsg_len > len - off || h.nlmsg_seq != seq)
            return EBADMSG;
        if (h.nlmsg_flags & NLM_F_DUMP_INTR)
            return EAGAIN;
        body = buf + off + NLMSG_HDRLEN;
        blen = h.nlmsg_len - NLMSG_HDRLEN;
        if (h.nlmsg_type == NLMSG_DONE) {
            int rc = 0;
            if (blen >= sizeof rc)
                memcpy(&rc, body, sizeof rc);
            if (rc > 0 || rc < -4095)
                return EBADMSG;
            return rc < 0 ? -rc : TPU_DIAG_DONE;
        }
        if (h.nlmsg_type == NLMSG_ERROR) {
            struct nlmsgerr e;
            if (blen < sizeof e)
                return EBADMSG;
            memcpy(&e, body, sizeof e);
            if (e.error >= 0 || e.error < -4095)
                return EBADMSG;
            return -e.error;
        }
        if (h.nlmsg_type == SOCK_DIAG_BY_FAMILY) {
            struct inet_diag_msg m;
            struct tpu_listener l;
            size_t aoff = NLMSG_ALIGN(sizeof m);
            if (blen < sizeof m)
                return EBADMSG;
            memcpy(&m, body, sizeof m);
            if (m.idiag_family != AF_INET && m.idiag_family != AF_INET6)
                return EBADMSG;
            memset(&l, 0, sizeof l);
            l.family = m.idiag_family;
            memcpy(l.addr, m.id.idiag_src, m.idiag_family == AF_INET ? 4 : 16);
            l.port = ntohs(m.id.idiag_sport);
            l.uid = m.idiag_uid;
            l.inode = m.idiag_inode;
            l.v6only = m.idiag_family == AF_INET6 ? -1 : 0;
            while (aoff < blen) {
                struct nlattr a;
                if (blen - aoff < NLA_HDRLEN)
                    return EBADMSG;
                memcpy(&a, body + aoff, sizeof a);
                if (a.nla_len < NLA_HDRLEN || a.nla_len > blen - aoff)
                    return EBADMSG;
                if ((a.nla_type & NLA_TYPE_MASK) == INET_DIAG_SKV6ONLY && a.nla_len > NLA_HDRLEN
                    && l.family == AF_INET6)
                    l.v6only = body[aoff + NLA_HDRLEN] != 0;
                step = NLA_ALIGN(a.nla_len);
                aoff += step < blen - aoff ? step : blen - aoff;
            }
            if (m.idiag_state == TPU_TCP_LISTEN)
                each(ctx, &l);
            seen = 1;
        } else {
            return EBADMSG;
        }
        step = NLMSG_ALIGN(h.nlmsg_len);
        off += step < len - off ? step : len - off;
        if (!dump && seen)
            return off == len ? TPU_DIAG_DONE : EBADMSG;
    }
    if (off != len)
        return EBADMSG;
    return dump ? TPU_DIAG_MORE : EBADMSG;
}

static unsigned tpu_diag_seq;

static int tpu_diag_open(int *fd)
{
    *fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_SOCK_DIAG);
    return *fd < 0 ? errno : 0;
}

/* Sends one request and reads its whole reply. The kernel answers during
 * sendto (and refills a dump during each recv), so the reply is there when
 * recv runs; the poll is only a guard against a kernel that defers it. */
static int tpu_diag_ask(int fd, struct nlmsghdr *req, int dump, tpu_listener_fn each, void *ctx)
{
    unsigned char buf[TPU_DIAG_BUF] __attribute__((aligned(8)));
    struct sockaddr_nl kernel;
    ssize_t n;
    int rc;

    memset(&kernel, 0, sizeof kernel);
    kernel.nl_family = AF_NETLINK;
    req->nlmsg_seq = ++tpu_diag_seq;
    do
        n = sendto(fd, req, req->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno;
    do {
        struct pollfd pfd;
        n = recv(fd, buf, sizeof buf, MSG_TRUNC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            pfd.fd = fd;
            pfd.events = POLLIN;
            if (poll(&pfd, 1, 1000) == 0)
                return ETIMEDOUT;
            continue;
        }
        if (n < 0)
            return errno;
        if ((size_t)n > sizeof buf)
            return EMSGSIZE;
        if (n == 0)
            return EBADMSG;
        rc = tpu_diag_parse(buf, (size_t)n, req->nlmsg_seq, dump, each, ctx);
        if (rc != TPU_DIAG_MORE)
            return rc;
    } while (1);
}

struct tpu_diag_exact_req {
    struct nlmsghdr nlh;
    struct inet_diag_req_v2 r;
};

static void tpu_found(void *ctx, const struct tpu_listener *l)
{
    (void)l;
    *(int *)ctx = 1;
}

/* Would a connection to t reach a listener? 0 with *found set, or errno. */
static int tpu_diag_exact(int fd, const struct tpu_target *t, int *found)
{
    struct tpu_diag_exact_req q;
    int rc;
    memset(&q, 0, sizeof q);
    q.nlh.nlmsg_len = sizeof q;
    q.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    q.nlh.nlmsg_flags = NLM_F_REQUEST;
    q.r.sdiag_protocol = IPPROTO_TCP;
    q.r.idiag_states = 1u << TPU_TCP_LISTEN;
    q.r.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
    q.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    if (t->sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&t->sa;
        q.r.id.idiag_sport = s6->sin6_port;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            /* a v4-mapped address is reached over IPv4 */
            q.r.sdiag_family = AF_INET;
            memcpy(q.r.id.idiag_src, s6->sin6_addr.s6_addr + 12, 4);
        } else {
            q.r.sdiag_family = AF_INET6;
            memcpy(q.r.id.idiag_src, &s6->sin6_addr, 16);
        }
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&t->sa;
        q.r.sdiag_family = AF_INET;
        q.r.id.idiag_sport = s4->sin_port;
        memcpy(q.r.id.idiag_src, &s4->sin_addr, 4);
    }
    *found = 0;
    rc = tpu_diag_ask(fd, &q.nlh, 0, tpu_found, found);
    return rc == ENOENT ? 0 : rc;
}

/* Once per process: a listener of our own must be found by an exact
 * lookup. Without this, a kernel lacking tcp_diag (it answers ENOENT, the
 * same as "nothing listens") would make every port look free. */
static int tpu_diag_verified;

static int tpu_diag_verify(int fd)
{
    struct tpu_target t;
    struct sockaddr_in s4;
    struct in_addr lo;
    socklen_t len = sizeof s4;
    int rc, found = 0, l;

    if (tpu_diag_verified)
        return 0;
    l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (l < 0)
        return errno;
    lo.s_addr = htonl(INADDR_LOOPBACK);
    tpu_set_v4(&t, &lo, 0);
    if (bind(l, (struct sockaddr *)&t.sa, t.len) != 0 || listen(l, 1) != 0
        || getsockname(l, (struct sockaddr *)&s4, &len) != 0) {
        rc = errno;
        close(l);
        return rc;
    }
    ((struct sockaddr_in *)&t.sa)->sin_port = s4.sin_port;
    rc = tpu_diag_exact(fd, &t, &found);
    close(l);
    if (rc != 0)
        return rc;
    if (!found)
        return EOPNOTSUPP;
    tpu_diag_verified = 1;
    return 0;
}

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* Whether t is an address of this machine: it can be bound. 0 (local),
 * EADDRNOTAVAIL (not local), or another errno. The loopbacks are local
 * without asking; for the rest, IP_BIND_ADDRESS_NO_PORT spares the bind
 * the search for a free port, which would cost more than the lookup. */
static int tpu_is_local(const struct tpu_target *t)
{
    struct tpu_target any = *t;
    int rc, one = 1, fd;
    if (t->sa.ss_family == AF_INET6
        ? IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&t->sa)->sin6_addr)
        : (ntohl(((const struct sockaddr_in *)&t->sa)->sin_addr.s_addr) >> 24) == 127)
        return 0;
    fd = socket(t->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return errno;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (any.sa.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&any.sa)->sin6_port = 0;
    else
        ((struct sockaddr_in *)&any.sa)->sin_port = 0;
    rc = bind(fd, (struct sockaddr *)&any.sa, any.len) == 0 ? 0 : errno;
    close(fd);
    return rc;
}

static int tpu_push_listen_error(lua_State *L, const struct tpu_target *t, int err)
{
    char where[INET6_ADDRSTRLEN + 16];
    tpu_format_addr(t, where, sizeof where);
    return tpu_push_errno(L, "listen", where, err);
}

/* As tpu_push_listen_error, plus a fourth value "netlink": the failure
 * came from the netlink socket, so the caller may fall back to /proc. */
static int tpu_push_netlink_error(lua_State *L, const struct tpu_target *t, int err)
{
    tpu_push_listen_error(L, t, err);
    lua_pushliteral(L, "netlink");
    return 4;
}

/* Resolves host (NULL: both loopbacks) for listen mode, keeping only the
 * families this machine has. Returns the count, or 0 after pushing
 * nil, err, code (3 values) when the name does not resolve, an address is
 * not local, or no address is left. */
static int tpu_listen_targets(lua_State *L, const char *host, int port, struct tpu_target *t)
{
    int i, k = 0, rc, n = tpu_resolve(host, port, 0, t, &rc);
    if (n == 0) {
        tpu_push_gai_error(L, host, rc);
        return 0;
    }
    if (host == NULL)
        return n;
    for (i = 0; i < n; i++) {
        int err = tpu_is_local(&t[i]);
        if (err != 0 && tpu_missing_family(&t[i], err))
            continue;
        if (err == EADDRNOTAVAIL) {
            char where[INET6_ADDRSTRLEN + 16];
            tpu_format_addr(&t[i], where, sizeof where);
            lua_pushnil(L);
            lua_pushfstring(L, "listen %s: not an address of this machine "
                            "(listen mode answers only for this machine)", where);
            lua_pushliteral(L, "EADDRNOTAVAIL");
            return 0;
        }
        if (err != 0) {
            tpu_push_listen_error(L, &t[i], err);
            return 0;
        }
        t[k++] = t[i];
    }
    if (k == 0) {
        char where[INET6_ADDRSTRLEN + 16];
        tpu_format_addr(&t[0], where, sizeof where);
        lua_pushnil(L);
        lua_pushfstring(L, "listen %s: no address of a family this machine has", where);
        lua_pushliteral(L, "EAFNOSUPPORT");
    }
    return k;
}

/***
 * listen_exact(host, port): whether a connection to host:port (host nil:
 * 127.0.0.1 or ::1) would reach a listening socket, by an exact
 * NETLINK_SOCK_DIAG lookup per address. host must be an address of this
 * machine. Returns true, false, or nil, message, code; a refused netlink
 * socket gives its errno code (EPERM, EACCES, EPROTONOSUPPORT) and a kernel
 * without exact lookups EOPNOTSUPP, so the caller can fall back to /proc.
 */
static int l_listen_exact(lua_State *L)
{
    struct tpu_target t[TPU_MAX_ADDRS];
    const char *host = tpu_opt_host(L, 1);
    int port = tpu_check_port(L, 2);
    int i, fd, rc, found = 0, n = tpu_listen_targets(L, host, port, t);
    if (n == 0)
        return 3;
    rc = tpu_diag_open(&fd);
    if (rc != 0)
        return tpu_push_netlink_error(L, &t[0], rc);
    rc = tpu_diag_verify(fd);
    for (i = 0; rc == 0 && !found && i < n; i++)
        rc = tpu_diag_exact(fd, &t[i], &found);
    close(fd);
    if (rc != 0)
        return tpu_push_netlink_error(L, &t[i > 0 ? i - 1 : 0], rc);
    lua_pushboolean(L, found);
    return 1;
}

/***
 * listen_targets(host): the addresses listen mode answers for, as
 * { family =, address = } (host nil: both loopbacks), or nil, err, code
 * when host is not an address of this machine.
 */
static int l_listen_targets(lua_State *L)
{
    struct tpu_target t[TPU_MAX_ADDRS];
    const char *host = tpu_opt_host(L, 1);
    int i, n = tpu_listen_targets(L, host, 1, t);
    if (n == 0)
        return 3;
    lua_createtable(L, n, 0);
    for (i = 0; i < n; i++) {
        char ip[INET6_ADDRSTRLEN];
        int v6 = t[i].sa.ss_family == AF_INET6;
        const void *a = v6 ? (const void *)&((const struct sockaddr_in6 *)&t[i].sa)->sin6_addr
                           : (const void *)&((const struct sockaddr_in *)&t[i].sa)->sin_addr;
        inet_ntop(t[i].sa.ss_family, a, ip, sizeof ip);
        lua_createtable(L, 0, 2);
        lua_pushstring(L, v6 ? "inet6" : "inet");
        lua_setfield(L, -2, "family");
        lua_pushstring(L, ip);
        lua_setfield(L, -2, "address");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

struct tpu_list_ctx {
    lua_State *L;
    int n;
};

/* Appends l to the list on top of the Lua stack. */
static void tpu_push_listener(void *ctx, const struct tpu_listener *l)
{
    struct tpu_list_ctx *c = (struct tpu_list_ctx *)ctx;
    lua_State *L = c->L;
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
    lua_rawseti(L, -2, ++c->n);
}

struct tpu_diag_dump_req {
    struct nlmsghdr nlh;
    struct inet_diag_req_v2 r;
    struct nlattr bc_attr;
    struct inet_diag_bc_op bc[4];
};

/* The listening sockets of one family with lo <= port <= hi, by a dump
 * that the kernel filters with a bytecode range on the source port. */
static int tpu_diag_dump(int fd, int family, int lo, int hi, struct tpu_list_ctx *c)
{
    struct tpu_diag_dump_req q;
    int rc, tries = 0;
    memset(&q, 0, sizeof q);
    q.nlh.nlmsg_len = sizeof q;
    q.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    q.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    q.r.sdiag_family = (unsigned char)family;
    q.r.sdiag_protocol = IPPROTO_TCP;
    q.r.idiag_states = 1u << TPU_TCP_LISTEN;
    q.bc_attr.nla_len = NLA_HDRLEN + sizeof q.bc;
    q.bc_attr.nla_type = INET_DIAG_REQ_BYTECODE;
    /* sport >= lo, else reject (jump 4 bytes past the end);
     * sport <= hi, else reject; falling off the end accepts. */
    q.bc[0].code = INET_DIAG_BC_S_GE;
    q.bc[0].yes = 8;
    q.bc[0].no = 20;
    q.bc[1].no = (unsigned short)lo;
    q.bc[2].code = INET_DIAG_BC_S_LE;
    q.bc[2].yes = 8;
    q.bc[2].no = 12;
    q.bc[3].no = (unsigned short)hi;
    do {
        int mark = c->n;
        rc = tpu_diag_ask(fd, &q.nlh, 1, tpu_push_listener, c);
        if (rc != EAGAIN)
            break;
        /* The dump was interrupted by a change of the table: start over. */
        while (c->n > mark) {
            lua_pushnil(c->L);
            lua_rawseti(c->L, -2, c->n--);
        }
    } while (++tries < 3);
    return rc;
}

/* /proc/net/tcp or tcp6, for where netlink is refused. The kernel prints
 * each 32-bit word of an address as a native integer, so reading it back
 * with %x and copying it out restores the bytes whatever the endianness. */
static int tpu_proc_read(const char *path, int family, int lo, int hi, struct tpu_list_ctx *c)
{
    char line[512];
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return errno;
    while (fgets(line, sizeof line, f) != NULL) {
        struct tpu_listener l;
        unsigned w[4], port, state;
        int got;
        memset(&l, 0, sizeof l);
        if (family == AF_INET)
            got = sscanf(line, "%*s %8x:%4x %*s %2x %*s %*s %*s %lu %*s %lu",
                         &w[0], &port, &state, &l.uid, &l.inode) == 5;
        else
            got = sscanf(line, "%*s %8x%8x%8x%8x:%4x %*s %2x %*s %*s %*s %lu %*s %lu",
                         &w[0], &w[1], &w[2], &w[3], &port, &state, &l.uid, &l.inode) == 8;
        if (!got || state != TPU_TCP_LISTEN || (int)port < lo || (int)port > hi)
            continue;
        l.family = family;
        memcpy(l.addr, w, family == AF_INET ? 4 : 16);
        l.port = (int)port;
        l.v6only = family == AF_INET6 ? -1 : 0;
        tpu_push_listener(c, &l);
    }
    fclose(f);
    return 0;
}

/***
 * listeners(lo, hi [, backend]): every listening TCP socket of this
 * machine (network namespace) with lo <= port <= hi, as a list of
 * { family, address, port, uid, inode, v6only } (v6only absent where the
 * backend cannot tell). backend "netlink" (default: one kernel-filtered
 * dump per family) or "proc" (/proc/net/tcp and tcp6). nil, err, code on
 * failure; never a partial list.
 */
static int l_listeners(lua_State *L)
{
    static const char *const backends[] = { "netlink", "proc", NULL };
    int lo = tpu_check_port(L, 1), hi = tpu_check_port(L, 2);
    int proc = luaL_checkoption(L, 3, "netlink", backends) == 1;
    struct tpu_list_ctx c;
    int rc, fd = -1;
    if (hi < lo)
        luaL_argerror(L, 2, "hi must not be below lo");
    c.L = L;
    c.n = 0;
    lua_newtable(L);
    if (proc) {
        rc = tpu_proc_read("/proc/net/tcp", AF_INET, lo, hi, &c);
        if (rc == 0) {
            rc = tpu_proc_read("/proc/net/tcp6", AF_INET6, lo, hi, &c);
            if (rc == ENOENT)   /* no IPv6 on this machine */
                rc = 0;
        }
    } else {
        rc = tpu_diag_open(&fd);
        if (rc == 0)
            rc = tpu_diag_dump(fd, AF_INET, lo, hi, &c);
        if (rc == 0)
            rc = tpu_diag_dump(fd, AF_INET6, lo, hi, &c);
        if (fd >= 0)
            close(fd);
    }
    if (rc == 0)
        return 1;
    lua_pushnil(L);
    if (proc)
        lua_pushfstring(L, "listen: /proc/net/tcp: %s (listen mode needs NETLINK_SOCK_DIAG "
                        "or /proc/net/tcp)", tpu_errno_msg(rc));
    else
        lua_pushfstring(L, "listen: NETLINK_SOCK_DIAG: %s", tpu_errno_msg(rc));
    lua_pushstring(L, tpu_errno_name(rc));
    if (proc)
        return 3;
    lua_pushliteral(L, "netlink");
    return 4;
}

/***
 * listen_parse(reply, seq, dump): runs the netlink reply parser on bytes
 * the caller built, so that specs and the fuzz harness can feed it
 * truncated, malformed and oversized replies. Returns the list of
 * listeners and "done" or "more", or nil, err, code.
 */
static int l_listen_parse(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    unsigned seq = (unsigned)luaL_checknumber(L, 2);
    int dump = lua_toboolean(L, 3), rc;
    unsigned char *copy;
    struct tpu_list_ctx c;
    if (len > TPU_DIAG_BUF) {
        lua_pushnil(L);
        lua_pushstring(L, tpu_errno_msg(EMSGSIZE));
        lua_pushliteral(L, "EMSGSIZE");
        return 3;
    }
    /* an exact-size heap copy, so that a sanitizer sees any overread */
    copy = (unsigned char *)malloc(len ? len : 1);
    if (copy == NULL)
        return luaL_error(L, "out of memory");
    memcpy(copy, s, len);
    c.L = L;
    c.n = 0;
    lua_newtable(L);
    rc = tpu_diag_parse(copy, len, seq, dump, tpu_push_listener, &c);
    free(copy);
    if (rc == TPU_DIAG_MORE || rc == TPU_DIAG_DONE) {
        lua_pushstring(L, rc == TPU_DIAG_DONE ? "done" : "more");
        return 2;
    }
    lua_pushnil(L);
    lua_pushstring(L, tpu_errno_msg(rc));
    lua_pushstring(L, tpu_errno_name(rc));
    return 3;
}

/* The command line of pid, NULs turned to spaces; comm when it is empty
 * (kernel threads, zombies). */
static void tpu_push_command(lua_State *L, const char *pid)
{
    char path[64], cmd[4096];
    size_t n = 0, i;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%s/cmdline", pid);
    if ((f = fopen(path, "re")) != NULL) {
        n = fread(cmd, 1, sizeof cmd - 1, f);
        fclose(f);
    }
    while (n > 0 && cmd[n - 1] == '\0')
        n--;
    if (n == 0) {
        snprintf(path, sizeof path, "/proc/%s/comm", pid);
        if ((f = fopen(path, "re")) != NULL) {
            n = fread(cmd, 1, sizeof cmd - 1, f);
            fclose(f);
        }
        while (n > 0 && (cmd[n - 1] == '\n' || cmd[n - 1] == '\0'))
            n--;
    }
    for (i = 0; i < n; i++)
        if (cmd[i] == '\0')
            cmd[i] = ' ';
    lua_pushlstring(L, cmd, n);
}

/***
 * socket_holders(inodes): which processes hold the sockets whose inodes
 * are the keys of the table inodes, by reading /proc/<pid>/fd. Returns
 * { [inode] = { { pid =, command = }, ... } } (in /proc order, lowest pid
 * first) and the number of processes whose descriptors this one may not
 * read.
 */
static int l_socket_holders(lua_State *L)
{
    DIR *proc;
    struct dirent *e;
    int denied = 0;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_newtable(L);
    proc = opendir("/proc");
    if (proc == NULL)
        return tpu_push_errno(L, "owner", "/proc", errno);
    while ((e = readdir(proc)) != NULL) {
        char path[300];
        int fdn, cmd_pushed = 0;
        DIR *fds;
        struct dirent *d;
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/fd", e->d_name);
        fds = opendir(path);
        if (fds == NULL) {
            if (errno == EACCES || errno == EPERM)
                denied++;
            continue;
        }
        fdn = dirfd(fds);
        while ((d = readdir(fds)) != NULL) {
            char link[64];
            unsigned long inode;
            ssize_t n = readlinkat(fdn, d->d_name, link, sizeof link - 1);
            if (n <= 0)
                continue;
            link[n] = '\0';
            if (sscanf(link, "socket:[%lu]", &inode) != 1)
                continue;
            lua_pushinteger(L, (lua_Integer)inode);
            lua_rawget(L, 1);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                continue;
            }
            lua_pop(L, 1);
            if (!cmd_pushed) {
                tpu_push_command(L, e->d_name);
                cmd_pushed = 1;
            }
            /* stack: result, [command] */
            lua_pushinteger(L, (lua_Integer)inode);
            lua_rawget(L, -3);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                lua_newtable(L);
                lua_pushinteger(L, (lua_Integer)inode);
                lua_pushvalue(L, -2);
                lua_rawset(L, -5);
            }
            lua_createtable(L, 0, 2);
            lua_pushinteger(L, (lua_Integer)strtol(e->d_name, NULL, 10));
            lua_setfield(L, -2, "pid");
            lua_pushvalue(L, -3);
            lua_setfield(L, -2, "command");
            lua_rawseti(L, -2, (int)tpu_rawlen(L, -2) + 1);
            lua_pop(L, 1);
        }
        closedir(fds);
        if (cmd_pushed)
            lua_pop(L, 1);
    }
    closedir(proc);
    lua_pushinteger(L, denied);
    return 2;
}

#else /* not Linux */

static int tpu_listen_unsupported(lua_State *L)
{
    lua_pushnil(L);
    lua_pushliteral(L, "listen mode needs Linux (NETLINK_SOCK_DIAG or /proc/net/tcp)");
    lua_pushliteral(L, "EOPNOTSUPP");
    return 3;
}

#define l_listen_exact tpu_listen_unsupported
#define l_listen_targets tpu_listen_unsupported
#define l_listeners tpu_listen_unsupported
#define l_listen_parse tpu_listen_unsupported
#define l_socket_holders tpu_listen_unsupported

#endif

static const luaL_Reg tpu_listen_functions[] = {
    { "listen_exact", l_listen_exact },
    { "listen_targets", l_listen_targets },
    { "listeners", l_listeners },
    { "listen_parse", l_listen_parse },
    { "socket_holders", l_socket_holders },
    { NULL, NULL }
};
