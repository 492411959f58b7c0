/* A stream for readiness exchanges (lua/tcp_port_used/ready/): one
 * non-blocking connection to one address, TCP or a Unix-domain socket,
 * with send and recv that never wait longer than the caller says (0: not
 * at all). The Lua side (lua/tcp_port_used/transport/stream.lua) gives it
 * the LuaSocket-style send/receive the exchanges use, and passes the time
 * between calls as the wait chose (sleeping, yielding or blocking here). */

#include <sys/un.h>

#define TPU_STREAM_METATABLE "tcp_port_used.stream"
/* What close reads and drops so that unread input does not turn the
 * close into a reset (which servers log). */
#define TPU_STREAM_DRAIN 65536
#define TPU_STREAM_CHUNK 8192

enum { STREAM_CLOSED, STREAM_CONNECTING, STREAM_OPEN };

struct tpu_stream {
    int fd;
    int state;
    int tcp;                   /* t holds the peer: the self-connect check */
    struct tpu_target t;
};

static struct tpu_stream *tpu_check_stream(lua_State *L)
{
    return (struct tpu_stream *)luaL_checkudata(L, 1, TPU_STREAM_METATABLE);
}

/* The object that owns the descriptor exists before it. */
static struct tpu_stream *tpu_stream_new(lua_State *L)
{
    struct tpu_stream *s = (struct tpu_stream *)lua_newuserdata(L, sizeof *s);
    s->fd = -1;
    s->state = STREAM_CLOSED;
    s->tcp = 0;
    luaL_getmetatable(L, TPU_STREAM_METATABLE);
    lua_setmetatable(L, -2);
    return s;
}

/* Closes without reading; with reset, a reset (SO_LINGER 0). */
static void tpu_stream_shut(struct tpu_stream *s, int reset)
{
    if (s->fd >= 0) {
        if (reset)
            tpu_close_reset(s->fd);
        else
            close(s->fd);
    }
    s->fd = -1;
    s->state = STREAM_CLOSED;
}

/* Pushes the outcome of a connect that has finished with err (0: done):
 * true (connected), false (refused, or reached itself) or the code. A
 * failed stream is closed. */
static int tpu_stream_outcome(lua_State *L, struct tpu_stream *s, int err)
{
    if (err == 0 && s->tcp && tpu_self_connected(s->fd, &s->t)) {
        tpu_stream_shut(s, 1);
        err = ECONNREFUSED;
    }
    if (err == 0) {
        s->state = STREAM_OPEN;
        lua_pushboolean(L, 1);
        return 1;
    }
    tpu_stream_shut(s, 0);
    if (err == ECONNREFUSED)
        lua_pushboolean(L, 0);
    else
        tpu_push_code(L, err);
    return 1;
}

/* Starts the connect of s->fd to sa; pushes true, "pending", false or
 * the code. */
static int tpu_stream_start(lua_State *L, struct tpu_stream *s, const struct sockaddr *sa,
                            socklen_t len)
{
    int err;
    if (connect(s->fd, sa, len) == 0)
        return tpu_stream_outcome(L, s, 0);
    if (errno != EINPROGRESS && errno != EINTR)
        return tpu_stream_outcome(L, s, errno);
    if (tpu_connect_ask(s->fd, sa, len, &err))
        return tpu_stream_outcome(L, s, err);
    s->state = STREAM_CONNECTING;
    lua_pushliteral(L, "pending");
    return 1;
}

/***
 * stream(address, port): a stream connecting to one address literal (no
 * name: nothing here resolves) and port, without waiting. Returns the
 * stream and its state: true (connected), "pending" (see connected),
 * false (refused) or a code; a stream that failed is closed already.
 */
