/* A NETLINK_SOCK_DIAG client (Linux): asks the kernel whether a socket
 * listens on a port, and lists listening sockets, of TCP or UDP.
 *
 * One port: an exact inet_diag lookup per address. The kernel answers it
 * with the same lookup an incoming SYN gets (established sockets first,
 * then the listener for daddr:dport, wildcards and dual-stack [::]
 * included), so the answer is "would a connection reach a listener", it
 * sends no packet, and its cost does not depend on how many sockets the
 * machine has. Many ports, or any local address: one dump per family of
 * the listening sockets only, filtered in the kernel by a bytecode range
 * on the source port. Listeners are collected in C memory (struct
 * tpu_listeners) and reach Lua only once the whole reply is read. */

#ifdef TPU_LINUX

#define TPU_TCP_LISTEN 10
#define TPU_TCP_CLOSE 7
#define TPU_TCP_TIME_WAIT 6
/* The kernel never builds a dump datagram larger than this (netlink caps
 * its dump allocation at 32 KiB); anything larger is refused as malformed. */
#define TPU_DIAG_BUF 32768
#define TPU_DIAG_MORE (-1)
#define TPU_DIAG_DONE 0

/* What listening is in the kernel's table of each protocol (indexed by
 * TPU_TCP, TPU_UDP): a TCP socket in LISTEN; a UDP socket that is bound
 * and not connected (the kernel keeps it in TCP_CLOSE), which receives
 * datagrams from anyone. A connected UDP socket (ESTABLISHED) hears only
 * its peer: a client's, not a server's. */
static const struct tpu_diag_proto {
    unsigned char ipproto;
    int state;
} tpu_diag_protos[] = { { IPPROTO_TCP, TPU_TCP_LISTEN }, { IPPROTO_UDP, TPU_TCP_CLOSE } };

struct tpu_listener {
    int family;
    unsigned char addr[16];
    int port;
    int v6only;            /* 1, 0, or -1 where the backend cannot tell */
    unsigned long uid;
    unsigned long inode;
    long queue;            /* a TCP listener's accept queue, -1 where unknown */
    long backlog;          /* its backlog (the queue's limit), -1 where unknown */
};

/* A growable list of listeners in C memory; err is ENOMEM once an
 * allocation failed (the list is then incomplete and must not be used). */
struct tpu_listeners {
    struct tpu_listener *v;
    size_t n, cap;
    int err;
};

static void tpu_listeners_add(struct tpu_listeners *ls, const struct tpu_listener *l)
{
    if (ls->err != 0)
        return;
    if (ls->n == ls->cap) {
        size_t cap = ls->cap ? ls->cap * 2 : 16;
        struct tpu_listener *v = (struct tpu_listener *)realloc(ls->v, cap * sizeof *v);
        if (v == NULL) {
            ls->err = ENOMEM;
            return;
        }
        ls->v = v;
        ls->cap = cap;
    }
    ls->v[ls->n++] = *l;
}

static void tpu_listeners_free(struct tpu_listeners *ls)
{
    free(ls->v);
    ls->v = NULL;
    ls->n = ls->cap = 0;
}

/* Parses one datagram of a sock_diag reply, adding every socket in state
 * to ls. Returns TPU_DIAG_MORE (a dump goes on), TPU_DIAG_DONE, or
 * an errno value: the kernel's error, or EBADMSG for anything that is not
 * a well-formed reply to request seq. Every field is copied out with
 * memcpy and every length is checked against what is left of the buffer,
 * so a hostile or truncated reply cannot make it read past len. */
