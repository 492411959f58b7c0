/* Turning the Lua `host` argument into socket addresses, and addresses
 * back into literals for the Lua side. */

#define TPU_MAX_ADDRS 32

struct tpu_target {
    struct sockaddr_storage sa;
    socklen_t len;
    /* the address as text when it is known without inet_ntop: a constant
     * loopback literal, or the host argument of the current call; NULL
     * otherwise (and always once the call has returned) */
    const char *text;
};

static void tpu_set_v4(struct tpu_target *t, const struct in_addr *a, int port)
{
    struct sockaddr_in *s4 = (struct sockaddr_in *)&t->sa;
    memset(t, 0, sizeof *t);
    s4->sin_family = AF_INET;
    s4->sin_port = htons((unsigned short)port);
    s4->sin_addr = *a;
    t->len = sizeof *s4;
}

static void tpu_set_v6(struct tpu_target *t, const struct in6_addr *a, int port)
{
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&t->sa;
    memset(t, 0, sizeof *t);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((unsigned short)port);
    s6->sin6_addr = *a;
    t->len = sizeof *s6;
}

static void tpu_set_port(struct tpu_target *t, int port)
{
    if (t->sa.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&t->sa)->sin6_port = htons((unsigned short)port);
    else
        ((struct sockaddr_in *)&t->sa)->sin_port = htons((unsigned short)port);
}

/* Pushes the address of t as a literal without port or brackets. */
static void tpu_push_address(lua_State *L, const struct tpu_target *t)
{
    char ip[INET6_ADDRSTRLEN];
    if (t->text != NULL) {
        lua_pushstring(L, t->text);
        return;
    }
    const void *a = t->sa.ss_family == AF_INET6
        ? (const void *)&((const struct sockaddr_in6 *)&t->sa)->sin6_addr
        : (const void *)&((const struct sockaddr_in *)&t->sa)->sin_addr;
    if (inet_ntop(t->sa.ss_family, a, ip, sizeof ip) == NULL)
        strcpy(ip, "?");
    lua_pushstring(L, ip);
}

/* The host as the caller wrote it, without the brackets of "[::1]". */
static void tpu_strip_brackets(const char *host, char *out, size_t size)
{
    size_t len = strlen(host);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        len -= 2;
        host++;
    }
    if (len >= size)
        len = size - 1;
    memcpy(out, host, len);
    out[len] = '\0';
}

/* Whether every dot-separated part of name is empty, decimal digits or
 * 0x-hexadecimal: the forms inet_aton (and so getaddrinfo) reads as an
 * IPv4 number, octal for a leading zero ("127.0.0.010" is 127.0.0.8).
 * tcp_port_used.hosts holds the same rule for the Lua transports. */
static int tpu_ipv4_like(const char *name)
{
    const char *p = name;
    while (1) {
        if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
            p += 2;
            while ((*p >= '0' && *p <= '9') || ((*p | 32) >= 'a' && (*p | 32) <= 'f'))
                p++;
        } else {
            while (*p >= '0' && *p <= '9')
                p++;
        }
        if (*p == '\0')
            return 1;
        if (*p != '.')
            return 0;
        p++;
    }
}

/* Whether an IPv4 literal that inet_pton took is written canonically:
 * no part with a leading zero (a C library whose inet_pton allows them
 * must not make "127.0.0.010" an address). */
static int tpu_ipv4_canonical(const char *name)
{
    const char *p;
    for (p = name; *p != '\0'; p++)
        if (*p == '0' && (p == name || p[-1] == '.') && p[1] >= '0' && p[1] <= '9')
            return 0;
    return 1;
}

/* Whether name can only be meant as an address literal: it has a colon
 * (no name has one) or reads as an IPv4 number. What inet_pton refused of
 * such a host is malformed or a legacy form, never worth a DNS query. */
static int tpu_literal_like(const char *name)
{
    return strchr(name, ':') != NULL || tpu_ipv4_like(name);
}

/* Fills targets[] for host (NULL: both loopbacks) with the port set.
 * Returns the count, or 0 with *rc (a getaddrinfo code, or 0) and *err
 * (an errno value) set. Literals never reach the resolver. */
static int tpu_resolve(const char *host, int port, int passive,
                       struct tpu_target *targets, int *rc, int *err)
{
    char name[TPU_MAX_HOST + 1];
    struct in_addr a4;
    struct in6_addr a6;
    struct addrinfo hints, *res, *ai;
    int n = 0;