static int l_stream(lua_State *L)
{
    struct tpu_stream *s;
    struct in_addr a4;
    struct in6_addr a6;
    char name[INET6_ADDRSTRLEN + 2];
    const char *address = luaL_checkstring(L, 1);
    int port = tpu_check_port(L, 2);
    s = tpu_stream_new(L);
    if (strlen(address) >= sizeof name)
        return luaL_argerror(L, 1, "an IPv4 or IPv6 address literal expected");
    tpu_strip_brackets(address, name, sizeof name);
    if (inet_pton(AF_INET, name, &a4) == 1 && tpu_ipv4_canonical(name))
        tpu_set_v4(&s->t, &a4, port);
    else if (inet_pton(AF_INET6, name, &a6) == 1)
        tpu_set_v6(&s->t, &a6, port);
    else
        return luaL_argerror(L, 1, "an IPv4 or IPv6 address literal expected");
    s->tcp = 1;
    s->fd = tpu_socket(s->t.sa.ss_family, SOCK_STREAM, 1);
    if (s->fd < 0)
        return 1 + tpu_stream_outcome(L, s, errno);
    return 1 + tpu_stream_start(L, s, (const struct sockaddr *)&s->t.sa, s->t.len);
}

/***
 * stream_unix(path): a stream connecting to the Unix-domain socket at
 * path, as stream does: no file there is "ENOENT", a file nobody listens
 * on is false, a path too long for a socket address "ENAMETOOLONG".
 */
static int l_stream_unix(lua_State *L)
{
    struct tpu_stream *s;
    struct sockaddr_un sun;
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    s = tpu_stream_new(L);
    if (strlen(path) != len)
        return luaL_argerror(L, 1, "path must not contain a NUL byte");
    if (len == 0 || len >= sizeof sun.sun_path)
        return 1 + tpu_stream_outcome(L, s, len == 0 ? ENOENT : ENAMETOOLONG);
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, len);
    s->fd = tpu_socket(AF_UNIX, SOCK_STREAM, 1);
    if (s->fd < 0)
        return 1 + tpu_stream_outcome(L, s, errno);
    return 1 + tpu_stream_start(L, s, (const struct sockaddr *)&sun, (socklen_t)sizeof sun);
}

/* Waits up to ms for events on the stream's descriptor: 1 when they came
 * (or an error or hang-up, which the next call reports), 0 when the time
 * passed, -1 with errno. Blocks the calling thread for at most ms. */
static int tpu_stream_wait(const struct tpu_stream *s, short events, double ms)
{
    double deadline = tpu_now_ms() + ms;
    for (;;) {
        struct pollfd pfd;
        int rc;
        pfd.fd = s->fd;
        pfd.events = events;
        pfd.revents = 0;
        rc = poll(&pfd, 1, tpu_poll_ms(deadline - tpu_now_ms()));
        if (rc >= 0)
            return rc > 0;
        if (errno != EINTR)
            return -1;
    }
}

static int tpu_stream_closed(lua_State *L)
{
    lua_pushnil(L);
    lua_pushliteral(L, "ECLOSED");
    return 2;
}

/* nil, the code of err. */
static int tpu_stream_fail(lua_State *L, int err)
{
    lua_pushnil(L);
    tpu_push_code(L, err);
    return 2;
}

/***
 * s:connected([ms]): waits up to ms (default 0) for a pending connect;
 * returns true, "pending", false (refused) or a code, as stream does.
 * Blocks the calling thread for at most ms.
 */
static int l_stream_connected(lua_State *L)
{
    struct tpu_stream *s = tpu_check_stream(L);
    double ms = tpu_check_ms(L, 2, 0);
    int err = 0, rc;
    socklen_t len = sizeof err;
    if (s->state == STREAM_OPEN) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (s->state == STREAM_CLOSED)
        return tpu_stream_closed(L);
    rc = tpu_stream_wait(s, POLLOUT, ms);
    if (rc == 0) {
        lua_pushliteral(L, "pending");
        return 1;
    }
    if (rc < 0)
        err = errno;
    else if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    return tpu_stream_outcome(L, s, err);
}

/***
 * s:send(data [, i [, ms]]): sends data from byte i (default 1) on,
 * waiting up to ms (default 0) for room. Returns the bytes sent (0: no
 * room yet), or nil, code. Never raises SIGPIPE.
 */
