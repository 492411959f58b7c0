/* Many probes at once (check_many). Included by core.c. */

static const luaL_Reg tpu_many_functions[] = {
    { NULL, NULL }
};
