/* The system calls shells and coreutils need (issue 12), each printed with its result: run natively in a
   scratch directory and in the guest on ext2; the outputs must be identical. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile int got;
static void on_sig(int s) { got = s; }
static void handle(int sig, int flags) {
    struct sigaction sa = {0};
    sa.sa_handler = on_sig; sa.sa_flags = flags; sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, 0);
}
#define R(x) do { errno = 0; long r_ = (long)(x); printf("%s = %ld%s%s\n", #x, r_, r_ < 0 ? " " : "", r_ < 0 ? strerror(errno) : ""); } while (0)

static void st(const char *p) {
    struct stat s;
    if (lstat(p, &s)) { printf("lstat %s: %s\n", p, strerror(errno)); return; }
    printf("%s: mode %o uid %d gid %d rdev %d:%d size %ld\n", p, s.st_mode, s.st_uid, s.st_gid,
           major(s.st_rdev), minor(s.st_rdev), S_ISLNK(s.st_mode) || S_ISREG(s.st_mode) ? (long)s.st_size : 0L);
}

/* a child that sleeps ms then sends sig to the parent */
static pid_t later(int ms, int sig) {
    pid_t parent = getpid(), c = fork();
    if (c == 0) {
        struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&t, 0);
        kill(parent, sig);
        _exit(0);
    }
    return c;
}

