/* A NOTIFY_SOCKET receiver for spec/run_spec.lua, speaking systemd's side
 * of sd_notify: binds an AF_UNIX datagram socket at argv[1] (a path, or an
 * abstract name when it starts with '@'), asks the kernel for each
 * sender's credentials (SO_PASSCRED, as systemd does to apply
 * NotifyAccess=), prints "bound", then one line per datagram:
 * "pid=<sender pid> <payload with newlines as '|'>". It ends by itself
 * after two minutes, should a spec fail before it stops it. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct sockaddr_un sa;
    size_t len;
    int fd, on = 1;
    if (argc != 2 || (len = strlen(argv[1])) < 2 || len >= sizeof sa.sun_path)
        return 2;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, argv[1], len);
    if (argv[1][0] == '@')
        sa.sun_path[0] = '\0';
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0
        || bind(fd, (struct sockaddr *)&sa,
                (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (argv[1][0] == '/'))) != 0) {
        perror("notify_recv");
        return 1;
    }
    alarm(120);
    printf("bound\n");
    fflush(stdout);
    for (;;) {
        char buf[4096], ctl[CMSG_SPACE(sizeof(struct ucred))];
        struct iovec iov = { buf, sizeof buf - 1 };
        struct msghdr m;
        struct cmsghdr *c;
        long pid = 0;
        ssize_t n, i;
        memset(&m, 0, sizeof m);
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl;
        m.msg_controllen = sizeof ctl;
        n = recvmsg(fd, &m, 0);
        if (n < 0)
            return 1;
        for (c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
                struct ucred u;
                memcpy(&u, CMSG_DATA(c), sizeof u);
                pid = u.pid;
            }
        for (i = 0; i < n; i++)
            if (buf[i] == '\n')
                buf[i] = '|';
        buf[n] = '\0';
        printf("pid=%ld %s\n", pid, buf);
        fflush(stdout);
    }
}
