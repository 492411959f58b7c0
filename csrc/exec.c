/* tcp_port_used.exec: the process primitives of the command-line tool, a
 * module of its own so that the core keeps to what the library uses:
 * execvp for `-- CMD ARGS` (wait-for-it's exec "$@"), and for `run` (a
 * supervisor that stays the parent of its child) spawn, signal delivery
 * through a self-pipe, kill, a non-blocking waitpid, and the readiness
 * notifications of systemd (a datagram to an AF_UNIX socket) and s6 (a
 * line on a descriptor). C returns codes only; the CLI words them.
 * Only luaopen_tcp_port_used_exec is exported. */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compat.h"

#define TPU_CODES_ONLY
#include "codes.c"

static int fail(lua_State *L, int err)
{
    lua_pushnil(L);
    tpu_push_code(L, err);
    return 2;
}

/* argv from the list at index 1, in a userdata the table keeps alive. */
static const char **check_argv(lua_State *L)
{
    const char **argv;
    size_t len;
    int i, n;
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
    return argv;
}

/***
 * exec(argv): replaces the process with argv[1] (searched in PATH), given
 * argv as its arguments. Returns only on failure: nil, code (the caller
 * words it: lua/tcp_port_used/words.lua).
 */
static int l_exec(lua_State *L)
{
    const char **argv = check_argv(L);
    int err;
    execvp(argv[0], (char *const *)argv);
    err = errno;
    lua_pushnil(L);
    tpu_push_code(L, err);
    return 2;
}

/* The write end of the self-pipe the signal handler writes to: a signal
 * handler can reach no Lua state, so this one descriptor is process-wide,
 * as signal dispositions are. */
static int sig_pipe = -1;

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (write(sig_pipe, &b, 1) < 0) {
        /* a full pipe already holds wake-ups enough */
    }
    errno = saved;
}

/***
 * spawn(argv): starts argv[1] (searched in PATH) as a child, with every
 * signal at its default disposition and none blocked. Returns its pid, or
 * nil, code when it could not be started (the exec's errno, reported by
 * the child through a close-on-exec pipe).
 */
static int l_spawn(lua_State *L)
{
    const char **argv = check_argv(L);
    int p[2], err = 0;
    pid_t pid;
    ssize_t n;
    if (pipe2(p, O_CLOEXEC) != 0)
        return fail(L, errno);
    pid = fork();
    if (pid < 0) {
        err = errno;
        close(p[0]);
        close(p[1]);
        return fail(L, err);
    }
    if (pid == 0) {
        sigset_t none;
        int sig;
        for (sig = 1; sig < NSIG; sig++)
            signal(sig, SIG_DFL);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execvp(argv[0], (char *const *)argv);
        err = errno;
        if (write(p[1], &err, sizeof err) < 0) {
            /* the parent then sees no error and reaps status 127 */
        }
        _exit(127);
    }
    close(p[1]);
    do
        n = read(p[0], &err, sizeof err);
    while (n < 0 && errno == EINTR);
    close(p[0]);
    if (n == (ssize_t)sizeof err) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
        return fail(L, err);
    }
    lua_pushinteger(L, pid);
    return 1;
}

/***
 * catch(signals): from now on, each signal in the list of numbers is
 * caught and queued (with SIGCHLD, which wakes `events` when a child
 * ends) instead of acting. true, or nil, code.
 */
