/* Native Linux measurements behind the kernel cost table (guestos/kernel/costs.py).
 *
 *   gcc -O2 -o /tmp/kernel_costs bench/kernel_costs.c && /tmp/kernel_costs [DIR]
 *
 * Each line: name, nanoseconds, what was timed. DIR (default /tmp) holds a scratch file.
 * Every figure is the median of 7 runs of a loop; the host is noisy, so read them as orders of
 * magnitude that set the defaults, not as exact constants. Run as root to also time
 * drop_caches (reclaim of clean unmapped page-cache pages) and MADV_PAGEOUT. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#define PAGE 4096
#define RUNS 7

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v) {
    qsort(v, RUNS, sizeof *v, cmp);
    return v[RUNS / 2];
}

static double syscall_round_trip(void) {
    enum { N = 1000000 };
    double t = now_ns();
    for (int i = 0; i < N; i++)
        syscall(SYS_getppid);
    return (now_ns() - t) / N;
}

static double page_fault(void) {          /* anonymous: fault + allocate + zero + map */
    enum { N = 16384 };
    char *p = mmap(NULL, (size_t)N * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    double t = now_ns();
    for (int i = 0; i < N; i++)
        p[(size_t)i * PAGE] = 1;
    t = (now_ns() - t) / N;
    munmap(p, (size_t)N * PAGE);
    return t;
}

static double page_zero(void) {           /* clearing one 4 KiB frame (memset, as clear_page) */
    enum { N = 100000 };
    static char buf[PAGE] __attribute__((aligned(4096)));
    double t = now_ns();
    for (int i = 0; i < N; i++) {
        memset(buf, 0, PAGE);
        __asm__ volatile("" ::"r"(buf) : "memory");
    }
    return (now_ns() - t) / N;
}

static double copy_per_kib(void) {        /* memcpy of 64 KiB, cache-warm, per KiB */
    enum { N = 20000, SZ = 65536 };
    static char a[SZ], b[SZ];
    memset(a, 1, SZ);
    double t = now_ns();
    for (int i = 0; i < N; i++) {
        memcpy(b, a, SZ);
        __asm__ volatile("" ::"r"(b) : "memory");
    }
    return (now_ns() - t) / N / (SZ / 1024);
}

static const char *scratch;

static int make_file(size_t pages) {
    int fd = open(scratch, O_RDWR | O_CREAT | O_TRUNC, 0600);
    static char page[PAGE];
    memset(page, 7, PAGE);
    for (size_t i = 0; i < pages; i++)
        if (write(fd, page, PAGE) != PAGE)
            exit(1);
    return fd;
}

static double pread_cached(void) {        /* syscall + page-cache lookup + 4 KiB copy */
    enum { N = 200000 };
    int fd = make_file(1);
    char buf[PAGE];
    pread(fd, buf, PAGE, 0);
    double t = now_ns();
    for (int i = 0; i < N; i++)
        pread(fd, buf, PAGE, 0);
    t = (now_ns() - t) / N;
    close(fd);
    return t;
}

static double pread_cached_64k(void) {    /* syscall + 16 page-cache lookups + 64 KiB copy */
    enum { N = 50000 };
    int fd = make_file(16);
    static char buf[65536];
    pread(fd, buf, sizeof buf, 0);
    double t = now_ns();
    for (int i = 0; i < N; i++)
        pread(fd, buf, sizeof buf, 0);
    t = (now_ns() - t) / N;
    close(fd);
    return t;
}

static double write_new_pages(void) {     /* syscall + page alloc + page-cache insertion + 4 KiB copy */
    enum { N = 16384 };
    int fd = open(scratch, O_RDWR | O_CREAT | O_TRUNC, 0600);
    static char page[PAGE];
    double t = now_ns();
    for (int i = 0; i < N; i++)
        write(fd, page, PAGE);
    t = (now_ns() - t) / N;
    close(fd);
    unlink(scratch);
    return t;
}