static int tpu_diag_parse(const unsigned char *buf, size_t len, unsigned seq, int dump,
                          int state, struct tpu_listeners *ls)
{
    size_t off = 0;
    int seen = 0;
    while (len - off >= sizeof(struct nlmsghdr)) {
        struct nlmsghdr h;
        const unsigned char *body;
        size_t blen, step;
        memcpy(&h, buf + off, sizeof h);
        if (h.nlmsg_len < NLMSG_HDRLEN || h.nlmsg_len > len - off || h.nlmsg_seq != seq)
            return EBADMSG;
        if (h.nlmsg_flags & NLM_F_DUMP_INTR)
            return EAGAIN;
        body = buf + off + NLMSG_HDRLEN;
        blen = h.nlmsg_len - NLMSG_HDRLEN;
        if (h.nlmsg_type == NLMSG_DONE) {
            int rc = 0;
            if (blen >= sizeof rc)
                memcpy(&rc, body, sizeof rc);
            if (rc > 0 || rc < -4095)
                return EBADMSG;
            return rc < 0 ? -rc : TPU_DIAG_DONE;
        }
        if (h.nlmsg_type == NLMSG_ERROR) {
            struct nlmsgerr e;
            if (blen < sizeof e)
                return EBADMSG;
            memcpy(&e, body, sizeof e);
            if (e.error >= 0 || e.error < -4095)
                return EBADMSG;
            return -e.error;
        }
        if (h.nlmsg_type == SOCK_DIAG_BY_FAMILY) {
            struct inet_diag_msg m;
            struct tpu_listener l;
            size_t aoff = NLMSG_ALIGN(sizeof m);
            if (blen < sizeof m)
                return EBADMSG;
            memcpy(&m, body, sizeof m);
            if (m.idiag_family != AF_INET && m.idiag_family != AF_INET6)
                return EBADMSG;
            memset(&l, 0, sizeof l);
            l.family = m.idiag_family;
            memcpy(l.addr, m.id.idiag_src, m.idiag_family == AF_INET ? 4 : 16);
            l.port = ntohs(m.id.idiag_sport);
            l.uid = m.idiag_uid;
            l.inode = m.idiag_inode;
            l.v6only = m.idiag_family == AF_INET6 ? -1 : 0;
            /* for a listener the kernel puts its accept queue's length in
             * rqueue and its backlog in wqueue (inet_diag's sk_diag_fill) */
            l.queue = state == TPU_TCP_LISTEN ? (long)m.idiag_rqueue : -1;
            l.backlog = state == TPU_TCP_LISTEN ? (long)m.idiag_wqueue : -1;
            while (aoff < blen) {
                struct nlattr a;
                if (blen - aoff < NLA_HDRLEN)
                    return EBADMSG;
                memcpy(&a, body + aoff, sizeof a);
                if (a.nla_len < NLA_HDRLEN || a.nla_len > blen - aoff)
                    return EBADMSG;
                if ((a.nla_type & NLA_TYPE_MASK) == INET_DIAG_SKV6ONLY && a.nla_len > NLA_HDRLEN
                    && l.family == AF_INET6)
                    l.v6only = body[aoff + NLA_HDRLEN] != 0;
                step = NLA_ALIGN(a.nla_len);
                aoff += step < blen - aoff ? step : blen - aoff;
            }
            if (m.idiag_state == state)
                tpu_listeners_add(ls, &l);
            seen = 1;
        } else {
            return EBADMSG;
        }
        step = NLMSG_ALIGN(h.nlmsg_len);
        off += step < len - off ? step : len - off;
        if (!dump && seen)
            return off == len ? TPU_DIAG_DONE : EBADMSG;
    }
    if (off != len)
        return EBADMSG;
    return dump ? TPU_DIAG_MORE : EBADMSG;
}

static int tpu_diag_open(int *fd)
{
    *fd = tpu_socket_of(AF_NETLINK, SOCK_DGRAM, NETLINK_SOCK_DIAG, 1);
    return *fd < 0 ? errno : 0;
}

/* Sends one request and reads its whole reply (a socket left with part
 * of a reply after a failure is closed by its owner, listen.c, so the
 * sequence number needs no state of its own). The kernel answers during
 * sendto (and refills a dump during each recv), so the reply is there
 * when recv runs; the poll is only a guard against a kernel that defers
 * it, and blocks for at most a second in all. */
static int tpu_diag_ask(int fd, struct nlmsghdr *req, unsigned seq, int dump, int state,
                        struct tpu_listeners *ls)
{
    unsigned char buf[TPU_DIAG_BUF] __attribute__((aligned(8)));
    struct sockaddr_nl kernel;
    double deadline;
    ssize_t n;
    int rc;

