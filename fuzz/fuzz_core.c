/* libFuzzer harness: drives the C core's Lua-facing functions with
 * arbitrary arguments through a real Lua 5.4 state, under ASan and UBSan.
 * Argument errors are expected (they are caught by lua_pcall); crashes,
 * memory errors, undefined behaviour and leaked descriptors are not.
 *
 * Run it inside a network namespace of its own (make fuzz does), so that
 * fuzzed names and addresses never reach another machine: there, only the
 * loopback exists, other addresses are unreachable and lookups fail fast.
 *
 * Input: one byte picks the function, then each argument is a tag byte
 * followed by its bytes (see push_arg). A first byte of 0xff instead
 * hands the rest, as a netlink reply, to the sock_diag parser behind
 * listen mode, in a buffer of exactly its size so that any read past the
 * end is caught. */
#include "../csrc/core.c"

#include <fcntl.h>
#include <stdint.h>
#include <lualib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct input {
    const uint8_t *p;
    size_t n;
};

static int take(struct input *in, void *out, size_t len)
{
    if (in->n < len)
        return 0;
    memcpy(out, in->p, len);
    in->p += len;
    in->n -= len;
    return 1;
}

/* Pushes one argument; the sleep-like arguments are clamped so that a
 * fuzzed duration cannot stall the run (bad values still get through). */
static void push_arg(lua_State *L, struct input *in, int clamp_ms)
{
    uint8_t tag = 0, len = 0;
    double d;
    int16_t i;
    char buf[256];
    take(in, &tag, 1);
    switch (tag % 7) {
    case 0:
        lua_pushnil(L);
        break;
    case 1:
        if (!take(in, &d, sizeof d))
            d = 0;
        if (clamp_ms && d == d && (d > 20 || d < -20))
            d = fmod(d, 20);
        lua_pushnumber(L, d);
        break;
    case 2:
        if (!take(in, &i, sizeof i))
            i = 0;
        lua_pushinteger(L, clamp_ms && i > 20 ? i % 20 : i);
        break;
    case 3:
        take(in, &len, 1);
        if (len > in->n)
            len = (uint8_t)in->n;
        memcpy(buf, in->p, len);
        take(in, buf, len);
        lua_pushlstring(L, buf, len);
        /* Lua turns "11111111111" into a number where one is expected:
         * as long a sleep as any other */
        if (clamp_ms && lua_isnumber(L, -1) && fabs(lua_tonumber(L, -1)) > 20) {
            lua_pop(L, 1);
            lua_pushliteral(L, "20");
        }
        break;
    case 4:
        lua_pushboolean(L, in->n > 0 && in->p[0] & 1);
        break;
    case 5:
        lua_newtable(L);
        break;
    default: {
        /* a host-like string: a literal address or a name, with brackets,
         * a zone id or a trailing NUL now and then; or a protocol name,
         * for the proto argument that follows host and port */
        static const char *const hosts[] = {
            "127.0.0.1", "::1", "[::1]", "localhost", "0.0.0.0", "::", "fe80::1%lo",
            "192.0.2.1", "[fe80::1%1]", "256.1.1.1", "1.2.3", "[::1", "::ffff:127.0.0.1",
            "nonexistent.invalid", "*", "", "udp", "tcp",
        };
        take(in, &len, 1);
        lua_pushstring(L, hosts[len % (sizeof hosts / sizeof hosts[0])]);
        break;
    }
    }
}

/* The open descriptors but netlink sockets: the state keeps one for its
 * kernel queries on purpose (csrc/listen.c), open from its first query to
 * its __gc, reopened after a failed one. */
static int open_fds(void)
{
    int fd, n = 0, domain;
    socklen_t len;
    for (fd = 0; fd < 1024; fd++) {
        if (fcntl(fd, F_GETFD) == -1)
            continue;
        len = sizeof domain;
        if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_NETLINK)
            continue;
        n++;
    }
    return n;
}

static void fuzz_diag_reply(const uint8_t *data, size_t size)
{
    struct tpu_listeners ls;
    unsigned char *copy;
    size_t i;
    int rc;
    if (size < 1)
        return;
    copy = malloc(size - 1 > 0 ? size - 1 : 1);
    if (copy == NULL)
        return;
    memcpy(copy, data + 1, size - 1);
    memset(&ls, 0, sizeof ls);
    rc = tpu_diag_parse(copy, size - 1, 1, data[0] & 1,
                        tpu_diag_protos[(data[0] & 2) ? TPU_UDP : TPU_TCP].state, &ls);
    free(copy);
    for (i = 0; i < ls.n; i++)
        if (ls.v[i].port < 0 || ls.v[i].port > 65535
            || (ls.v[i].family != AF_INET && ls.v[i].family != AF_INET6))
            abort(); /* the parser let through what it must have refused */
    tpu_listeners_free(&ls);
    if (rc != TPU_DIAG_MORE && rc != TPU_DIAG_DONE && rc <= 0)
        abort(); /* an error must be an errno value */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lua_State *L;
    static const char *const funcs[] = { "connect", "start", "bind", "resolve", "now", "sleep", "ipv6",
                                         "bind_port0", "local_addresses", "listen_exact" };
    struct input in = { data, size };
    uint8_t pick = 0;
    int nargs, before, top;
    const char *fname;

    if (L == NULL) {
        L = luaL_newstate();
        luaL_openlibs(L);
        luaL_requiref(L, "tcp_port_used.core", luaopen_tcp_port_used_core, 0);
        lua_setglobal(L, "core");
    }
    if (size > 0 && data[0] == 0xff) {
        fuzz_diag_reply(data + 1, size - 1);
        return 0;
    }
    before = open_fds();
    top = lua_gettop(L);
    take(&in, &pick, 1);
    fname = funcs[(pick & 0x7f) % (sizeof funcs / sizeof funcs[0])];
    lua_getglobal(L, "core");
    lua_getfield(L, -1, fname);
    for (nargs = 0; nargs < 5 && in.n > 0; nargs++)
        push_arg(L, &in, strcmp(fname, "sleep") == 0 || nargs >= 2);
    if (lua_pcall(L, nargs, LUA_MULTRET, 0) == LUA_OK && (pick & 0x80)
        && lua_type(L, top + 2) == LUA_TUSERDATA) {
        /* a pending probe: poll it, expire it, and close it twice */
        lua_getfield(L, top + 2, "poll");
        lua_pushvalue(L, top + 2);
        lua_pushnumber(L, 1);
        lua_pcall(L, 2, LUA_MULTRET, 0);
        lua_settop(L, top + 2);
        lua_getfield(L, top + 2, "expire");
        lua_pushvalue(L, top + 2);
        lua_pcall(L, 1, LUA_MULTRET, 0);
        lua_settop(L, top + 2);
        lua_getfield(L, top + 2, "close");
        lua_pushvalue(L, top + 2);
        lua_pcall(L, 1, 0, 0);
    }
    lua_settop(L, top);
    lua_gc(L, LUA_GCCOLLECT, 0);
    if (open_fds() != before)
        abort(); /* a descriptor outlived its probe */
    return 0;
}
