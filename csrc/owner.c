/* Who holds a socket (Linux): the processes whose /proc/<pid>/fd links
 * name its inode. Collected in C memory while /proc is open; Lua sees the
 * result only after every directory and file is closed. */

#ifdef TPU_LINUX

struct tpu_holder {
    unsigned long inode;
    long pid;
    size_t cmd;            /* offset of the command line in the pool */
};

struct tpu_holders {
    struct tpu_holder *v;
    size_t n, cap;
    char *pool;
    size_t plen, pcap;
    int denied;            /* processes whose descriptors may not be read */
    int err;               /* ENOMEM once an allocation failed */
};

static int tpu_cmp_inode(const void *a, const void *b)
{
    unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
    return x < y ? -1 : x > y;
}

/* Reads at most cap bytes of a small /proc file with bare system calls
 * (stdio's buffer and fstat cost more than the read). The length, or -1
 * with errno set. */
static ssize_t tpu_proc_slurp(const char *path, char *buf, size_t cap)
{
    size_t n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    return (ssize_t)n;
}

/* Appends the command line of pid (NULs turned to spaces; comm when it is
 * empty: kernel threads, zombies) to the pool; its offset in *off. */
static void tpu_holders_command(struct tpu_holders *h, const char *pid, size_t *off)
{
    char path[64], cmd[4096];
    size_t n, i;
    ssize_t r;
    snprintf(path, sizeof path, "/proc/%s/cmdline", pid);
    r = tpu_proc_slurp(path, cmd, sizeof cmd - 1);
    n = r > 0 ? (size_t)r : 0;
    while (n > 0 && cmd[n - 1] == '\0')
        n--;
    if (n == 0) {
        snprintf(path, sizeof path, "/proc/%s/comm", pid);
        r = tpu_proc_slurp(path, cmd, sizeof cmd - 1);
        n = r > 0 ? (size_t)r : 0;
        while (n > 0 && (cmd[n - 1] == '\n' || cmd[n - 1] == '\0'))
            n--;
    }
    for (i = 0; i < n; i++)
        if (cmd[i] == '\0')
            cmd[i] = ' ';
    if (h->plen + n + 1 > h->pcap) {
        size_t cap = (h->pcap + n + 1) * 2;
        char *p = (char *)realloc(h->pool, cap);
        if (p == NULL) {
            h->err = ENOMEM;
            return;
        }
        h->pool = p;
        h->pcap = cap;
    }
    memcpy(h->pool + h->plen, cmd, n);
    h->pool[h->plen + n] = '\0';
    *off = h->plen;
    h->plen += n + 1;
}

static void tpu_holders_add(struct tpu_holders *h, unsigned long inode, long pid, size_t cmd)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        struct tpu_holder *v = (struct tpu_holder *)realloc(h->v, cap * sizeof *v);
        if (v == NULL) {
            h->err = ENOMEM;
            return;
        }
        h->v = v;
        h->cap = cap;
    }
    h->v[h->n].inode = inode;
    h->v[h->n].pid = pid;
    h->v[h->n].cmd = cmd;
    h->n++;
}

/* Finds the holders of the nwant inodes in want (sorted). 0 or errno. */
static int tpu_find_holders(const unsigned long *want, size_t nwant, struct tpu_holders *h)
{
    DIR *proc = opendir("/proc");
    struct dirent *e;
    if (proc == NULL)
        return errno;
    while (h->err == 0 && (e = readdir(proc)) != NULL) {
        char path[300];
        size_t cmd = 0;
        int fdn, have_cmd = 0;
        DIR *fds;
        struct dirent *d;
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/fd", e->d_name);
        fds = opendir(path);
        if (fds == NULL) {
            if (errno == EACCES || errno == EPERM)
                h->denied++;
            continue;
        }
        fdn = dirfd(fds);
        while (h->err == 0 && (d = readdir(fds)) != NULL) {
            char link[64];
            unsigned long inode;
            ssize_t n = readlinkat(fdn, d->d_name, link, sizeof link - 1);
            if (n <= 0)
                continue;
            link[n] = '\0';
            if (sscanf(link, "socket:[%lu]", &inode) != 1
                || bsearch(&inode, want, nwant, sizeof *want, tpu_cmp_inode) == NULL)
                continue;
            if (!have_cmd) {
                tpu_holders_command(h, e->d_name, &cmd);
                have_cmd = 1;
            }
            tpu_holders_add(h, inode, strtol(e->d_name, NULL, 10), cmd);
        }
        closedir(fds);
    }
    closedir(proc);
    return h->err;
}

#endif /* TPU_LINUX */