static int l_catch(lua_State *L)
{
    struct sigaction sa;
    int i, n, p[2];
    luaL_checktype(L, 1, LUA_TTABLE);
    if (sig_pipe < 0) {
        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0)
            return fail(L, errno);
        sig_pipe = p[1];
        lua_pushinteger(L, p[0]);
        lua_setfield(L, LUA_REGISTRYINDEX, "tcp_port_used.exec signals");
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    n = (int)tpu_rawlen(L, 1);
    for (i = 0; i <= n; i++) {
        int sig = SIGCHLD;
        if (i > 0) {
            lua_rawgeti(L, 1, i);
            sig = (int)lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
        if (sig <= 0 || sig >= NSIG || sigaction(sig, &sa, NULL) != 0)
            return fail(L, sig <= 0 || sig >= NSIG ? EINVAL : errno);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/***
 * events(ms): waits at most ms milliseconds (blocking) for a caught
 * signal and returns the list of signal numbers that arrived since the
 * last call (SIGCHLD among them when a child ended), possibly empty.
 */
static int l_events(lua_State *L)
{
    lua_Number ms = luaL_checknumber(L, 1);
    struct pollfd pfd;
    unsigned char buf[64];
    int fd, k = 0;
    ssize_t n, i;
    lua_getfield(L, LUA_REGISTRYINDEX, "tcp_port_used.exec signals");
    if (lua_isnil(L, -1))
        return luaL_error(L, "events: call catch first");
    fd = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    pfd.fd = fd;
    pfd.events = POLLIN;
    if (ms > 0)
        poll(&pfd, 1, ms > 2147483647 ? 2147483647 : (int)ms);
    lua_newtable(L);
    while ((n = read(fd, buf, sizeof buf)) > 0)
        for (i = 0; i < n; i++) {
            lua_pushinteger(L, buf[i]);
            lua_rawseti(L, -2, ++k);
        }
    return 1;
}

/***
 * kill(pid, sig): true, or nil, code.
 */
static int l_kill(lua_State *L)
{
    lua_Integer pid = luaL_checkinteger(L, 1), sig = luaL_checkinteger(L, 2);
    luaL_argcheck(L, pid > 0, 1, "pid must be a positive integer");
    if (kill((pid_t)pid, (int)sig) != 0)
        return fail(L, errno);
    lua_pushboolean(L, 1);
    return 1;
}

/***
 * reap(pid): nil while the child runs; "exited", code or "killed", signal
 * once it has ended (and is reaped); nil, code on failure (ECHILD).
 */
static int l_reap(lua_State *L)
{
    lua_Integer pid = luaL_checkinteger(L, 1);
    int status;
    pid_t r;
    luaL_argcheck(L, pid > 0, 1, "pid must be a positive integer");
    do
        r = waitpid((pid_t)pid, &status, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return fail(L, errno);
    if (r == 0) {
        lua_pushnil(L);
        return 1;
    }
    if (WIFSIGNALED(status)) {
        lua_pushliteral(L, "killed");
        lua_pushinteger(L, WTERMSIG(status));
    } else {
        lua_pushliteral(L, "exited");
        lua_pushinteger(L, WEXITSTATUS(status));
    }
    return 2;
}

/***
 * notify(address, message): sends message as one datagram to the AF_UNIX
 * socket at address (a path, or an abstract name when it starts with
 * "@"), as sd_notify does. true, or nil, code.
 */
static int l_notify(lua_State *L)
{
    size_t alen, mlen;
    const char *addr = luaL_checklstring(L, 1, &alen);
    const char *msg = luaL_checklstring(L, 2, &mlen);
    struct sockaddr_un sa;
    socklen_t len;
    ssize_t n;
    int fd, err = 0;
    if (alen < 2 || alen >= sizeof sa.sun_path || (addr[0] != '/' && addr[0] != '@'))
        return fail(L, alen >= sizeof sa.sun_path ? ENAMETOOLONG : EINVAL);
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, addr, alen);
    if (addr[0] == '@')
        sa.sun_path[0] = '\0';
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + alen + (addr[0] == '/'));
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail(L, errno);
    do
        n = sendto(fd, msg, mlen, MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        err = errno;
    close(fd);
    if (err != 0)
        return fail(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

/***
 * keep_from_children(fd): marks descriptor fd close-on-exec, so that a
 * spawned child does not inherit it (s6's notification-fd belongs to the
 * supervisor's child, this process). true, or nil, "EBADF".
 */
static int l_keep_from_children(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1);
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) != 0)
        return fail(L, errno);
    lua_pushboolean(L, 1);
    return 1;
}

/***
 * write_close(fd, data): writes data to descriptor fd and closes it (s6's
 * notification: a newline, then the end of the pipe). true, or nil, code.
 */
static int l_write_close(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1), err = 0;
    size_t len, off = 0;
    const char *data = luaL_checklstring(L, 2, &len);
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err = errno;
            break;
        }
        off += (size_t)n;
    }
    if (close(fd) != 0 && err == 0)
        err = errno;
    if (err != 0)
        return fail(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

/***
 * getpid(): this process's pid.
 */
static int l_getpid(lua_State *L)
{
    lua_pushinteger(L, getpid());
    return 1;
}

static int l_call(lua_State *L)
{
    lua_remove(L, 1);
    return l_exec(L);
}

static const struct {
    const char *name;
    int sig;
} signals[] = {
    { "TERM", SIGTERM }, { "INT", SIGINT }, { "HUP", SIGHUP }, { "QUIT", SIGQUIT },
    { "USR1", SIGUSR1 }, { "USR2", SIGUSR2 }, { "WINCH", SIGWINCH }, { "KILL", SIGKILL },
    { "CHLD", SIGCHLD }, { NULL, 0 }
};

static const luaL_Reg functions[] = {
    { "exec", l_exec },
    { "spawn", l_spawn },
    { "catch", l_catch },
    { "events", l_events },
    { "kill", l_kill },
    { "reap", l_reap },
    { "notify", l_notify },
    { "keep_from_children", l_keep_from_children },
    { "write_close", l_write_close },
    { "getpid", l_getpid },
    { NULL, NULL }
};

__attribute__((visibility("default")))
int luaopen_tcp_port_used_exec(lua_State *L);

/* The module is a table of these functions that can also be called as
 * exec itself (require("tcp_port_used.exec")(argv), its first form). */
int luaopen_tcp_port_used_exec(lua_State *L)
{
    int i;
    lua_newtable(L);
    luaL_setfuncs(L, functions, 0);
    lua_newtable(L);
    for (i = 0; signals[i].name != NULL; i++) {
        lua_pushinteger(L, signals[i].sig);
        lua_setfield(L, -2, signals[i].name);
    }
    lua_setfield(L, -2, "SIG");
    lua_newtable(L);
    lua_pushcfunction(L, l_call);
    lua_setfield(L, -2, "__call");
    lua_setmetatable(L, -2);
    return 1;
}
