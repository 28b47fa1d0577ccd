/* Issue 12's last missing calls and job control, printed so that the guest's output can be compared
 * with native Linux's line for line: priorities and nice, setgroups, times, interval timers, waitid,
 * stop and continue (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGCONT) as wait4, waitid and SIGCHLD see them,
 * and signals to a process group. Nothing printed depends on timing or pids. */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/times.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t alarms, vtalarms;
static volatile int chld_codes[16], chld_status[16], nchld;

static void on_alarm(int sig) { (void)sig; alarms++; }
static void on_vtalarm(int sig) { (void)sig; vtalarms++; }
static void on_chld(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)uc;
    if (nchld < 16) { chld_codes[nchld] = si->si_code; chld_status[nchld] = si->si_status; nchld++; }
}

static const char *code_name(int code) {
    switch (code) {
    case CLD_EXITED: return "CLD_EXITED"; case CLD_KILLED: return "CLD_KILLED"; case CLD_DUMPED: return "CLD_DUMPED";
    case CLD_STOPPED: return "CLD_STOPPED"; case CLD_CONTINUED: return "CLD_CONTINUED"; default: return "?";
    }
}

static void show_status(const char *what, int st) {
    if (WIFEXITED(st)) printf("%s: exited %d\n", what, WEXITSTATUS(st));
    else if (WIFSIGNALED(st)) printf("%s: killed by %d%s\n", what, WTERMSIG(st), WCOREDUMP(st) ? " (core)" : "");
    else if (WIFSTOPPED(st)) printf("%s: stopped by %d\n", what, WSTOPSIG(st));
    else if (WIFCONTINUED(st)) printf("%s: continued\n", what);
    else printf("%s: status %#x\n", what, st);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

/* a child in a process group of its own: its parent (us) is in another group of the same session,
 * so the group is not orphaned and SIGTSTP, SIGTTIN and SIGTTOU stop it */
static pid_t sleeper(void) {
    pid_t pid = fork();
    if (pid == 0) { setpgid(0, 0); for (;;) pause(); }
    setpgid(pid, pid);
    return pid;
}

static void priorities(void) {
    errno = 0;
    printf("getpriority self %d errno %d\n", getpriority(PRIO_PROCESS, 0), errno);
    printf("setpriority 7: %d\n", setpriority(PRIO_PROCESS, 0, 7));
    printf("getpriority now %d\n", getpriority(PRIO_PROCESS, 0));
    printf("nice(3) -> %d\n", nice(3));
    int r = setpriority(PRIO_PROCESS, 0, 100);
    printf("setpriority 100 clamps: %d -> %d\n", r, getpriority(PRIO_PROCESS, 0));
    r = setpriority(PRIO_PROCESS, 0, -5);
    printf("root lowers to -5: %d -> %d\n", r, getpriority(PRIO_PROCESS, 0));
    pid_t child = fork();
    if (child == 0) { printf("child inherits %d\n", getpriority(PRIO_PROCESS, 0)); fflush(stdout); _exit(0); }
    waitpid(child, NULL, 0);
    errno = 0;
    { long r = getpriority(7, 0); printf("bad which: %ld errno %d\n", r, errno); }
    errno = 0;
    { long r = getpriority(PRIO_PROCESS, 999999); printf("no such pid: %ld errno %d\n", r, errno); }
    printf("pgrp: %d\n", getpriority(PRIO_PGRP, 0));
    setpriority(PRIO_PROCESS, 0, 0);
}

static void groups(void) {
    gid_t in[3] = {30, 10, 20}, out[8];
    printf("getgroups at start %d\n", getgroups(0, NULL));
    printf("setgroups %d\n", setgroups(3, in));
    int n = getgroups(8, out);
    printf("getgroups %d:", n);
    for (int i = 0; i < n; i++) printf(" %u", out[i]);
    printf("\n");
    errno = 0;
    { long r = getgroups(1, out); printf("too small a list: %ld errno %d\n", r, errno); }
    setgroups(0, NULL);
    printf("cleared: %d\n", getgroups(0, NULL));
}

static void times_call(void) {
    struct tms t;
    volatile unsigned long x = 0;
    for (unsigned long i = 0; i < 30000000; i++) x += i;
    clock_t now = times(&t);
    printf("times: returns %s, utime %s, children %s\n", now != (clock_t)-1 ? "ticks" : "error",
           t.tms_utime >= 0 ? "ok" : "negative", t.tms_cutime >= 0 ? "ok" : "negative");
}

static void itimers(void) {
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 20000}, {0, 50000}}, old, cur;
    printf("setitimer REAL %d\n", setitimer(ITIMER_REAL, &it, &old));
    printf("old was %ld.%06ld\n", (long)old.it_value.tv_sec, (long)old.it_value.tv_usec);
    getitimer(ITIMER_REAL, &cur);
    printf("interval %ld.%06ld, value in (0, 0.05]: %d\n", (long)cur.it_interval.tv_sec,
           (long)cur.it_interval.tv_usec, cur.it_value.tv_sec == 0 && cur.it_value.tv_usec > 0 &&
           cur.it_value.tv_usec <= 50000);
    while (alarms < 3) pause();
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, &old);
    printf("three SIGALRMs; interval left %ld.%06ld\n", (long)old.it_interval.tv_sec, (long)old.it_interval.tv_usec);
    getitimer(ITIMER_REAL, &cur);
    printf("disarmed: %ld.%06ld\n", (long)cur.it_value.tv_sec, (long)cur.it_value.tv_usec);
    unsigned first = alarm(5), second = alarm(0);
    printf("alarm(5) -> %u, alarm(0) -> %u\n", first, second);
    struct itimerval bad = {{0, 0}, {0, 1000000}};
    errno = 0;
    { long r = setitimer(ITIMER_REAL, &bad, NULL); printf("usec 1000000: %ld errno %d\n", r, errno); }
    errno = 0;
    { long r = setitimer(9, &it, NULL); printf("which 9: %ld errno %d\n", r, errno); }
    sa.sa_handler = on_vtalarm;
    sigaction(SIGVTALRM, &sa, NULL);
    struct itimerval vt = {{0, 10000}, {0, 10000}};
    setitimer(ITIMER_VIRTUAL, &vt, NULL);
    volatile unsigned long x = 0;
    while (vtalarms < 2) x++;
    setitimer(ITIMER_VIRTUAL, &off, NULL);
    printf("ITIMER_VIRTUAL fired while busy\n");
}

