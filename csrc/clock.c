/* The monotonic clock and the blocking sleep (platform.h chooses how). */

/*** now(): milliseconds on the monotonic clock (fractional). */
static int l_now(lua_State *L)
{
    lua_pushnumber(L, tpu_now_ms());
    return 1;
}

/***
 * sleep(ms): blocks the calling thread for ms milliseconds against the
 * monotonic clock, so signals neither cut it short nor stretch it.
 */
static int l_sleep(lua_State *L)
{
    double ms = tpu_check_ms(L, 1, 0);
    if (ms > 0)
        tpu_sleep_ms(ms);
    return 0;
}

static const luaL_Reg tpu_clock_functions[] = {
    { "now", l_now },
    { "sleep", l_sleep },
    { NULL, NULL }
};