    memset(&kernel, 0, sizeof kernel);
    kernel.nl_family = AF_NETLINK;
    req->nlmsg_seq = seq;
    do
        n = sendto(fd, req, req->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno;
    /* one second in all, on the monotonic clock: a signal cuts a poll
     * short, and the next polls for the time left, not a second anew */
    deadline = tpu_now_ms() + 1000;
    do {
        struct pollfd pfd;
        n = recv(fd, buf, sizeof buf, MSG_TRUNC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            double left = deadline - tpu_now_ms();
            if (left <= 0)
                return ETIMEDOUT;
            pfd.fd = fd;
            pfd.events = POLLIN;
            poll(&pfd, 1, tpu_poll_ms(left));
            continue;
        }
        if (n < 0)
            return errno;
        if ((size_t)n > sizeof buf)
            return EMSGSIZE;
        if (n == 0)
            return EBADMSG;
        rc = tpu_diag_parse(buf, (size_t)n, seq, dump, state, ls);
        if (rc != TPU_DIAG_MORE)
            return rc;
    } while (1);
}

struct tpu_diag_exact_req {
    struct nlmsghdr nlh;
    struct inet_diag_req_v2 r;
};

/* Would a connection (TCP) or a datagram (UDP) to t reach a listening
 * socket of proto? 0, the socket (if any) added to ls, or errno.
 *
 * The kernel looks a TCP socket up by the local end in idiag_src and
 * idiag_sport, but a UDP socket as the receiver of a datagram from
 * idiag_src:idiag_sport to idiag_dst:idiag_dport (net/ipv4/udp_diag.c
 * swaps them "for historical reasons"): for UDP the address goes in dst,
 * and the zero source matches no connected socket, only listening ones. */
static int tpu_diag_exact_into(int fd, const struct tpu_target *t, int proto,
                               struct tpu_listeners *ls)
{
    struct tpu_diag_exact_req q;
    const struct tpu_diag_proto *dp = &tpu_diag_protos[proto];
    __be16 *port = proto == TPU_UDP ? &q.r.id.idiag_dport : &q.r.id.idiag_sport;
    __be32 *addr = proto == TPU_UDP ? q.r.id.idiag_dst : q.r.id.idiag_src;
    int rc;
    memset(&q, 0, sizeof q);
    q.nlh.nlmsg_len = sizeof q;
    q.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    q.nlh.nlmsg_flags = NLM_F_REQUEST;
    q.r.sdiag_protocol = dp->ipproto;
    q.r.idiag_states = 1u << dp->state;
    q.r.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
    q.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    if (t->sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&t->sa;
        *port = s6->sin6_port;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            /* a v4-mapped address is reached over IPv4 */
            q.r.sdiag_family = AF_INET;
            memcpy(addr, s6->sin6_addr.s6_addr + 12, 4);
        } else {
            q.r.sdiag_family = AF_INET6;
            memcpy(addr, &s6->sin6_addr, 16);
        }
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&t->sa;
        q.r.sdiag_family = AF_INET;
        *port = s4->sin_port;
        memcpy(addr, &s4->sin_addr, 4);
    }
    rc = tpu_diag_ask(fd, &q.nlh, 1, 0, dp->state, ls);
    if (rc == 0 && ls->err != 0)
        rc = ls->err;
    return rc == ENOENT ? 0 : rc;
}

/* The same lookup, answering whether it found a listener. */
static int tpu_diag_exact(int fd, const struct tpu_target *t, int proto, int *found)
{
    struct tpu_listeners ls;
    int rc;
    memset(&ls, 0, sizeof ls);
    rc = tpu_diag_exact_into(fd, t, proto, &ls);
    *found = rc == 0 && ls.n > 0;
    tpu_listeners_free(&ls);
    return rc;
}

/* Whether exact lookups of proto work here: a listener of our own must
 * be found. Without this, a kernel lacking tcp_diag or udp_diag (it
 * answers ENOENT, the same as "nothing listens") would make every port
 * look free. 0, or errno (EOPNOTSUPP for such a kernel). Asked once per
 * protocol and Lua state, which keeps the answer
 * (lua/tcp_port_used/listen.lua). */