static int l_stream_send(lua_State *L)
{
    struct tpu_stream *s = tpu_check_stream(L);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    lua_Integer i = luaL_optinteger(L, 3, 1);
    double ms = tpu_check_ms(L, 4, 0);
    if (s->state != STREAM_OPEN)
        return tpu_stream_closed(L);
    if (i < 1)
        i = 1;
    while ((size_t)i <= len) {
        int rc;
        ssize_t n = send(s->fd, data + i - 1, len - (size_t)(i - 1), TPU_NOSIGPIPE);
        if (n >= 0) {
            lua_pushinteger(L, (lua_Integer)n);
            return 1;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return tpu_stream_fail(L, errno);
        rc = ms > 0 ? tpu_stream_wait(s, POLLOUT, ms) : 0;
        ms = 0;
        if (rc < 0)
            return tpu_stream_fail(L, errno);
        if (rc == 0)
            break;
    }
    lua_pushinteger(L, 0);
    return 1;
}

/***
 * s:recv([ms]): what has arrived (at most 8 KiB), waiting up to ms
 * (default 0) for it. Returns the data; "" once the peer closed; false
 * when nothing came in time; nil, code on an error (a reset is
 * "ECONNRESET").
 */
static int l_stream_recv(lua_State *L)
{
    struct tpu_stream *s = tpu_check_stream(L);
    double ms = tpu_check_ms(L, 2, 0);
    char buf[TPU_STREAM_CHUNK];
    ssize_t n;
    if (s->state != STREAM_OPEN)
        return tpu_stream_closed(L);
    /* Allowed to wait, it waits first: a reply is rarely there the moment
     * a request has gone, and poll then recv is one call less than recv,
     * poll, recv. */
    if (ms > 0 && tpu_stream_wait(s, POLLIN, ms) < 0)
        return tpu_stream_fail(L, errno);
    do
        n = recv(s->fd, buf, sizeof buf, 0);
    while (n < 0 && errno == EINTR);
    if (n >= 0) {
        lua_pushlstring(L, buf, (size_t)n);
        return 1;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK)
        return tpu_stream_fail(L, errno);
    lua_pushboolean(L, 0);
    return 1;
}

/*** s:fd(): the descriptor (for a host loop to watch), or nil once closed. */
static int l_stream_fd(lua_State *L)
{
    struct tpu_stream *s = tpu_check_stream(L);
    if (s->fd < 0)
        return 0;
    lua_pushinteger(L, s->fd);
    return 1;
}

/* Closes s as an ordinary client (FIN): input that has arrived unread is
 * read and dropped first, since closing over it would send a reset.
 * Never blocks (the socket is non-blocking: recv takes what is there). */
static void tpu_stream_close(struct tpu_stream *s, int reset)
{
    if (s->fd >= 0 && !reset && s->state == STREAM_OPEN) {
        char buf[TPU_STREAM_CHUNK];
        size_t total = 0;
        ssize_t n;
        while (total < TPU_STREAM_DRAIN
               && ((n = recv(s->fd, buf, sizeof buf, 0)) > 0
                   || (n < 0 && errno == EINTR)))
            if (n > 0)
                total += (size_t)n;
    }
    tpu_stream_shut(s, reset);
}

/***
 * s:close([how]): closes as an ordinary client (FIN), or with a reset when
 * how is "reset". Idempotent. Never blocks.
 */
static int l_stream_close(lua_State *L)
{
    struct tpu_stream *s = tpu_check_stream(L);
    static const char *const hows[] = { "graceful", "reset", NULL };
    tpu_stream_close(s, luaL_checkoption(L, 2, "graceful", hows) == 1);
    return 0;
}

/* __gc and __close: the graceful close (5.4 passes __close an error
 * object, which is no "how"). */
static int l_stream_gc(lua_State *L)
{
    tpu_stream_close(tpu_check_stream(L), 0);
    return 0;
}

static const luaL_Reg tpu_stream_methods[] = {
    { "connected", l_stream_connected },
    { "send", l_stream_send },
    { "recv", l_stream_recv },
    { "fd", l_stream_fd },
    { "close", l_stream_close },
    { NULL, NULL }
};

static const luaL_Reg tpu_stream_functions[] = {
    { "stream", l_stream },
    { "stream_unix", l_stream_unix },
    { NULL, NULL }
};

static void tpu_stream_open(lua_State *L)
{
    if (luaL_newmetatable(L, TPU_STREAM_METATABLE)) {
        lua_newtable(L);
        luaL_setfuncs(L, tpu_stream_methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_stream_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_stream_gc);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    luaL_setfuncs(L, tpu_stream_functions, 0);
}
