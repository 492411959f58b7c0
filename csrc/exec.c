/* tcp_port_used.exec: execvp for the command-line tool's `-- CMD ARGS`
 * (wait-for-it's exec "$@"), a module of its own so that the core keeps
 * to what the library uses. Only luaopen_tcp_port_used_exec is exported. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <unistd.h>

#include "compat.h"

#define TPU_CODES_ONLY
#include "codes.c"

/***
 * exec(argv): replaces the process with argv[1] (searched in PATH), given
 * argv as its arguments. Returns only on failure: nil, code (the caller
 * words it: lua/tcp_port_used/words.lua).
 */
static int l_exec(lua_State *L)
{
    const char **argv;
    size_t len;
    int i, n, err;
    luaL_checktype(L, 1, LUA_TTABLE);
    len = tpu_rawlen(L, 1);
    /* checked before the cast: a length beyond int must not wrap into range */
    luaL_argcheck(L, len >= 1 && len < 65536, 1, "argv must be a list of 1 to 65535 strings");
    n = (int)len;
    argv = (const char **)lua_newuserdata(L, (size_t)(n + 1) * sizeof *argv);
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, 1, i + 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_argerror(L, 1, "argv must be a non-empty list of strings");
        /* the table keeps the string alive after the pop */
        argv[i] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    argv[n] = NULL;
    execvp(argv[0], (char *const *)argv);
    err = errno;
    lua_pushnil(L);
    tpu_push_code(L, err);
    return 2;
}

__attribute__((visibility("default")))
int luaopen_tcp_port_used_exec(lua_State *L);

int luaopen_tcp_port_used_exec(lua_State *L)
{
    lua_pushcfunction(L, l_exec);
    return 1;
}
