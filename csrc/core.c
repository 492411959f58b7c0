/* tcp_port_used.core: single-shot, non-blocking primitives. The retry
 * loops, option parsing and every choice of how to wait live in Lua.
 *
 * One translation unit: the other C files in csrc/ are included here, so
 * that every function can be static and only luaopen_tcp_port_used_core
 * is exported (hosts such as nvim and nginx export thousands of names
 * that would otherwise clash with ours). */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"

#include "errors.c"
#include "addr.c"
#include "probe.c"
#include "bind.c"
#include "many.c"
#include "listen.c"

#define TPU_VERSION "0.1.0"

/* The checks below repeat what the Lua layer already validated, with
 * kinder messages there: the core must not crash whoever calls it. */
static const char *tpu_opt_host(lua_State *L, int arg)
{
    size_t len;
    const char *host;
    if (lua_isnoneornil(L, arg))
        return NULL;
    host = luaL_checklstring(L, arg, &len);
    if (strlen(host) != len)
        luaL_argerror(L, arg, "host must not contain a NUL byte");
    if (len == 0 || len > TPU_MAX_HOST)
        luaL_argerror(L, arg, "host must be 1 to 1024 bytes long");
    return host;
}

static int tpu_check_port(lua_State *L, int arg)
{
    lua_Number n = luaL_checknumber(L, arg);
    if (!(n >= 1 && n <= 65535) || n != floor(n))
        luaL_argerror(L, arg, "port must be an integer in 1..65535");
    return (int)n;
}

static double tpu_check_ms(lua_State *L, int arg, double def)
{
    lua_Number n = luaL_optnumber(L, arg, def);
    if (!(n >= 0) || n > 1e12)
        luaL_argerror(L, arg, "milliseconds must be a number in 0..1e12");
    return (double)n;
}

static int tpu_check_close(lua_State *L, int arg)
{
    static const char *const modes[] = { "auto", "graceful", "reset", NULL };
    return luaL_checkoption(L, arg, "auto", modes);
}

/***
 * connect(host, port [, timeout_ms [, close]]): one connect probe.
 * host nil means 127.0.0.1 and ::1. Returns true (accepted), false (every
 * address refused) or nil, message, code.
 */
static int l_connect(lua_State *L)
{
    struct tpu_probe p;
    const char *host = tpu_opt_host(L, 1);
    int port = tpu_check_port(L, 2);
    double timeout = tpu_check_ms(L, 3, 1000);
    int rc = tpu_probe_begin(&p, host, port, tpu_check_close(L, 4));
    if (rc != 0)
        return tpu_push_gai_error(L, host, rc);
    tpu_probe_wait(&p, timeout, 1);
    return tpu_probe_verdict(L, &p);
}

/***
 * start(host, port [, close]): starts a connect probe without waiting.
 * Returns the answer when it is known at once, else a probe object whose
 * poll(ms) returns the answer or "pending".
 */
static int l_start(lua_State *L)
{
    struct tpu_probe p, *ud;
    const char *host = tpu_opt_host(L, 1);
    int port = tpu_check_port(L, 2);
    int rc = tpu_probe_begin(&p, host, port, tpu_check_close(L, 3));
    if (rc != 0)
        return tpu_push_gai_error(L, host, rc);
    if (!tpu_probe_has(&p, SLOT_PENDING) || tpu_probe_has(&p, SLOT_OPEN))
        return tpu_probe_verdict(L, &p);
    ud = (struct tpu_probe *)lua_newuserdata(L, sizeof *ud);
    ud->closed = 1;
    luaL_getmetatable(L, TPU_METATABLE);
    lua_setmetatable(L, -2);
    *ud = p;
    return 1;
}

static struct tpu_probe *tpu_check_probe(lua_State *L)
{
    return (struct tpu_probe *)luaL_checkudata(L, 1, TPU_METATABLE);
}

/***
 * probe:poll([ms]): waits up to ms (default 0) for the answer. Returns it,
 * or "pending". A closed probe answers nil, "probe closed", "ECLOSED".
 */
static int l_probe_poll(lua_State *L)
{
    struct tpu_probe *p = tpu_check_probe(L);
    double ms = tpu_check_ms(L, 2, 0);
    if (p->closed) {
        lua_pushnil(L);
        lua_pushliteral(L, "probe closed");
        lua_pushliteral(L, "ECLOSED");
        return 3;
    }
    tpu_probe_wait(p, ms, 0);
    return tpu_probe_verdict(L, p);
}

/***
 * probe:expire(): gives up on connects still pending (the attempt's time
 * is up) and returns the final answer.
 */