static double context_switch(void) {      /* pipe ping-pong on one CPU: 2 switches + 4 syscalls per round */
    enum { N = 50000 };
    int a[2], b[2];
    char c = 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    sched_setaffinity(0, sizeof set, &set);
    if (pipe(a) || pipe(b))
        exit(1);
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < N; i++) {
            if (read(a[0], &c, 1) != 1 || write(b[1], &c, 1) != 1)
                _exit(1);
        }
        _exit(0);
    }
    double t = now_ns();
    for (int i = 0; i < N; i++) {
        if (write(a[1], &c, 1) != 1 || read(b[0], &c, 1) != 1)
            exit(1);
    }
    t = (now_ns() - t) / N;
    waitpid(pid, NULL, 0);
    close(a[0]); close(a[1]); close(b[0]); close(b[1]);
    return t;
}

static double yield_switch(void) {        /* two processes on one CPU calling sched_yield: per switch */
    enum { N = 100000 };
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    sched_setaffinity(0, sizeof set, &set);
    int go[2];
    if (pipe(go))
        exit(1);
    pid_t pid = fork();
    if (pid == 0) {
        char c;
        read(go[0], &c, 1);
        for (int i = 0; i < N; i++)
            sched_yield();
        _exit(0);
    }
    write(go[1], "x", 1);
    double t = now_ns();
    for (int i = 0; i < N; i++)
        sched_yield();
    t = (now_ns() - t) / N;       /* one round: my yield + a switch to the child + its yield + a switch back */
    waitpid(pid, NULL, 0);
    close(go[0]); close(go[1]);
    return t / 2;
}

