/* errno and getaddrinfo results as the codes the Lua side returns
 * ("ECONNREFUSED", "EAI_NONAME"). The core returns codes only: the words
 * for people are one table in lua/tcp_port_used/words.lua. */

static const struct {
    int err;
    const char *name;
} tpu_codes[] = {
    { ECONNREFUSED, "ECONNREFUSED" }, { ETIMEDOUT, "ETIMEDOUT" },
    { EHOSTUNREACH, "EHOSTUNREACH" }, { ENETUNREACH, "ENETUNREACH" },
    { EHOSTDOWN, "EHOSTDOWN" }, { ENETDOWN, "ENETDOWN" },
    { EACCES, "EACCES" }, { EPERM, "EPERM" },
    { EADDRINUSE, "EADDRINUSE" }, { EADDRNOTAVAIL, "EADDRNOTAVAIL" },
    { EAFNOSUPPORT, "EAFNOSUPPORT" }, { EMFILE, "EMFILE" }, { ENFILE, "ENFILE" },
    { ENOBUFS, "ENOBUFS" }, { ENOMEM, "ENOMEM" }, { EINVAL, "EINVAL" },
    { ECONNRESET, "ECONNRESET" }, { ECONNABORTED, "ECONNABORTED" },
    { EPIPE, "EPIPE" }, { EPROTO, "EPROTO" }, { EAGAIN, "EAGAIN" },
    { ENOENT, "ENOENT" }, { ENOTDIR, "ENOTDIR" }, { ENOTSOCK, "ENOTSOCK" },
    { ENAMETOOLONG, "ENAMETOOLONG" }, { EPROTONOSUPPORT, "EPROTONOSUPPORT" },
    { EPROTOTYPE, "EPROTOTYPE" }, { EOPNOTSUPP, "EOPNOTSUPP" },
    { EBADMSG, "EBADMSG" }, { EMSGSIZE, "EMSGSIZE" }, { EINTR, "EINTR" },
    { EBADF, "EBADF" }, { ESRCH, "ESRCH" }, { ELOOP, "ELOOP" },
    { ENOEXEC, "ENOEXEC" }, { E2BIG, "E2BIG" }, { ETXTBSY, "ETXTBSY" },
#if defined(ENOTSUP) && ENOTSUP != EOPNOTSUPP
    { ENOTSUP, "ENOTSUP" },
#endif
    { 0, NULL }
};

/* Pushes the code of errno value err. */
static void tpu_push_code(lua_State *L, int err)
{
    int i;
    for (i = 0; tpu_codes[i].name != NULL; i++)
        if (tpu_codes[i].err == err) {
            lua_pushstring(L, tpu_codes[i].name);
            return;
        }
    lua_pushfstring(L, "ERRNO_%d", err);
}

#ifndef TPU_CODES_ONLY /* tcp_port_used.exec: errno codes, no resolver */
static const char *tpu_gai_code(int rc)
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
    default: return "EAI_FAIL";
    }
}

/* Pushes nil, code: the answer of any function whose first step, the
 * resolution of the host, failed (the Lua side words it "resolve ...").
 * err is an errno value when rc is EAI_SYSTEM or 0. */
static int tpu_push_resolve_error(lua_State *L, int rc, int err)
{
    lua_pushnil(L);
    if (rc == 0 || rc == EAI_SYSTEM)
        tpu_push_code(L, err);
    else
        lua_pushstring(L, tpu_gai_code(rc));
    return 2;
}
#endif
