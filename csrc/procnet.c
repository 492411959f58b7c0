/* /proc/net/tcp, tcp6, udp and udp6 (Linux), for where netlink is
 * refused: the same list of listening sockets, slowly (reading it walks every socket of the
 * machine). The kernel prints each 32-bit word of an address as a native
 * integer, so reading it back with %x and copying it out restores the
 * bytes whatever the endianness. */

#ifdef TPU_LINUX

/* Adds to ls the sockets in state in path with lo <= port <= hi (the
 * tcp and udp files have the same columns). 0 or errno. */
static int tpu_proc_read(const char *path, int family, int lo, int hi, int want,
                         struct tpu_listeners *ls)
{
    char line[512];
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return errno;
    while (fgets(line, sizeof line, f) != NULL) {
        struct tpu_listener l;
        unsigned w[4], port, state;
        int got;
        memset(&l, 0, sizeof l);
        if (family == AF_INET)
            got = sscanf(line, "%*s %8x:%4x %*s %2x %*s %*s %*s %lu %*s %lu",
                         &w[0], &port, &state, &l.uid, &l.inode) == 5;
        else
            got = sscanf(line, "%*s %8x%8x%8x%8x:%4x %*s %2x %*s %*s %*s %lu %*s %lu",
                         &w[0], &w[1], &w[2], &w[3], &port, &state, &l.uid, &l.inode) == 8;
        if (!got || (int)state != want || (int)port < lo || (int)port > hi)
            continue;
        l.family = family;
        memcpy(l.addr, w, family == AF_INET ? 4 : 16);
        l.port = (int)port;
        l.v6only = family == AF_INET6 ? -1 : 0;
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
                           state, ls);
    if (rc == 0) {
        rc = tpu_proc_read(proto == TPU_UDP ? "/proc/net/udp6" : "/proc/net/tcp6", AF_INET6, lo,
                           hi, state, ls);
        if (rc == ENOENT)   /* no IPv6 on this machine */
            rc = 0;
    }
    return rc;
}

#endif /* TPU_LINUX */
