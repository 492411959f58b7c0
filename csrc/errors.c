/* errno and getaddrinfo codes as the names and short messages that the
 * Lua side returns (`nil, message, code`, luv style). Included by core.c. */

struct tpu_errname {
    int err;
    const char *name;
    const char *msg;
};

static const struct tpu_errname tpu_errnames[] = {
    { ECONNREFUSED, "ECONNREFUSED", "connection refused" },
    { ETIMEDOUT, "ETIMEDOUT", "timed out" },
    { EHOSTUNREACH, "EHOSTUNREACH", "host unreachable" },
    { ENETUNREACH, "ENETUNREACH", "network unreachable" },
    { EHOSTDOWN, "EHOSTDOWN", "host is down" },
    { ENETDOWN, "ENETDOWN", "network is down" },
    { EACCES, "EACCES", "permission denied" },
    { EPERM, "EPERM", "operation not permitted" },
    { EADDRINUSE, "EADDRINUSE", "address in use" },
    { EADDRNOTAVAIL, "EADDRNOTAVAIL", "address not available" },
    { EAFNOSUPPORT, "EAFNOSUPPORT", "address family not supported" },
    { EMFILE, "EMFILE", "too many open files" },
    { ENFILE, "ENFILE", "too many open files in system" },
    { ENOBUFS, "ENOBUFS", "no buffer space available" },
    { ENOMEM, "ENOMEM", "out of memory" },
    { EINVAL, "EINVAL", "invalid argument" },
    { ECONNRESET, "ECONNRESET", "connection reset" },
    { ECONNABORTED, "ECONNABORTED", "connection aborted" },
    { EPROTO, "EPROTO", "protocol error" },
    { EAGAIN, "EAGAIN", "resource temporarily unavailable" },
    { ENOENT, "ENOENT", "no such file or directory" },
    { EPROTONOSUPPORT, "EPROTONOSUPPORT", "protocol not supported" },
    { EOPNOTSUPP, "EOPNOTSUPP", "operation not supported" },
    { EBADMSG, "EBADMSG", "malformed reply from the kernel" },
    { EMSGSIZE, "EMSGSIZE", "reply from the kernel larger than expected" },
    { 0, NULL, NULL }
};

static const char *tpu_errno_name(int err)
{
    const struct tpu_errname *e;
    for (e = tpu_errnames; e->name != NULL; e++)
        if (e->err == err)
            return e->name;
    return "EUNKNOWN";
}

static const char *tpu_errno_msg(int err)
{
    const struct tpu_errname *e;
    for (e = tpu_errnames; e->name != NULL; e++)
        if (e->err == err)
            return e->msg;
    return strerror(err);
}

static const char *tpu_gai_name(int rc)
{
    switch (rc) {
    case EAI_NONAME: return "EAI_NONAME";
    case EAI_AGAIN: return "EAI_AGAIN";
    case EAI_FAIL: return "EAI_FAIL";
    case EAI_FAMILY: return "EAI_FAMILY";
    case EAI_MEMORY: return "EAI_MEMORY";
    case EAI_SERVICE: return "EAI_SERVICE";
#ifdef EAI_NODATA
    case EAI_NODATA: return "EAI_NODATA";
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY: return "EAI_ADDRFAMILY";
#endif
    case EAI_SYSTEM: return "EAI_SYSTEM";
    default: return "EAI_FAIL";
    }
}

/* Pushes nil, "<what> <where>: <message>", code and returns 3. */
static int tpu_push_errno(lua_State *L, const char *what, const char *where, int err)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s %s: %s", what, where, tpu_errno_msg(err));
    lua_pushstring(L, tpu_errno_name(err));
    return 3;
}
