/* The few Lua 5.2+ auxiliary functions the core uses, for Lua 5.1.
 * LuaJIT 2.1 already has them, so the test is on LUA_VERSION_NUM plus
 * LuaJIT's own marker in luaconf.h (LUAJIT_VERSION is only in luajit.h). */
#ifndef TPU_COMPAT_H
#define TPU_COMPAT_H

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#if LUA_VERSION_NUM < 502
#ifndef LUA_JITLIBNAME
__attribute__((unused))
static void luaL_setfuncs(lua_State *L, const luaL_Reg *l, int nup)
{
    luaL_checkstack(L, nup + 1, "too many upvalues");
    for (; l->name != NULL; l++) {
        int i;
        for (i = 0; i < nup; i++)
            lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}
#endif
#define tpu_rawlen(L, i) lua_objlen((L), (i))
#else
#define tpu_rawlen(L, i) lua_rawlen((L), (i))
#endif

#endif