static double populate_per_page(void) {   /* alloc + zero + map of a page without the fault entry */
    enum { PAGES = 16384 };
    char *p = mmap(NULL, (size_t)PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    double t = now_ns();
    int r = madvise(p, (size_t)PAGES * PAGE, 23 /* MADV_POPULATE_WRITE */);
    t = now_ns() - t;
    munmap(p, (size_t)PAGES * PAGE);
    return r == 0 ? t / PAGES : -1;
}

static double unmap_per_page(void) {      /* zap a present anonymous page and free it */
    enum { PAGES = 16384 };
    char *p = mmap(NULL, (size_t)PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                   -1, 0);
    double t = now_ns();
    munmap(p, (size_t)PAGES * PAGE);
    return (now_ns() - t) / PAGES;
}

static double memcg_reclaim_per_page(void) { /* LRU reclaim of clean unmapped pages: memcg limit shrink */
    enum { PAGES = 32768 };
    char dir[256], file[300];
    snprintf(dir, sizeof dir, "/sys/fs/cgroup/memory/ballast-cost-%d", getpid());
    if (mkdir(dir, 0700))
        return -1;
    int fd = make_file(PAGES);
    fsync(fd);
    close(fd);
    int dc = open("/proc/sys/vm/drop_caches", O_WRONLY);
    if (dc >= 0) { write(dc, "1", 1); close(dc); }
    pid_t pid = fork();
    if (pid == 0) {                       /* read the file inside the group: its pages are charged there */
        char path[300];
        snprintf(path, sizeof path, "%s/cgroup.procs", dir);
        int p = open(path, O_WRONLY);
        if (p < 0 || write(p, "0", 1) != 1)
            _exit(1);
        close(p);
        int f = open(scratch, O_RDONLY);
        static char buf[1 << 20];
        while (read(f, buf, sizeof buf) > 0)
            ;
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    snprintf(file, sizeof file, "%s/memory.usage_in_bytes", dir);
    char num[64] = {0};
    int u = open(file, O_RDONLY);
    read(u, num, sizeof num - 1);
    close(u);
    long before = atol(num);
    snprintf(file, sizeof file, "%s/memory.limit_in_bytes", dir);
    int l = open(file, O_WRONLY);
    double t = now_ns();
    int ok = write(l, "4096", 4) == 4;   /* forces reclaim of (almost) everything charged */
    t = now_ns() - t;
    close(l);
    u = open(dir[0] ? (snprintf(file, sizeof file, "%s/memory.usage_in_bytes", dir), file) : file, O_RDONLY);
    memset(num, 0, sizeof num);
    read(u, num, sizeof num - 1);
    close(u);
    long freed = (before - atol(num)) / PAGE;
    rmdir(dir);
    unlink(scratch);
    return ok && freed > 0 ? t / freed : -1;
}

static double drop_caches_per_page(void) { /* reclaim of clean unmapped page-cache pages */
    enum { PAGES = 65536 };
    int fd = make_file(PAGES);
    fsync(fd);
    close(fd);
    fd = open(scratch, O_RDONLY);
    static char buf[1 << 20];
    while (read(fd, buf, sizeof buf) > 0)
        ;
    close(fd);
    int dc = open("/proc/sys/vm/drop_caches", O_WRONLY);
    if (dc < 0)
        return -1;
    double t = now_ns();
    int ok = write(dc, "1", 1) == 1;
    t = now_ns() - t;
    close(dc);
    unlink(scratch);
    return ok ? t / PAGES : -1;
}

static double pageout_mapped_per_page(void) { /* MADV_PAGEOUT: isolate, rmap walk, unmap, free */
    enum { PAGES = 16384 };
    int fd = make_file(PAGES);
    fsync(fd);
    char *p = mmap(NULL, (size_t)PAGES * PAGE, PROT_READ, MAP_SHARED, fd, 0);
    volatile char s = 0;
    for (int i = 0; i < PAGES; i++)
        s += p[(size_t)i * PAGE];
    double t = now_ns();
    int r = madvise(p, (size_t)PAGES * PAGE, MADV_PAGEOUT);
    t = now_ns() - t;
    munmap(p, (size_t)PAGES * PAGE);
    close(fd);
    unlink(scratch);
    return r == 0 ? t / PAGES : -1;
}

struct bench { const char *name; double (*fn)(void); const char *what; };

int main(int argc, char **argv) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/ballast-kernel-costs.%d", argc > 1 ? argv[1] : "/tmp", getpid());
    scratch = path;
    struct bench benches[] = {
        {"syscall_round_trip", syscall_round_trip, "getppid() via syscall(2)"},
        {"anon_page_fault", page_fault, "first write to an anonymous page (fault+alloc+zero+map)"},
        {"page_zero", page_zero, "memset of 4 KiB"},
        {"copy_per_kib", copy_per_kib, "memcpy of 64 KiB, per KiB"},
        {"pread_cached_4k", pread_cached, "pread of one cached 4 KiB page"},
        {"pread_cached_64k", pread_cached_64k, "pread of 16 cached pages (64 KiB)"},
        {"write_new_page", write_new_pages, "write of 4 KiB extending a file (page-cache insertion)"},
        {"pipe_round_trip", context_switch, "pipe ping-pong on one CPU (2 switches, 4 syscalls)"},
        {"yield_switch", yield_switch, "sched_yield ping-pong on one CPU, per switch (1 syscall + 1 switch)"},
        {"populate_per_page", populate_per_page, "MADV_POPULATE_WRITE, per page (alloc+zero+map)"},
        {"unmap_per_page", unmap_per_page, "munmap of present anonymous pages, per page"},
        {"memcg_reclaim_per_page", memcg_reclaim_per_page, "memcg limit shrink: LRU reclaim per clean unmapped page"},
        {"drop_caches_per_page", drop_caches_per_page, "echo 1 > drop_caches, per clean cached page"},
        {"pageout_mapped_per_page", pageout_mapped_per_page, "madvise(MADV_PAGEOUT), per mapped clean page"},
    };
    for (size_t b = 0; b < sizeof benches / sizeof *benches; b++) {
        double v[RUNS];
        for (int r = 0; r < RUNS; r++)
            v[r] = benches[b].fn();
        double m = median(v);
        if (m < 0)
            printf("%-26s %10s  %s\n", benches[b].name, "n/a", benches[b].what);
        else
            printf("%-26s %10.1f  %s\n", benches[b].name, m, benches[b].what);
        fflush(stdout);
    }
    return 0;
}