static void stop_and_continue(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_chld;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);
    int sigs[] = {SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU};
    for (int i = 0; i < 4; i++) {
        nchld = 0;
        pid_t pid = sleeper();
        int st;
        kill(pid, sigs[i]);
        pid_t got = waitpid(pid, &st, WUNTRACED);
        show_status(got == pid ? "wait4 WUNTRACED" : "wait4 other", st);
        printf("again WNOHANG|WUNTRACED: %d\n", waitpid(pid, &st, WNOHANG | WUNTRACED));
        kill(pid, SIGCONT);
        got = waitpid(pid, &st, WCONTINUED);
        show_status(got == pid ? "wait4 WCONTINUED" : "wait4 other", st);
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        show_status("after SIGKILL", st);
        sleep_ms(10);
        /* the first and the last: a CLD_CONTINUED between may merge into the pending SIGCHLD or never
         * be sent (Linux notifies it when the continued child next runs, and SIGKILL may come first) */
        printf("SIGCHLD first %s/%d last %s/%d\n", code_name(chld_codes[0]), chld_status[0],
               code_name(chld_codes[nchld - 1]), chld_status[nchld - 1]);
    }
    /* waitid: stopped, continued, WNOWAIT keeps it, then exited */
    pid_t pid = sleeper();
    siginfo_t si;
    int r;
    kill(pid, SIGSTOP);
    memset(&si, 0xff, sizeof si);
    r = waitid(P_PID, pid, &si, WSTOPPED | WNOWAIT);
    printf("waitid P_PID WSTOPPED|WNOWAIT %d signo %d code %s status %d pid ok %d\n", r, si.si_signo,
           code_name(si.si_code), si.si_status, si.si_pid == pid);
    memset(&si, 0xff, sizeof si);
    r = waitid(P_PID, pid, &si, WSTOPPED);
    printf("waitid again WSTOPPED %d code %s\n", r, code_name(si.si_code));
    memset(&si, 0xff, sizeof si);
    r = waitid(P_PID, pid, &si, WSTOPPED | WNOHANG);
    printf("waitid WSTOPPED|WNOHANG %d signo %d pid %d\n", r, si.si_signo, si.si_pid);
    kill(pid, SIGCONT);
    r = waitid(P_ALL, 0, &si, WCONTINUED);
    printf("waitid P_ALL WCONTINUED %d code %s status %d\n", r, code_name(si.si_code), si.si_status);
    kill(pid, SIGTERM);
    r = waitid(P_PGID, pid, &si, WEXITED | WNOWAIT);
    printf("waitid P_PGID WEXITED|WNOWAIT %d code %s status %d\n", r, code_name(si.si_code), si.si_status);
    r = waitid(P_ALL, 0, &si, WEXITED);
    printf("waitid P_ALL WEXITED %d code %s\n", r, code_name(si.si_code));
    errno = 0;
    r = waitid(P_ALL, 0, &si, WEXITED);
    printf("waitid no children: %d errno %d\n", r, errno);
    errno = 0;
    r = waitid(P_ALL, 0, &si, 0);
    printf("waitid no options: %d errno %d\n", r, errno);
    errno = 0;
    r = waitid(7, 0, &si, WEXITED);
    printf("waitid bad idtype: %d errno %d\n", r, errno);
    pid = fork();
    if (pid == 0) _exit(42);
    r = waitid(P_PID, pid, &si, WEXITED);
    printf("waitid exit code %d: ", r);
    printf("%s %d\n", code_name(si.si_code), si.si_status);

    int st;
    /* SA_NOCLDSTOP: no SIGCHLD for stops, one for the exit */
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
    nchld = 0;
    pid = sleeper();
    kill(pid, SIGSTOP);
    waitpid(pid, &st, WUNTRACED);
    kill(pid, SIGCONT);
    waitpid(pid, &st, WCONTINUED);
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    sleep_ms(10);
    printf("SA_NOCLDSTOP codes:");
    for (int j = 0; j < nchld; j++) printf(" %s/%d", code_name(chld_codes[j]), chld_status[j]);
    printf("\n");
    signal(SIGCHLD, SIG_DFL);

    /* a child that stops itself with raise(SIGTSTP), and continues to exit */
    pid = fork();
    if (pid == 0) { setpgid(0, 0); raise(SIGTSTP); _exit(5); }
    waitpid(pid, &st, WUNTRACED);
    show_status("raise(SIGTSTP) in its own group", st);
    kill(pid, SIGCONT);
    waitpid(pid, &st, 0);
    show_status("then", st);
}

