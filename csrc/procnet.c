/* /proc/net/tcp, tcp6, udp and udp6 (Linux), for where netlink is
 * refused: the same list of listening sockets, slowly (reading it walks every socket of the
 * machine). The kernel prints each 32-bit word of an address as a native
 * integer, so reading it back with %x and copying it out restores the
 * bytes whatever the endianness. */

#ifdef TPU_LINUX

/* Adds to ls the sockets in state in path whose local port (remote = 0)
 * or remote port (remote = 1) is in lo..hi (the tcp and udp files have
 * the same columns). A TCP listener's rx_queue is its accept queue; its
 * backlog is not in the file. 0 or errno. */
static int tpu_proc_read(const char *path, int family, int lo, int hi, int want, int remote,
                         struct tpu_listeners *ls)
{
    char line[512];
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return errno;
    while (fgets(line, sizeof line, f) != NULL) {
        struct tpu_listener l;
        unsigned w[4], port, rport, state, tx, rx;
        int got, p;
        memset(&l, 0, sizeof l);
        if (family == AF_INET)
            got = sscanf(line, "%*s %8x:%4x %*8x:%4x %2x %8x:%8x %*s %*s %lu %*s %lu",
                         &w[0], &port, &rport, &state, &tx, &rx, &l.uid, &l.inode) == 8;
        else
            got = sscanf(line, "%*s %8x%8x%8x%8x:%4x %*32[0-9A-Fa-f]:%4x %2x %8x:%8x %*s %*s %lu %*s %lu",
                         &w[0], &w[1], &w[2], &w[3], &port, &rport, &state, &tx, &rx, &l.uid,
                         &l.inode) == 11;
        p = (int)(remote ? rport : port);
        if (!got || (int)state != want || p < lo || p > hi)
            continue;
        l.family = family;
        memcpy(l.addr, w, family == AF_INET ? 4 : 16);
        l.port = (int)port;
        l.v6only = family == AF_INET6 ? -1 : 0;
        l.queue = want == TPU_TCP_LISTEN ? (long)rx : -1;
        l.backlog = -1;
        tpu_listeners_add(ls, &l);
    }
    fclose(f);
    return ls->err;
}

/* Both families' listeners of proto with lo <= port <= hi from /proc. */
static int tpu_proc_listeners(int lo, int hi, int proto, struct tpu_listeners *ls)
{
    int state = tpu_diag_protos[proto].state;
    int rc = tpu_proc_read(proto == TPU_UDP ? "/proc/net/udp" : "/proc/net/tcp", AF_INET, lo, hi,
                           state, 0, ls);
    if (rc == 0) {
        rc = tpu_proc_read(proto == TPU_UDP ? "/proc/net/udp6" : "/proc/net/tcp6", AF_INET6, lo,
                           hi, state, 0, ls);
        if (rc == ENOENT)   /* no IPv6 on this machine */
            rc = 0;
    }
    return rc;
}

/* The TCP sockets of both families in TIME_WAIT to remote port port. */
static int tpu_proc_time_wait(int port, struct tpu_listeners *ls)
{
    int rc = tpu_proc_read("/proc/net/tcp", AF_INET, port, port, TPU_TCP_TIME_WAIT, 1, ls);
    if (rc == 0) {
        rc = tpu_proc_read("/proc/net/tcp6", AF_INET6, port, port, TPU_TCP_TIME_WAIT, 1, ls);
        if (rc == ENOENT)
            rc = 0;
    }
    return rc;
}

#endif /* TPU_LINUX */