int main(int argc, char **argv) {
    char buf[300]; ssize_t n; pid_t c0;
    if (chdir(argv[1])) { perror("chdir"); return 1; }
    setvbuf(stdout, 0, _IONBF, 0);
    /* umask, creat, mkdir, mknod, chmod, chown */
    R(umask(027)); R(umask(022));
    umask(027);
    int fd = open("f", O_CREAT | O_WRONLY | O_TRUNC, 0666); close(fd); st("f");
    R(mkdir("d", 0777)); st("d");
    R(mknod("fifo", S_IFIFO | 0666, 0)); st("fifo");
    R(mknod("null", S_IFCHR | 0666, makedev(1, 3))); st("null");
    R(mknod("blk", S_IFBLK | 0600, makedev(259, 70000))); st("blk");
    R(mknod("dir", S_IFDIR | 0600, 0)); R(mknod("bad", 0170000 | 0600, 0));
    umask(022);
    R(chmod("f", 04755)); st("f");
    R(chown("f", 12, 34)); st("f");
    R(chmod("f", 02775)); R(chown("f", -1, -1)); st("f");
    fd = open("f", O_RDONLY); R(fchmod(fd, 0640)); R(fchown(fd, 5, -1)); close(fd); st("f");
    R(fchmodat(AT_FDCWD, "f", 0600, 0)); R(fchownat(AT_FDCWD, "f", 7, 8, 0x4000)); st("f");
    R(chmod("missing", 0644));
    /* symlinks: fast, slow, readlink, lchown, /proc/self/exe */
    R(symlink("f", "fast")); st("fast");
    char longt[200]; memset(longt, 'x', 150); longt[150] = 0; memcpy(longt, "d/", 2);
    R(symlink(longt, "slow")); st("slow");
    n = readlink("fast", buf, sizeof buf); printf("readlink fast %zd %.*s\n", n, (int)(n > 0 ? n : 0), buf);
    n = readlink("slow", buf, sizeof buf); printf("readlink slow %zd %.3s\n", n, buf);
    n = readlink("slow", buf, 5); printf("readlink slow/5 %zd\n", n);
    R(readlink("f", buf, sizeof buf)); R(readlink("nothere", buf, sizeof buf));
    R(symlink("", "empty")); R(symlink("f", "fast"));
    R(lchown("fast", 3, 4)); st("fast"); st("f");
    R(symlinkat("d", AT_FDCWD, "dl"));
    int dfd = open(".", O_RDONLY);
    n = readlinkat(dfd, "dl", buf, sizeof buf); printf("readlinkat %zd\n", n);
    close(dfd);
    n = readlink("/proc/self/exe", buf, sizeof buf - 1); buf[n > 0 ? n : 0] = 0;
    printf("exe ends with /calls: %d\n", n > 6 && strcmp(buf + n - 6, "/calls") == 0);
    /* utimensat */
    struct timespec ts[2] = {{1000000, 5}, {2000000, 7}};
    R(utimensat(AT_FDCWD, "f", ts, 0));
    struct stat s; stat("f", &s); printf("times %ld %ld\n", (long)s.st_atime, (long)s.st_mtime);
    ts[0].tv_nsec = UTIME_OMIT; ts[1].tv_sec = 3000000; ts[1].tv_nsec = 0;
    R(utimensat(AT_FDCWD, "f", ts, 0)); stat("f", &s); printf("times %ld %ld\n", (long)s.st_atime, (long)s.st_mtime);
    ts[0].tv_nsec = UTIME_OMIT; ts[1].tv_nsec = UTIME_OMIT;
    R(utimensat(AT_FDCWD, "nothere", ts, 0));
    ts[0].tv_nsec = 1000000000; R(utimensat(AT_FDCWD, "f", ts, 0)); R(utimensat(AT_FDCWD, "f", 0, 77));
    fd = open("f", O_RDONLY); ts[0].tv_sec = 4000000; ts[0].tv_nsec = 0; ts[1].tv_nsec = UTIME_OMIT;
    R(futimens(fd, ts)); close(fd); stat("f", &s); printf("times %ld %ld\n", (long)s.st_atime, (long)s.st_mtime);
    /* FIFOs on the disk: O_RDWR, a writer without reader (O_NONBLOCK), a blocking open meeting its partner */
    int ff = open("fifo", O_RDWR); R(write(ff, "abc", 3)); n = read(ff, buf, 10); printf("fifo rdwr %zd\n", n);
    int wn = open("fifo", O_WRONLY | O_NONBLOCK); printf("writer with a reader %d\n", wn >= 0); close(wn); close(ff);
    R(open("fifo", O_WRONLY | O_NONBLOCK));
    c0 = fork();
    if (c0 == 0) { int w = open("fifo", O_WRONLY); write(w, "through", 7); close(w); _exit(0); }
    ff = open("fifo", O_RDONLY); n = read(ff, buf, 20); printf("fifo read %.*s\n", (int)n, buf);
    n = read(ff, buf, 20); printf("fifo eof %zd\n", n); close(ff); waitpid(c0, 0, 0);
    fd = open("null", O_WRONLY); R(write(fd, "xyz", 3)); close(fd);
    fd = open("null", O_RDONLY); R(read(fd, buf, 3)); close(fd);
    /* a file unlinked while open keeps its data until the last close (zsh's here-documents) */
    fd = open("tmpfile", O_CREAT | O_RDWR, 0600); write(fd, "kept", 4); R(unlink("tmpfile"));
    lseek(fd, 0, SEEK_SET); n = read(fd, buf, 10); printf("unlinked, still open: %.*s\n", (int)n, buf); close(fd);
    /* ids, groups, affinity, prctl, rusage */
    gid_t groups[8]; R(getgroups(8, groups)); R(getgroups(-1, groups));
    cpu_set_t set; CPU_ZERO(&set);
    R(sched_getaffinity(0, sizeof set, &set)); printf("cpu0 %d count %d\n", CPU_ISSET(0, &set), CPU_COUNT(&set) >= 1);
    R(syscall(204, 0, 4, &set)); R(syscall(204, 0, 12, &set));
    R(prctl(PR_SET_NAME, "a-very-long-name-indeed")); char name[17] = {0};
    R(prctl(PR_GET_NAME, name)); printf("name %s\n", name);


    R(prctl(12345)); R(prctl(PR_GET_DUMPABLE));
    struct rusage ru; R(getrusage(0, &ru)); R(getrusage(5, &ru)); R(getrusage(RUSAGE_CHILDREN, &ru));
    /* sendfile */
    fd = open("src", O_CREAT | O_RDWR | O_TRUNC, 0644); for (int i = 0; i < 2000; i++) dprintf(fd, "line %d\n", i); 
    int out = open("dst", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    off_t off = 100; R(sendfile(out, fd, &off, 5000)); printf("off %ld pos %ld\n", (long)off, (long)lseek(fd, 0, SEEK_CUR));
    lseek(fd, 0, SEEK_SET); R(sendfile(out, fd, 0, 100000)); printf("pos %ld\n", (long)lseek(fd, 0, SEEK_CUR));
    close(out); stat("dst", &s); printf("dst size %ld\n", (long)s.st_size);
    int p[2]; pipe(p); R(sendfile(p[1], fd, &off, 10)); n = read(p[0], buf, 10); printf("via pipe %.*s|\n", (int)n, buf);
    R(sendfile(fd, p[0], 0, 10)); close(fd); close(p[0]); close(p[1]);
    /* poll and select on pipes and files */
    pipe(p);
    struct pollfd pf[3] = {{p[0], POLLIN, 0}, {p[1], POLLOUT, 0}, {99, POLLIN, 0}};
    R(poll(pf, 3, 0)); printf("revents %x %x %x\n", pf[0].revents, pf[1].revents, pf[2].revents);
    write(p[1], "x", 1); R(poll(pf, 1, 100)); printf("revents %x\n", pf[0].revents);
    close(p[1]); read(p[0], buf, 1); R(poll(pf, 1, -1)); printf("revents %x\n", pf[0].revents);
    close(p[0]);
    pipe(p);
    fd_set rs, ws; FD_ZERO(&rs); FD_ZERO(&ws); FD_SET(p[0], &rs); FD_SET(p[1], &ws);
    struct timeval tv = {0, 50000};
    R(select(p[1] + 1, &rs, &ws, 0, &tv)); printf("r %d w %d\n", FD_ISSET(p[0], &rs), FD_ISSET(p[1], &ws));
    FD_ZERO(&rs); FD_SET(p[0], &rs); tv.tv_sec = 0; tv.tv_usec = 30000;
    R(select(p[0] + 1, &rs, 0, 0, &tv)); printf("tv %ld %ld\n", (long)tv.tv_sec, (long)tv.tv_usec);
    FD_ZERO(&rs); FD_SET(50, &rs); R(select(51, &rs, 0, 0, &tv));
    struct timespec pts = {0, 20000000};
    FD_ZERO(&rs); FD_SET(p[0], &rs); R(pselect(p[0] + 1, &rs, 0, 0, &pts, 0));
    pf[0].fd = p[0]; pf[0].events = POLLIN; R(ppoll(pf, 1, &pts, 0));
    fd = open("f", O_RDONLY); pf[0].fd = fd; R(poll(pf, 1, -1)); printf("file revents %x\n", pf[0].revents); close(fd);
    /* a poll woken by a writer in another process */
    pid_t c = fork();
    if (c == 0) { struct timespec t = {0, 50000000}; nanosleep(&t, 0); write(p[1], "hello", 5); _exit(0); }
    pf[0].fd = p[0]; R(poll(pf, 1, 5000)); n = read(p[0], buf, 10); printf("got %.*s\n", (int)n, buf);
    waitpid(c, 0, 0);
    /* signals interrupting sleeps */
    handle(SIGUSR1, 0);
    later(100, SIGUSR1);
    struct timespec req = {10, 0}, rem = {0, 0};
    R(nanosleep(&req, &rem)); printf("got %d rem %ld\n", got, (long)rem.tv_sec);
    wait(0); got = 0;
    later(50, SIGUSR1); R(read(p[0], buf, 10)); printf("got %d\n", got); wait(0); got = 0;
    handle(SIGUSR1, SA_RESTART);
    c = fork();
    if (c == 0) { struct timespec t = {0, 50000000}; nanosleep(&t, 0); kill(getppid(), SIGUSR1); nanosleep(&t, 0); write(p[1], "late", 4); _exit(0); }
    n = read(p[0], buf, 10); printf("restarted read %zd %.*s got %d\n", n, (int)(n > 0 ? n : 0), buf, got); waitpid(c, 0, 0); got = 0;
    handle(SIGUSR1, 0);
    c = fork();
    /* 50 ms first, so that the parent is already in wait4 natively under load */
    if (c == 0) { struct timespec t = {0, 50000000}; nanosleep(&t, 0); kill(getppid(), SIGUSR1); t.tv_nsec = 250000000; nanosleep(&t, 0); _exit(3); }
    int status; pid_t w = wait4(c, &status, 0, 0);
    if (w < 0) { printf("wait4 EINTR %d got %d\n", errno == EINTR, got); w = wait4(c, &status, 0, 0); }
    printf("wait4 %d status %x\n", w == c, status); got = 0;
    /* sigsuspend */
    sigset_t block, old, empty; sigemptyset(&block); sigaddset(&block, SIGUSR2); sigemptyset(&empty);
    sigprocmask(SIG_BLOCK, &block, &old); handle(SIGUSR2, 0);
    later(50, SIGUSR2); R(sigsuspend(&empty)); printf("got %d\n", got);
    sigprocmask(SIG_BLOCK, 0, &old); printf("usr2 still blocked %d\n", sigismember(&old, SIGUSR2)); wait(0); got = 0;
    /* SIGPIPE */
    close(p[0]);
    c = fork();
    if (c == 0) { write(p[1], "x", 1); _exit(0); }
    waitpid(c, &status, 0); printf("writer: signaled %d sig %d\n", WIFSIGNALED(status), WTERMSIG(status));
    signal(SIGPIPE, SIG_IGN); R(write(p[1], "x", 1));
    signal(SIGPIPE, SIG_DFL); sigemptyset(&block); sigaddset(&block, SIGPIPE); sigprocmask(SIG_BLOCK, &block, 0);
    R(write(p[1], "x", 1)); sigset_t pend; sigpending(&pend); printf("pipe pending %d\n", sigismember(&pend, SIGPIPE));
    signal(SIGPIPE, SIG_IGN); sigprocmask(SIG_UNBLOCK, &block, 0); signal(SIGPIPE, SIG_DFL);
    close(p[1]);
    /* process groups and sessions */
    c = fork();
    if (c == 0) {
        printf("child: pgid==ppgid %d sid==psid %d\n", getpgrp() == getpgid(getppid()), getsid(0) == getsid(getppid()));
        printf("setsid ok %d\n", setsid() == getpid());
        printf("pgid %d sid %d\n", getpgrp() == getpid(), getsid(0) == getpid());
        R(setsid()); R(setpgid(0, 0));
        _exit(0);
    }
    waitpid(c, 0, 0);
    int sync_pipe[2]; pipe(sync_pipe);
    pid_t a = fork();
    if (a == 0) { setpgid(0, 0); char ch; read(sync_pipe[0], &ch, 1); sigset_t e; sigemptyset(&e); sigsuspend(&e); _exit(0); }
    pid_t b = fork();
    if (b == 0) { char ch; read(sync_pipe[0], &ch, 1); setpgid(0, a); sigset_t e; sigemptyset(&e); sigsuspend(&e); _exit(0); }
    setpgid(a, a); setpgid(b, a);
    printf("group of b is a %d\n", getpgid(b) == a);
    R(setpgid(b, 12345678 & 0x7fff));
    write(sync_pipe[1], "xx", 2);
    R(kill(-a, SIGTERM));
    waitpid(a, &status, 0); printf("a: %d %d\n", WIFSIGNALED(status), WTERMSIG(status));
    waitpid(b, &status, 0); printf("b: %d %d\n", WIFSIGNALED(status), WTERMSIG(status));
    R(kill(-a, 0));
    c = fork();
    if (c == 0) { char *args[] = {"/bin/true", 0}; execv(args[0], args); _exit(127); }
    struct timespec t = {0, 200000000}; nanosleep(&t, 0);      /* the child has exec'd by then */
    R(setpgid(c, c)); waitpid(c, 0, 0);
    /* clock_nanosleep */
    struct timespec now; clock_gettime(CLOCK_MONOTONIC, &now); now.tv_sec += 1;
    R(clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &now, 0));
    struct timespec after; clock_gettime(CLOCK_MONOTONIC, &after); printf("reached %d\n", after.tv_sec > now.tv_sec || (after.tv_sec == now.tv_sec && after.tv_nsec >= now.tv_nsec));
    return 0;
}