static void process_groups(void) {
    /* two children in a new group: kill(-pgid) reaches both, and nobody else */
    pid_t a = fork();
    if (a == 0) { setpgid(0, 0); for (;;) pause(); }
    setpgid(a, a);
    pid_t b = fork();
    if (b == 0) { setpgid(0, a); for (;;) pause(); }
    setpgid(b, a);
    pid_t c = sleeper();
    sleep_ms(10);
    printf("kill(-pgid, SIGSTOP) %d\n", kill(-a, SIGSTOP));
    int st, n = 0;
    siginfo_t si;
    while (waitid(P_PGID, a, &si, WSTOPPED) == 0 && si.si_code == CLD_STOPPED && ++n < 2) {}
    printf("stopped in the group: %d\n", n);
    memset(&si, 0, sizeof si);
    printf("the other child: %d (pid %d)\n", waitid(P_PID, c, &si, WSTOPPED | WNOHANG), si.si_pid);
    printf("kill(-pgid, SIGCONT) %d\n", kill(-a, SIGCONT));
    printf("killpg SIGTERM %d\n", killpg(a, SIGTERM));
    waitpid(a, &st, 0); show_status("a", st);
    waitpid(b, &st, 0); show_status("b", st);
    errno = 0;
    { long r = kill(-a, 0); printf("kill(-pgid) after: %ld errno %d\n", r, errno); }
    kill(c, SIGKILL);
    waitpid(c, &st, 0); show_status("c", st);
    /* a child in our own group: we lead the session, so the group is orphaned and SIGTSTP is
     * discarded (SIGSTOP still stops) */
    pid_t d = fork();
    if (d == 0) { for (;;) pause(); }
    kill(d, SIGTSTP);
    sleep_ms(10);
    printf("orphaned group, SIGTSTP: %d\n", waitpid(d, &st, WNOHANG | WUNTRACED));
    kill(d, SIGSTOP);
    waitpid(d, &st, WUNTRACED); show_status("orphaned group, SIGSTOP", st);
    kill(d, SIGKILL);
    waitpid(d, &st, 0); show_status("d", st);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (setsid() < 0) perror("setsid");           /* the same session layout natively and in the guest */
    priorities();
    groups();
    times_call();
    itimers();
    stop_and_continue();
    process_groups();
    printf("done\n");
    return 0;
}
