/* Listen mode: asking the kernel (NETLINK_SOCK_DIAG) whether a socket
 * listens on a port, and who holds it. Included by core.c. */

static const luaL_Reg tpu_listen_functions[] = {
    { NULL, NULL }
};