    *rc = 0;
    *err = 0;
    if (host == NULL) {
        a4.s_addr = htonl(INADDR_LOOPBACK);
        tpu_set_v4(&targets[0], &a4, port);
        tpu_set_v6(&targets[1], &in6addr_loopback, port);
        targets[0].text = "127.0.0.1";
        targets[1].text = "::1";
        return 2;
    }
    tpu_strip_brackets(host, name, sizeof name);
    if (inet_pton(AF_INET, name, &a4) == 1 && tpu_ipv4_canonical(name)) {
        tpu_set_v4(&targets[0], &a4, port);
        if (host[0] != '[')
            targets[0].text = host;
        return 1;
    }
    if (inet_pton(AF_INET6, name, &a6) == 1) {
        tpu_set_v6(&targets[0], &a6, port);
        if (host[0] != '[')
            targets[0].text = host;
        return 1;
    }
    if (strchr(name, ':') == NULL && tpu_ipv4_like(name)) {
        /* only the four decimal parts inet_pton took are an address */
        *rc = EAI_NONAME;
        return 0;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    if (tpu_literal_like(name))
        hints.ai_flags |= AI_NUMERICHOST;
    errno = 0;
    *rc = getaddrinfo(name, NULL, &hints, &res);
    if (*rc != 0) {
        *err = errno;
        /* glibc calls a name unknown when it could not open /etc/hosts
         * for want of a descriptor: ask the kernel for one to tell. */
        if (*rc != EAI_SYSTEM && !(hints.ai_flags & AI_NUMERICHOST)) {
            int fd = tpu_socket(AF_INET, SOCK_DGRAM, 0);
            if (fd >= 0)
                close(fd);
            else if (errno == EMFILE || errno == ENFILE)
                *rc = 0, *err = errno;
        }
        return 0;
    }
    for (ai = res; ai != NULL && n < TPU_MAX_ADDRS; ai = ai->ai_next) {
        int i, dup = 0;
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            || ai->ai_addrlen > sizeof targets[n].sa)
            continue;
        memset(&targets[n], 0, sizeof targets[n]);
        memcpy(&targets[n].sa, ai->ai_addr, ai->ai_addrlen);
        targets[n].len = ai->ai_addrlen;
        tpu_set_port(&targets[n], port);
        for (i = 0; i < n; i++)
            if (targets[i].len == targets[n].len
                && memcmp(&targets[i].sa, &targets[n].sa, targets[n].len) == 0)
                dup = 1;
        if (!dup)
            n++;
    }
    freeaddrinfo(res);
    if (n == 0)
        *rc = EAI_NONAME;
    return n;
}

/* Whether this machine can use IPv6 at all (::1 can be bound). The Lua
 * verdict asks it only after an IPv6 address failed in a way that a
 * missing family explains, so it costs nothing on the common path. */
static int tpu_ipv6_available(void)
{
    struct sockaddr_in6 s6;
    int ok, fd = tpu_socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0)
        return errno != EAFNOSUPPORT;
    memset(&s6, 0, sizeof s6);
    s6.sin6_family = AF_INET6;
    s6.sin6_addr = in6addr_loopback;
    ok = bind(fd, (struct sockaddr *)&s6, sizeof s6) == 0 || errno != EADDRNOTAVAIL;
    close(fd);
    return ok;
}

/* Whether t is an address of this machine: it can be bound. 0 (local),
 * EADDRNOTAVAIL (not local), or another errno. The loopbacks are local
 * without asking; for the rest, TPU_BIND_NO_PORT (where it exists)
 * spares the bind the search for a free port. */
static int tpu_is_local(const struct tpu_target *t)
{
    struct tpu_target any = *t;
    int rc, fd;
    if (t->sa.ss_family == AF_INET6
        ? IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&t->sa)->sin6_addr)
        : (ntohl(((const struct sockaddr_in *)&t->sa)->sin_addr.s_addr) >> 24) == 127)
        return 0;
    fd = tpu_socket(t->sa.ss_family, SOCK_STREAM, 0);
    if (fd < 0)
        return errno;
#ifdef TPU_BIND_NO_PORT
    {
        int one = 1;
        setsockopt(fd, IPPROTO_IP, TPU_BIND_NO_PORT, &one, sizeof one);
    }
#endif
    tpu_set_port(&any, 0);
    rc = bind(fd, (struct sockaddr *)&any.sa, any.len) == 0 ? 0 : errno;
    close(fd);
    return rc;
}

/***
 * resolve(host): the addresses a probe of host would try, as a list of
 * { family = "inet" | "inet6", address = "..." }; nil, code.
 */
static int l_resolve(lua_State *L)
{
    struct tpu_target t[TPU_MAX_ADDRS];
    const char *host = tpu_opt_host(L, 1);
    int i, rc, err, n = tpu_resolve(host, 0, 0, t, &rc, &err);
    if (n == 0)
        return tpu_push_resolve_error(L, rc, err);
    lua_createtable(L, n, 0);
    for (i = 0; i < n; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, t[i].sa.ss_family == AF_INET6 ? "inet6" : "inet");
        lua_setfield(L, -2, "family");
        tpu_push_address(L, &t[i]);
        lua_setfield(L, -2, "address");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/*** ipv6(): whether this machine can use IPv6 (::1 can be bound). */
static int l_ipv6(lua_State *L)
{
    lua_pushboolean(L, tpu_ipv6_available());
    return 1;
}

static const luaL_Reg tpu_resolve_functions[] = {
    { "resolve", l_resolve },
    { "ipv6", l_ipv6 },
    { NULL, NULL }
};
