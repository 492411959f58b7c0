/* Turning the Lua `host` argument into socket addresses, and back into text
 * for messages. Included by core.c. */

#define TPU_MAX_ADDRS 32
#define TPU_MAX_HOST 1024

struct tpu_target {
    struct sockaddr_storage sa;
    socklen_t len;
};

/* Where a probe is going, for messages: "127.0.0.1:80", "[::1]:80". */
static void tpu_format_addr(const struct tpu_target *t, char *buf, size_t size)
{
    char ip[INET6_ADDRSTRLEN];
    if (t->sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&t->sa;
        if (inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip) == NULL)
            strcpy(ip, "?");
        snprintf(buf, size, "[%s]:%u", ip, (unsigned)ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&t->sa;
        if (inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip) == NULL)
            strcpy(ip, "?");
        snprintf(buf, size, "%s:%u", ip, (unsigned)ntohs(s4->sin_port));
    }
}

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

/* Fills targets[] for host (NULL: both loopbacks). Returns the count, or
 * 0 with *gai_rc set when the name does not resolve. Literals never touch
 * the resolver, so the common case costs no system call. */
static int tpu_resolve(const char *host, int port, int passive,
                       struct tpu_target *targets, int *gai_rc)
{
    char name[TPU_MAX_HOST + 1];
    struct in_addr a4;
    struct in6_addr a6;
    struct addrinfo hints, *res, *ai;
    int n = 0, rc;

    *gai_rc = 0;
    if (host == NULL) {
        a4.s_addr = htonl(INADDR_LOOPBACK);
        tpu_set_v4(&targets[0], &a4, port);
        tpu_set_v6(&targets[1], &in6addr_loopback, port);
        return 2;
    }
    tpu_strip_brackets(host, name, sizeof name);
    if (inet_pton(AF_INET, name, &a4) == 1) {
        tpu_set_v4(&targets[0], &a4, port);
        return 1;
    }
    if (inet_pton(AF_INET6, name, &a6) == 1) {
        tpu_set_v6(&targets[0], &a6, port);
        return 1;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    /* No name has a colon: what inet_pton refused is a malformed IPv6
     * literal or one with a zone id, never worth a DNS query. */
    if (strchr(name, ':') != NULL)
        hints.ai_flags |= AI_NUMERICHOST;
    rc = getaddrinfo(name, NULL, &hints, &res);
    if (rc != 0) {
        *gai_rc = rc;
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
        if (ai->ai_family == AF_INET)
            ((struct sockaddr_in *)&targets[n].sa)->sin_port = htons((unsigned short)port);
        else
            ((struct sockaddr_in6 *)&targets[n].sa)->sin6_port = htons((unsigned short)port);
        for (i = 0; i < n; i++)
            if (targets[i].len == targets[n].len
                && memcmp(&targets[i].sa, &targets[n].sa, targets[n].len) == 0)
                dup = 1;
        if (!dup)
            n++;
    }
    freeaddrinfo(res);
    if (n == 0)
        *gai_rc = EAI_NONAME;
    return n;
}

/* Pushes nil, "resolve HOST: message", code. */
static int tpu_push_gai_error(lua_State *L, const char *host, int rc)
{
    lua_pushnil(L);
    if (rc == EAI_SYSTEM)
        lua_pushfstring(L, "resolve %s: %s", host, strerror(errno));
    else
        lua_pushfstring(L, "resolve %s: %s", host, gai_strerror(rc));
    lua_pushstring(L, tpu_gai_name(rc));
    return 3;
}

/* Whether this machine can use IPv6 at all: asked only after an IPv6
 * address failed in a way that a missing family explains, so that the
 * answer costs nothing on the common path. */
static int tpu_ipv6_available(void)
{
    struct sockaddr_in6 s6;
    int ok, fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno != EAFNOSUPPORT;
    memset(&s6, 0, sizeof s6);
    s6.sin6_family = AF_INET6;
    s6.sin6_addr = in6addr_loopback;
    ok = bind(fd, (struct sockaddr *)&s6, sizeof s6) == 0 || errno != EADDRNOTAVAIL;
    close(fd);
    return ok;
}

static int tpu_missing_family(const struct tpu_target *t, int err)
{
    if (t->sa.ss_family != AF_INET6)
        return 0;
    if (err != EAFNOSUPPORT && err != EADDRNOTAVAIL && err != ENETUNREACH)
        return 0;
    return !tpu_ipv6_available();
}
