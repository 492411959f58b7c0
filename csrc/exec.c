/* tcp_port_used.exec: execvp for the command-line tool's `-- CMD ARGS`
 * (wait-for-it's exec "$@"), a module of its own so that the core keeps
 * to what the library uses. Only luaopen_tcp_port_used_exec is exported. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "compat.h"

/***
 * exec(argv): replaces the process with argv[1] (searched in PATH), given
 * argv as its arguments. Returns only on failure: nil, message, code.
 */
static int l_exec(lua_State *L)
{
    const char **argv;
    int i, n, err;
    luaL_checktype(L, 1, LUA_TTABLE);
    n = (int)tpu_rawlen(L, 1);
    luaL_argcheck(L, n >= 1, 1, "argv must be a non-empty list of strings");
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
    lua_pushfstring(L, "exec %s: %s", argv[0], strerror(err));
    lua_pushstring(L, err == ENOENT ? "ENOENT" : err == EACCES ? "EACCES" : "EXEC");
    return 3;
}

__attribute__((visibility("default")))
int luaopen_tcp_port_used_exec(lua_State *L);

int luaopen_tcp_port_used_exec(lua_State *L)
{
    lua_pushcfunction(L, l_exec);
    return 1;
}