static int tpu_diag_verify(int proto)
{
    struct tpu_target t;
    struct sockaddr_in s4;
    struct in_addr lo;
    socklen_t len = sizeof s4;
    int rc, found = 0, l, fd;

    rc = tpu_diag_open(&fd);
    if (rc != 0)
        return rc;
    l = tpu_socket(AF_INET, tpu_sock_type(proto), 1);
    if (l < 0) {
        rc = errno;
        close(fd);
        return rc;
    }
    lo.s_addr = htonl(INADDR_LOOPBACK);
    tpu_set_v4(&t, &lo, 0);
    if (bind(l, (struct sockaddr *)&t.sa, t.len) != 0
        || (proto == TPU_TCP && listen(l, 1) != 0)
        || getsockname(l, (struct sockaddr *)&s4, &len) != 0) {
        rc = errno;
    } else {
        ((struct sockaddr_in *)&t.sa)->sin_port = s4.sin_port;
        rc = tpu_diag_exact(fd, &t, proto, &found);
        if (rc == 0 && !found)
            rc = EOPNOTSUPP;
    }
    close(l);
    close(fd);
    return rc;
}

struct tpu_diag_dump_req {
    struct nlmsghdr nlh;
    struct inet_diag_req_v2 r;
    struct nlattr bc_attr;
    struct inet_diag_bc_op bc[4];
};

/* Adds to ls the sockets of protocol ipproto and one family in state
 * with lo <= port <= hi, the local port (remote = 0) or the remote one
 * (remote = 1), by a dump that the kernel filters with a bytecode range
 * on that port. A dump interrupted by a change of the table starts over. */
static int tpu_diag_dump_in(int fd, int family, int lo, int hi, unsigned char ipproto, int state,
                            int remote, struct tpu_listeners *ls)
{
    struct tpu_diag_dump_req q;
    int rc, tries = 0;
    memset(&q, 0, sizeof q);
    q.nlh.nlmsg_len = sizeof q;
    q.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    q.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    q.r.sdiag_family = (unsigned char)family;
    q.r.sdiag_protocol = ipproto;
    q.r.idiag_states = 1u << state;
    q.bc_attr.nla_len = NLA_HDRLEN + sizeof q.bc;
    q.bc_attr.nla_type = INET_DIAG_REQ_BYTECODE;
    /* port >= lo, else reject (jump 4 bytes past the end);
     * port <= hi, else reject; falling off the end accepts. */
    q.bc[0].code = remote ? INET_DIAG_BC_D_GE : INET_DIAG_BC_S_GE;
    q.bc[0].yes = 8;
    q.bc[0].no = 20;
    q.bc[1].no = (unsigned short)lo;
    q.bc[2].code = remote ? INET_DIAG_BC_D_LE : INET_DIAG_BC_S_LE;
    q.bc[2].yes = 8;
    q.bc[2].no = 12;
    q.bc[3].no = (unsigned short)hi;
    do {
        size_t mark = ls->n;
        rc = tpu_diag_ask(fd, &q.nlh, (unsigned)(2 + tries), 1, state, ls);
        if (rc != EAGAIN)
            break;
        ls->n = mark;
    } while (++tries < 3);
    return rc != 0 ? rc : ls->err;
}

/* Adds to ls the listening sockets of proto and one family with lo <=
 * port <= hi. */
static int tpu_diag_dump(int fd, int family, int lo, int hi, int proto, struct tpu_listeners *ls)
{
    const struct tpu_diag_proto *dp = &tpu_diag_protos[proto];
    return tpu_diag_dump_in(fd, family, lo, hi, dp->ipproto, dp->state, 0, ls);
}

/* Adds to ls the TCP sockets of one family in TIME_WAIT whose remote
 * port is port: the ends of connections to it that closed first. */
static int tpu_diag_time_wait(int fd, int family, int port, struct tpu_listeners *ls)
{
    return tpu_diag_dump_in(fd, family, port, port, IPPROTO_TCP, TPU_TCP_TIME_WAIT, 1, ls);
}

#endif /* TPU_LINUX */
