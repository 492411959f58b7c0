/* The bind probe and the kernel's pick of a free port (bind_port0), for
 * TCP and UDP. TCP: could a server that sets SO_REUSEADDR bind host:port
 * now? The probe sets it too, as servers do. UDP: is any socket bound
 * there? The probe must not set SO_REUSEADDR: two UDP sockets that both
 * set it share a port, so a probe that set it would bind beside a server
 * that did and call the port free. */

enum { BIND_FREE, BIND_USED, BIND_FAILED };

/* Binds a throwaway socket of type (SOCK_STREAM, SOCK_DGRAM) to t.
 * BIND_FREE, BIND_USED (EADDRINUSE) or BIND_FAILED with *err set. */
static int tpu_bind_one(const struct tpu_target *t, int type, int *err)
{
    int one = 1, rc, fd = tpu_socket(t->sa.ss_family, type, 0);
    if (fd < 0) {
        *err = errno;
        return BIND_FAILED;
    }
    if (type == SOCK_STREAM)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (t->sa.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    rc = bind(fd, (const struct sockaddr *)&t->sa, t->len);
    *err = rc == 0 ? 0 : errno;
    close(fd);
    if (rc == 0)
        return BIND_FREE;
    return *err == EADDRINUSE ? BIND_USED : BIND_FAILED;
}

/* Pushes the outcome pairs of a bind probe of n targets: true (in use:
 * EADDRINUSE), false (it could bind) or the code, and the address; stops
 * at the first address in use. Returns the number of values. */
static int tpu_bind_outcomes(lua_State *L, const struct tpu_target *t, int n, int type)
{
    int i, k = 0;
    for (i = 0; i < n; i++) {
        int err, r = tpu_bind_one(&t[i], type, &err);
        if (r == BIND_FAILED)
            tpu_push_code(L, err);
        else
            lua_pushboolean(L, r == BIND_USED);
        tpu_push_address(L, &t[i]);
        k += 2;
        if (r == BIND_USED)
            break;
    }
    return k;
}

/* Binds fd to t; on success stores the port the kernel gave it. */
static int tpu_bind_get_port(int fd, const struct tpu_target *t, int *port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (bind(fd, (const struct sockaddr *)&t->sa, t->len) != 0
        || getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return errno;
    *port = ss.ss_family == AF_INET6
        ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
        : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

/* Tries before bind_port0 gives up on a host with several addresses whose
 * other addresses keep holding the port the kernel picked on the first. */
#define TPU_PORT0_TRIES 16

/* A port the kernel considers free on every one of the n targets (port
 * 0 asks it; the first target's socket holds the pick while the others
 * are tried). With dual_stack, a first target [::] that takes IPv4 too
 * (IPV6_V6ONLY off) stands for them all; where the system refuses that
 * (OpenBSD), the others are tried as usual. 0 with *port set, or an
 * errno value with *failed the index of the target that failed;
 * EADDRINUSE after TPU_PORT0_TRIES picks. */
static int tpu_port0(const struct tpu_target *t, int n, int dual_stack, int type, int *port,
                     int *failed)
{
    int try, zero = 0;
    for (try = 0; try < TPU_PORT0_TRIES; try++) {
        int i, err, taken = 0, m = n, fd = tpu_socket(t[0].sa.ss_family, type, 0);
        *failed = 0;
        if (fd < 0)
            return errno;
        if (dual_stack && t[0].sa.ss_family == AF_INET6
            && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) == 0)
            m = 1;
        err = tpu_bind_get_port(fd, &t[0], port);
        for (i = 1; err == 0 && i < m && !taken; i++) {
            struct tpu_target other = t[i];
            int r;
            tpu_set_port(&other, *port);
            r = tpu_bind_one(&other, type, &err);
            if (r == BIND_USED)
                taken = 1, err = 0;
            else if (r == BIND_FAILED)
                *failed = i;
        }
        close(fd);
        if (err != 0)
            return err;
        if (!taken)
            return 0;
    }
    return EADDRINUSE;
}

/***
 * bind(host, port [, proto]): a bind probe of every address of host (nil:
 * 127.0.0.1 and ::1), proto "tcp" (default) or "udp". Returns state,
 * address pairs (true: in use, false: free, or a code), or nil, code when
 * host does not resolve.
 */
static int l_bind(lua_State *L)
{
    struct tpu_target t[TPU_MAX_ADDRS];
    const char *host = tpu_opt_host(L, 1);
    int port = tpu_check_port(L, 2);
    int type = tpu_sock_type(tpu_check_proto(L, 3));
    int rc, err, n;
    tpu_outcome_room(L);
    n = tpu_resolve(host, port, 1, t, &rc, &err);
    if (n == 0)
        return tpu_push_resolve_error(L, rc, err);
    return tpu_bind_outcomes(L, t, n, type);
}

/***
 * bind_port0(host [, proto]): a port the kernel considers free on host
 * for proto ("tcp", default, or "udp"), found by binding port 0 there
 * (without SO_REUSEADDR, so nothing at all holds it) and reading it back;
 * the socket is closed before it returns. host nil means every local
 * address of both families (one dual-stack socket on ::, else :: and
 * 0.0.0.0, or 0.0.0.0 without IPv6). Returns the port, or nil, code,
 * address (the address that failed).
 */
static int l_bind_port0(lua_State *L)
{
    struct tpu_target t[TPU_MAX_ADDRS];
    const char *host = tpu_opt_host(L, 1);
    int type = tpu_sock_type(tpu_check_proto(L, 2));
    int n, rc, err, port = 0, failed = 0;

    if (host == NULL) {
        struct in_addr any4;
        any4.s_addr = htonl(INADDR_ANY);
        n = 0;
        if (tpu_ipv6_available())
            tpu_set_v6(&t[n++], &in6addr_any, 0);
        tpu_set_v4(&t[n++], &any4, 0);
    } else {
        n = tpu_resolve(host, 0, 1, t, &rc, &err);
        if (n == 0)
            return tpu_push_resolve_error(L, rc, err);
    }
    err = tpu_port0(t, n, host == NULL, type, &port, &failed);
    if (err != 0) {
        lua_pushnil(L);
        tpu_push_code(L, err);
        tpu_push_address(L, &t[failed]);
        return 3;
    }
    lua_pushinteger(L, port);
    return 1;
}

static const luaL_Reg tpu_bind_functions[] = {
    { "bind", l_bind },
    { "bind_port0", l_bind_port0 },
    { NULL, NULL }
};
