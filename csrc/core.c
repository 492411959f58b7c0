/* tcp_port_used.core: the platform half of the module. Sockets, address
 * resolution, the kernel's socket tables, a monotonic clock and a sleep.
 * Each probe reports one raw outcome per address (accepted, refused, or
 * an errno code); the answer, the retry policy and the words are made in
 * Lua (lua/tcp_port_used/verdict.lua, policy.lua, words.lua). Functions
 * that can block say so, and for how long; none yields.
 *
 * One translation unit: the other C files in csrc/ are included here, so
 * that every function can be static and only luaopen_tcp_port_used_core
 * is exported (hosts such as nvim and nginx export thousands of names
 * that would otherwise clash with ours). Each file registers its own
 * functions. */
#include "platform.h" /* first: its feature macros precede every system header */

#include <arpa/inet.h>
#include <math.h>
#include <netdb.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"

#include "codes.c"
#include "checks.c"
#include "resolve.c"
#include "connect.c"
#include "stream.c"
#include "bind.c"
#include "many.c"
#include "clock.c"
#include "diag.c"
#include "procnet.c"
#include "owner.c"
#include "listen.c"
#include "procs.c"

#define TPU_VERSION "0.2.0"

__attribute__((visibility("default")))
int luaopen_tcp_port_used_core(lua_State *L);

int luaopen_tcp_port_used_core(lua_State *L)
{
    lua_newtable(L);
    tpu_connect_open(L);
    tpu_stream_open(L);
    luaL_setfuncs(L, tpu_checks_functions, 0);
    luaL_setfuncs(L, tpu_resolve_functions, 0);
    luaL_setfuncs(L, tpu_bind_functions, 0);
    luaL_setfuncs(L, tpu_many_functions, 0);
    luaL_setfuncs(L, tpu_clock_functions, 0);
    tpu_listen_open(L);
    luaL_setfuncs(L, tpu_procs_functions, 0);
    lua_pushliteral(L, TPU_VERSION);
    lua_setfield(L, -2, "_VERSION");
    return 1;
}
