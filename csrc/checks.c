/* Argument checks of the core's functions. They repeat what the Lua layer
 * (lua/tcp_port_used/args.lua) already validated with kinder messages:
 * the core must not crash whoever calls it directly. */

#define TPU_MAX_HOST 1024

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

/* An optional count >= 1, clamped to INT_MAX before it is cast (a
 * lua_Integer or a double beyond int must not wrap into range). */
static int tpu_check_count(lua_State *L, int arg, int def, const char *what)
{
    lua_Number n;
    if (lua_isnoneornil(L, arg))
        return def;
    n = luaL_checknumber(L, arg);
    if (!(n >= 1) || n != floor(n))
        luaL_argerror(L, arg, what);
    return n >= (lua_Number)INT_MAX ? INT_MAX : (int)n;
}

/* "graceful" (default) or "reset": how an accepted probe is closed. The
 * automatic choice between them is made in Lua (policy.lua). */
static int tpu_check_reset(lua_State *L, int arg)
{
    static const char *const modes[] = { "graceful", "reset", NULL };
    return luaL_checkoption(L, arg, "graceful", modes) == 1;
}

/* The transport protocol of a probe: "tcp" (default) or "udp". */
enum { TPU_TCP, TPU_UDP };

static int tpu_check_proto(lua_State *L, int arg)
{
    static const char *const protos[] = { "tcp", "udp", NULL };
    return luaL_checkoption(L, arg, "tcp", protos);
}

/* The socket type of proto. */
static int tpu_sock_type(int proto)
{
    return proto == TPU_UDP ? SOCK_DGRAM : SOCK_STREAM;
}

/***
 * stray_key(t, set): the first key of t that table set lacks (raw
 * lookups), nil when it has them all, false when t is not a table. For
 * the Lua layer's option checks (lua/tcp_port_used/args.lua): one C call
 * that also tells a table from a port, where type() and a call of `next`
 * per key cost a quarter of a bind probe.
 */
static int l_stray_key(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_type(L, 1) != LUA_TTABLE) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_settop(L, 2);
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        lua_pop(L, 1);
        lua_pushvalue(L, 3);
        lua_rawget(L, 2);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            return 1;
        }
        lua_pop(L, 1);
    }
    return 0;
}

static const luaL_Reg tpu_checks_functions[] = {
    { "stray_key", l_stray_key },
    { NULL, NULL }
};
