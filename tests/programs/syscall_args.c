/* System call arguments as Linux types them, hostile pointers, and copies that fault: each line is
   the raw result of one call (a negative errno or a value), so the guest's output must equal Linux's.
   Registers are loaded by hand so that the upper halves of 32-bit arguments hold garbage. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define KADDR 0xffff888000000000UL
#define HIGH 0xdeadbeef00000000UL

static long sc(long nr, unsigned long a, unsigned long b, unsigned long c, unsigned long d, unsigned long e,
               unsigned long f)
{
    long ret;
    register unsigned long r10 __asm__("r10") = d;
    register unsigned long r8 __asm__("r8") = e;
    register unsigned long r9 __asm__("r9") = f;
    __asm__ volatile ("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                      : "rcx", "r11", "memory");
    return ret;
}

#define SHOW(label, expr) printf("%s = %ld\n", label, (long)(expr))

int main(int argc, char **argv)
{
    setvbuf(stdout, 0, _IOLBF, 0);
    /* wait4(-1) as glibc passes it: edi = 0xffffffff, the upper half garbage */
    pid_t child = fork();
    if (child == 0)
        _exit(7);
    int status = 0;
    long got = sc(SYS_wait4, HIGH | 0xffffffffUL, (unsigned long)&status, HIGH, 0, 0, 0);
    SHOW("wait4(-1) reaped the child", got == child);
    SHOW("wait4 status", WEXITSTATUS(status));

    /* a status pointer that faults: EFAULT, and Linux has reaped the child anyway */
    child = fork();
    if (child == 0)
        _exit(3);
    SHOW("wait4 into KADDR", sc(SYS_wait4, -1, KADDR, 0, 0, 0, 0));
    SHOW("wait4 again", sc(SYS_wait4, -1, (unsigned long)&status, 0, 0, 0, 0));

    /* lseek with a negative off_t, a fd and whence with garbage upper halves */
    int fd = open(argv[0], O_RDONLY);
    SHOW("lseek SEEK_SET 100", sc(SYS_lseek, HIGH | fd, 100, HIGH | SEEK_SET, 0, 0, 0));
    SHOW("lseek SEEK_CUR -9", sc(SYS_lseek, HIGH | fd, (unsigned long)-9L, HIGH | SEEK_CUR, 0, 0, 0));
    SHOW("lseek SEEK_CUR -1000", sc(SYS_lseek, fd, (unsigned long)-1000L, SEEK_CUR, 0, 0, 0));
    SHOW("lseek whence 3", sc(SYS_lseek, fd, 0, 3, 0, 0, 0));

    /* kill takes the low 32 bits of sig and of pid */
    SHOW("kill(self, KADDR)", sc(SYS_kill, getpid(), KADDR, 0, 0, 0, 0));
    SHOW("kill(HIGH|self, 0)", sc(SYS_kill, HIGH | getpid(), 0, 0, 0, 0, 0));
    SHOW("kill(self, 65)", sc(SYS_kill, getpid(), 65, 0, 0, 0, 0));

    /* user pointers in the kernel half, non-canonical or at the top of the user half */
    unsigned long bad[] = {KADDR, 1UL << 63, 0x0000800000000000UL, 0x00007ffffffff000UL, 1};
    for (int i = 0; i < 5; i++) {
        unsigned long p = bad[i];
        printf("pointer %#lx\n", p);
        SHOW("  uname", sc(SYS_uname, p, 0, 0, 0, 0, 0));
        SHOW("  open", sc(SYS_open, p, 0, 0, 0, 0, 0));
        SHOW("  stat", sc(SYS_stat, p, p, 0, 0, 0, 0));
        SHOW("  fstat", sc(SYS_fstat, fd, p, 0, 0, 0, 0));
        SHOW("  lstat", sc(SYS_lstat, p, p, 0, 0, 0, 0));
        SHOW("  access", sc(SYS_access, p, 0, 0, 0, 0, 0));
        SHOW("  pipe", sc(SYS_pipe, p, 0, 0, 0, 0, 0));
        SHOW("  pipe2", sc(SYS_pipe2, p, 0, 0, 0, 0, 0));
        SHOW("  nanosleep", sc(SYS_nanosleep, p, 0, 0, 0, 0, 0));
        SHOW("  execve", sc(SYS_execve, p, 0, 0, 0, 0, 0));
        SHOW("  getcwd", sc(SYS_getcwd, p, 4096, 0, 0, 0, 0));
        SHOW("  chdir", sc(SYS_chdir, p, 0, 0, 0, 0, 0));
        SHOW("  readlink", sc(SYS_readlink, (unsigned long)"/proc/self/exe", p, 64, 0, 0, 0));
        SHOW("  gettimeofday", sc(SYS_gettimeofday, p, 0, 0, 0, 0, 0));
        SHOW("  time", sc(SYS_time, p, 0, 0, 0, 0, 0) < 0 ? sc(SYS_time, p, 0, 0, 0, 0, 0) : 0);
        SHOW("  futex", sc(SYS_futex, p, 0, 0, 0, 0, 0));
        SHOW("  getrandom", sc(SYS_getrandom, p, 16, 0, 0, 0, 0));
        SHOW("  clock_gettime", sc(SYS_clock_gettime, 0, p, 0, 0, 0, 0));
        SHOW("  rt_sigaction", sc(SYS_rt_sigaction, SIGUSR1, p, 0, 8, 0, 0));
        SHOW("  rt_sigprocmask", sc(SYS_rt_sigprocmask, SIG_BLOCK, p, 0, 8, 0, 0));
        SHOW("  writev", sc(SYS_writev, 1, p, 1, 0, 0, 0));
        SHOW("  write", sc(SYS_write, 1, p, 1, 0, 0, 0));
        SHOW("  read", sc(SYS_read, fd, p, 1, 0, 0, 0));
        SHOW("  wait4", sc(SYS_wait4, -1, p, 0, 0, 0, 0));
        SHOW("  prlimit64", sc(SYS_prlimit64, 0, 7, 0, p, 0, 0));
    }

    /* a read from a pipe into a bad pointer: EFAULT, and the data stays in the pipe */
    int p[2];
    pipe(p);
    write(p[1], "hello", 5);
    SHOW("read pipe into KADDR", sc(SYS_read, p[0], KADDR, 5, 0, 0, 0));
    SHOW("read pipe into 1", sc(SYS_read, p[0], 1, 5, 0, 0, 0));
    char buf[16] = {0};
    SHOW("read pipe into buf", read(p[0], buf, sizeof buf));
    printf("pipe still held: %s\n", buf);

    /* copies that fault halfway: a buffer whose second page is unmapped */
    char *two = mmap(0, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(two + 4096, 4096);
    memset(two, 'z', 4096);
    char *half = two + 4096 - 100;
    lseek(fd, 0, SEEK_SET);
    SHOW("read file across a hole", sc(SYS_read, fd, (unsigned long)half, 300, 0, 0, 0));
    SHOW("  position after", lseek(fd, 0, SEEK_CUR));
    SHOW("getrandom across a hole", sc(SYS_getrandom, (unsigned long)half, 300, 0, 0, 0, 0));
    pipe2(p, O_NONBLOCK);
    SHOW("write pipe across a hole", sc(SYS_write, p[1], (unsigned long)half, 300, 0, 0, 0));
    SHOW("  pipe holds", sc(SYS_read, p[0], (unsigned long)buf, 16, 0, 0, 0));
    write(p[1], "abc", 3);
    SHOW("read pipe across a hole", sc(SYS_read, p[0], (unsigned long)(two + 4096 - 1), 3, 0, 0, 0));
    SHOW("  left in the pipe", read(p[0], buf, sizeof buf));
    SHOW("huge length", sc(SYS_read, fd, (unsigned long)two, 1UL << 62, 0, 0, 0));
    SHOW("negative length write", sc(SYS_write, 1, (unsigned long)two, -1L, 0, 0, 0));
    return 0;
}
