/* The bind probe: could a server that sets SO_REUSEADDR bind host:port now?
 * Included by core.c. */

enum { BIND_FREE, BIND_USED, BIND_FAILED, BIND_SKIPPED };

static int tpu_bind_one(const struct tpu_target *t, int *err)
{
    int one = 1, rc, fd = socket(t->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = errno;
        return tpu_missing_family(t, *err) ? BIND_SKIPPED : BIND_FAILED;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (t->sa.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    rc = bind(fd, (const struct sockaddr *)&t->sa, t->len);
    *err = rc == 0 ? 0 : errno;
    close(fd);
    if (rc == 0)
        return BIND_FREE;
    if (*err == EADDRINUSE)
        return BIND_USED;
    return tpu_missing_family(t, *err) ? BIND_SKIPPED : BIND_FAILED;
}

/* Pushes true (some address cannot be bound: in use), false (every address
 * could be bound), or nil, err, code. */
static int tpu_bind_probe(lua_State *L, const char *host, int port)
{
    struct tpu_target targets[TPU_MAX_ADDRS];
    char where[INET6_ADDRSTRLEN + 16];
    int i, n, rc, err, first_err = 0, failed = -1, any_free = 0;

    n = tpu_resolve(host, port, 1, targets, &rc);
    if (n == 0)
        return tpu_push_gai_error(L, host, rc);
    for (i = 0; i < n; i++) {
        switch (tpu_bind_one(&targets[i], &err)) {
        case BIND_USED:
            lua_pushboolean(L, 1);
            return 1;
        case BIND_FREE:
            any_free = 1;
            break;
        case BIND_FAILED:
            if (failed < 0) {
                failed = i;
                first_err = err;
            }
            break;
        default:
            break;
        }
    }
    if (failed >= 0) {
        tpu_format_addr(&targets[failed], where, sizeof where);
        return tpu_push_errno(L, "bind", where, first_err);
    }
    if (any_free) {
        lua_pushboolean(L, 0);
        return 1;
    }
    tpu_format_addr(&targets[0], where, sizeof where);
    lua_pushnil(L);
    lua_pushfstring(L, "bind %s: no address of a family this machine has", where);
    lua_pushliteral(L, "EAFNOSUPPORT");
    return 3;
}