static int l_probe_expire(lua_State *L)
{
    struct tpu_probe *p = tpu_check_probe(L);
    if (!p->closed) {
        int i;
        for (i = 0; i < p->n; i++)
            if (p->slot[i].state == SLOT_PENDING)
                tpu_slot_finish(&p->slot[i], SLOT_FAILED, ETIMEDOUT, p->close_mode);
    }
    return l_probe_poll(L);
}

/***
 * probe:fds(): the descriptors still connecting, for a host loop to watch
 * for writability (luv's poll handles).
 */
static int l_probe_fds(lua_State *L)
{
    struct tpu_probe *p = tpu_check_probe(L);
    int i, k = 0;
    lua_newtable(L);
    for (i = 0; !p->closed && i < p->n; i++)
        if (p->slot[i].state == SLOT_PENDING) {
            lua_pushinteger(L, p->slot[i].fd);
            lua_rawseti(L, -2, ++k);
        }
    return 1;
}

/* probe:close(), __gc and __close: closes what is still open; idempotent. */
static int l_probe_close(lua_State *L)
{
    tpu_probe_close(tpu_check_probe(L));
    return 0;
}

/***
 * bind(host, port): true if a SO_REUSEADDR socket cannot bind there now
 * (EADDRINUSE), false if it can, nil, message, code otherwise.
 */
static int l_bind(lua_State *L)
{
    const char *host = tpu_opt_host(L, 1);
    return tpu_bind_probe(L, host, tpu_check_port(L, 2));
}

/***
 * resolve(host): the addresses a probe of host would try, as a list of
 * { family = "inet" | "inet6", address = "..." }; nil, message, code.
 */
static int l_resolve(lua_State *L)
{
    struct tpu_target t[TPU_MAX_ADDRS];
    const char *host = tpu_opt_host(L, 1);
    int i, rc, n = tpu_resolve(host, 1, 0, t, &rc);
    if (n == 0)
        return tpu_push_gai_error(L, host, rc);
    lua_createtable(L, n, 0);
    for (i = 0; i < n; i++) {
        char ip[INET6_ADDRSTRLEN];
        const void *a = t[i].sa.ss_family == AF_INET6
            ? (const void *)&((const struct sockaddr_in6 *)&t[i].sa)->sin6_addr
            : (const void *)&((const struct sockaddr_in *)&t[i].sa)->sin_addr;
        inet_ntop(t[i].sa.ss_family, a, ip, sizeof ip);
        lua_createtable(L, 0, 2);
        lua_pushstring(L, t[i].sa.ss_family == AF_INET6 ? "inet6" : "inet");
        lua_setfield(L, -2, "family");
        lua_pushstring(L, ip);
        lua_setfield(L, -2, "address");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/*** now(): milliseconds on the monotonic clock (fractional). */
static int l_now(lua_State *L)
{
    lua_pushnumber(L, tpu_now_ms());
    return 1;
}

/***
 * sleep(ms): blocks the calling thread for ms milliseconds against an
 * absolute monotonic deadline, so signals neither cut it short nor
 * stretch it.
 */
static int l_sleep(lua_State *L)
{
    double ms = tpu_check_ms(L, 1, 0);
    struct timespec ts;
    double end;
    if (ms <= 0)
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    end = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + ms / 1e3;
    ts.tv_sec = (time_t)end;
    ts.tv_nsec = (long)((end - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
    return 0;
}

/*** ipv6(): whether this machine can use IPv6 (::1 can be bound). */
static int l_ipv6(lua_State *L)
{
    lua_pushboolean(L, tpu_ipv6_available());
    return 1;
}

static const luaL_Reg tpu_probe_methods[] = {
    { "poll", l_probe_poll },
    { "expire", l_probe_expire },
    { "fds", l_probe_fds },
    { "close", l_probe_close },
    { NULL, NULL }
};

static const luaL_Reg tpu_functions[] = {
    { "connect", l_connect },
    { "start", l_start },
    { "bind", l_bind },
    { "resolve", l_resolve },
    { "now", l_now },
    { "sleep", l_sleep },
    { "ipv6", l_ipv6 },
    { NULL, NULL }
};

__attribute__((visibility("default")))
int luaopen_tcp_port_used_core(lua_State *L);

int luaopen_tcp_port_used_core(lua_State *L)
{
    if (luaL_newmetatable(L, TPU_METATABLE)) {
        lua_newtable(L);
        luaL_setfuncs(L, tpu_probe_methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_probe_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_probe_close);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_setfuncs(L, tpu_functions, 0);
    luaL_setfuncs(L, tpu_many_functions, 0);
    luaL_setfuncs(L, tpu_listen_functions, 0);
    lua_pushliteral(L, TPU_VERSION);
    lua_setfield(L, -2, "_VERSION");
    return 1;
}
