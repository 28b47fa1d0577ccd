/* pthreads: glibc threads, one scenario per argument, each printing output that does not depend
 * on how the threads were scheduled (the guest's run is compared with a native run).
 *
 *   pthreads mutex|condvar|barrier|tls|join|many|sigthread|altstack|fatal|cancel|robust|
 *            mainexit|forkwait|exec|futex|fs|proc|epoll|status
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NTHREADS 4

static void die(const char *what, int err)
{
    printf("FAIL %s: %s\n", what, strerror(err));
    exit(1);
}

#define CHECK(call) do { int e_ = (call); if (e_) die(#call, e_); } while (0)

static long futex(void *uaddr, int op, unsigned val, const struct timespec *ts, void *uaddr2, unsigned val3)
{
    return syscall(SYS_futex, uaddr, op, val, ts, uaddr2, val3);
}

/* ---- mutex: contended increments (each thread yields while holding the lock) ---- */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;

static void *mutex_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20000; i++) {
        pthread_mutex_lock(&lock);
        long v = counter;
        if (i % 500 == 0)
            sched_yield();                      /* others find the lock taken and sleep */
        counter = v + 1;
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

static int t_mutex(void)
{
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        CHECK(pthread_create(&t[i], NULL, mutex_worker, NULL));
    for (int i = 0; i < NTHREADS; i++)
        CHECK(pthread_join(t[i], NULL));
    printf("mutex: counter=%ld (expected %d)\n", counter, NTHREADS * 20000);
    return counter != NTHREADS * 20000;
}

/* ---- condvar: bounded queue, 2 producers, 2 consumers ---- */
#define QSIZE 4
#define ITEMS 2000
static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t notempty = PTHREAD_COND_INITIALIZER, notfull = PTHREAD_COND_INITIALIZER;
static int queue[QSIZE], qhead, qlen, produced_done;

static void *producer(void *arg)
{
    int base = (int)(intptr_t)arg;
    for (int i = 1; i <= ITEMS; i++) {
        pthread_mutex_lock(&qlock);
        while (qlen == QSIZE)
            pthread_cond_wait(&notfull, &qlock);
        queue[(qhead + qlen++) % QSIZE] = base + i;
        pthread_cond_signal(&notempty);
        pthread_mutex_unlock(&qlock);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    (void)arg;
    long sum = 0, n = 0;
    for (;;) {
        pthread_mutex_lock(&qlock);
        while (qlen == 0 && produced_done < 2)
            pthread_cond_wait(&notempty, &qlock);
        if (qlen == 0) {
            pthread_mutex_unlock(&qlock);
            break;
        }
        sum += queue[qhead];
        qhead = (qhead + 1) % QSIZE;
        qlen--;
        n++;
        pthread_cond_signal(&notfull);
        pthread_mutex_unlock(&qlock);
    }
    long *out = malloc(2 * sizeof(long));
    out[0] = sum;
    out[1] = n;
    return out;
}

static int t_condvar(void)
{
    pthread_t p[2], c[2];
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&c[i], NULL, consumer, NULL));
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&p[i], NULL, producer, (void *)(intptr_t)(i * 100000)));
    for (int i = 0; i < 2; i++)
        CHECK(pthread_join(p[i], NULL));
    pthread_mutex_lock(&qlock);
    produced_done = 2;
    pthread_cond_broadcast(&notempty);
    pthread_mutex_unlock(&qlock);
    long sum = 0, n = 0;
    for (int i = 0; i < 2; i++) {
        long *r;
        CHECK(pthread_join(c[i], (void **)&r));
        sum += r[0];
        n += r[1];
        free(r);
    }
    printf("condvar: items=%ld sum=%ld\n", n, sum);
    return n != 2 * ITEMS;
}

/* ---- barrier: every round, each thread sees every other thread's slot ---- */
static pthread_barrier_t barrier;
static int slots[NTHREADS];
static int barrier_errors;

static void *barrier_worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int round = 1; round <= 20; round++) {
        slots[id] = round;
        pthread_barrier_wait(&barrier);
        for (int j = 0; j < NTHREADS; j++)
            if (slots[j] != round)
                __atomic_add_fetch(&barrier_errors, 1, __ATOMIC_SEQ_CST);
        pthread_barrier_wait(&barrier);
    }
    return NULL;
}

static int t_barrier(void)
{
    pthread_t t[NTHREADS];
    CHECK(pthread_barrier_init(&barrier, NULL, NTHREADS));
    for (int i = 0; i < NTHREADS; i++)
        CHECK(pthread_create(&t[i], NULL, barrier_worker, (void *)(intptr_t)i));
    for (int i = 0; i < NTHREADS; i++)
        CHECK(pthread_join(t[i], NULL));
    printf("barrier: 20 rounds, errors=%d\n", barrier_errors);
    return barrier_errors != 0;
}

/* ---- TLS: __thread variables are per thread (fs_base) ---- */
static __thread int tls_value = 7;
static __thread char tls_name[16] = "main";

static void *tls_worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    int first = tls_value;
    tls_value = id * 10;
    snprintf(tls_name, sizeof tls_name, "thread%d", id);
    for (int i = 0; i < 5; i++) {
        sched_yield();
        if (tls_value != id * 10)
            return (void *)-1L;
    }
    printf("tls: %s first=%d now=%d\n", tls_name, first, tls_value);
    return (void *)(intptr_t)tls_value;
}

static int t_tls(void)
{
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        CHECK(pthread_create(&t[i], NULL, tls_worker, (void *)(intptr_t)(i + 1)));
        CHECK(pthread_join(t[i], NULL));        /* one at a time: the lines come in order */
    }
    printf("tls: %s keeps %d\n", tls_name, tls_value);
    return tls_value != 7;
}

/* ---- join: return values ---- */
static void *square(void *arg)
{
    long n = (long)arg;
    return (void *)(n * n);
}

static int t_join(void)
{
    pthread_t t[8];
    for (long i = 0; i < 8; i++)
        CHECK(pthread_create(&t[i], NULL, square, (void *)i));
    for (int i = 0; i < 8; i++) {
        void *r;
        CHECK(pthread_join(t[i], &r));
        printf("join: thread %d returned %ld\n", i, (long)r);
    }
    return 0;
}

/* ---- many: 64 threads in waves, detached ones too; pids and tids ---- */
static int detached_done;

static void *tid_worker(void *arg)
{
    (void)arg;
    return (void *)(long)(getpid() == (pid_t)syscall(SYS_gettid) ? 1 : 0);
}

static void *detached_worker(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&detached_done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static int t_many(void)
{
    int same = 0;
    for (int wave = 0; wave < 4; wave++) {
        pthread_t t[16];
        for (int i = 0; i < 16; i++)
            CHECK(pthread_create(&t[i], NULL, tid_worker, NULL));
        for (int i = 0; i < 16; i++) {
            void *r;
            CHECK(pthread_join(t[i], &r));
            same += (int)(long)r;
        }
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (int i = 0; i < 8; i++) {
        pthread_t t;
        CHECK(pthread_create(&t, &attr, detached_worker, NULL));
    }
    while (__atomic_load_n(&detached_done, __ATOMIC_SEQ_CST) < 8)
        usleep(1000);
    printf("many: 64 joined, %d had tid == pid, 8 detached ran; main tid == pid: %s\n", same,
           getpid() == (pid_t)syscall(SYS_gettid) ? "yes" : "no");
    return same != 0;
}

/* ---- sigthread: a signal for one thread runs its handler in that thread; a process-directed
 *      signal goes to a thread that does not block it ---- */
static volatile pid_t handled_in;
static sem_t ready, go;

static void record_tid(int sig)
{
    (void)sig;
    handled_in = (pid_t)syscall(SYS_gettid);
}

static pid_t worker_tid;

static void *sig_worker(void *arg)
{
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);     /* this thread will not take SIGUSR2 */
    worker_tid = (pid_t)syscall(SYS_gettid);
    sem_post(&ready);
    while (sem_wait(&go) == -1 && errno == EINTR)
        ;
    return NULL;
}

static pid_t taker_tid;

static void *sig_taker(void *arg)
{
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);   /* the one thread that takes SIGUSR2 */
    taker_tid = (pid_t)syscall(SYS_gettid);
    sem_post(&ready);
    while (!handled_in)
        usleep(1000);
    return NULL;
}

static int t_sigthread(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = record_tid;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    sem_init(&ready, 0, 0);
    sem_init(&go, 0, 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, sig_worker, NULL));
    sem_wait(&ready);
    CHECK(pthread_kill(t, SIGUSR1));
    while (!handled_in)
        usleep(1000);
    printf("sigthread: SIGUSR1 by pthread_kill ran in the target thread: %s\n",
           handled_in == worker_tid ? "yes" : "no");
    handled_in = 0;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, NULL);         /* main blocks it too, for now */
    kill(getpid(), SIGUSR2);
    sigset_t pend;
    sigpending(&pend);
    printf("sigthread: SIGUSR2 pending while every thread blocks it: %s, handled: %s\n",
           sigismember(&pend, SIGUSR2) ? "yes" : "no", handled_in ? "yes" : "no");
    sigprocmask(SIG_UNBLOCK, &set, NULL);       /* delivered here, to main */
    printf("sigthread: SIGUSR2 after unblocking ran in main: %s\n",
           handled_in == getpid() ? "yes" : "no");
    handled_in = 0;
    sigprocmask(SIG_BLOCK, &set, NULL);         /* main blocks it again; a new thread does not */
    pthread_t taker;
    CHECK(pthread_create(&taker, NULL, sig_taker, NULL));
    sem_wait(&ready);
    kill(getpid(), SIGUSR2);
    CHECK(pthread_join(taker, NULL));
    printf("sigthread: SIGUSR2 to the process while main blocks it ran in the thread that does not: %s\n",
           handled_in == taker_tid ? "yes" : "no");
    long r = syscall(SYS_tgkill, getpid() + 100000, worker_tid, SIGUSR1);
    printf("sigthread: tgkill with the wrong tgid: %ld %s\n", r, r ? strerrorname_np(errno) : "");
    sem_post(&go);
    CHECK(pthread_join(t, NULL));
    return 0;
}

/* ---- altstack: each thread has its own alternate signal stack ---- */
static char *alt_lo[2], *alt_hi[2];
static volatile int on_alt[2];

static void alt_handler(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)si, (void)uc;
    char here;
    for (int i = 0; i < 2; i++)
        if (&here >= alt_lo[i] && &here < alt_hi[i])
            on_alt[i] = 1;
}

static void *alt_worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    stack_t ss = {.ss_sp = malloc(65536), .ss_size = 65536, .ss_flags = 0};
    alt_lo[id] = ss.ss_sp;
    alt_hi[id] = (char *)ss.ss_sp + ss.ss_size;
    if (sigaltstack(&ss, NULL))
        die("sigaltstack", errno);
    stack_t old;
    sigaltstack(NULL, &old);
    pthread_kill(pthread_self(), SIGUSR1);
    return (void *)(intptr_t)(old.ss_sp == ss.ss_sp);
}

static int t_altstack(void)
{
    struct sigaction sa = {0};
    sa.sa_sigaction = alt_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGUSR1, &sa, NULL);
    stack_t mine;
    sigaltstack(NULL, &mine);
    for (int i = 0; i < 2; i++) {
        pthread_t t;
        void *r;
        CHECK(pthread_create(&t, NULL, alt_worker, (void *)(intptr_t)i));
        CHECK(pthread_join(t, &r));
        printf("altstack: thread %d handler on its own stack: %s, sigaltstack read back: %s\n", i,
               on_alt[i] ? "yes" : "no", r ? "yes" : "no");
    }
    printf("altstack: main still has none: %s\n", mine.ss_flags & SS_DISABLE ? "yes" : "no");
    return 0;
}

/* ---- fatal: SIGTERM sent to one thread kills the whole process ---- */
static void *sleeper(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

static int t_fatal(void)
{
    pthread_t t;
    CHECK(pthread_create(&t, NULL, sleeper, NULL));
    printf("fatal: sending SIGTERM to a thread\n");
    fflush(stdout);
    pthread_kill(t, SIGTERM);
    pthread_join(t, NULL);                      /* never returns: the process dies */
    printf("fatal: still alive?\n");
    return 0;
}

/* ---- cancel: a thread blocked in a cancellation point, its cleanup handler ---- */
static int cleaned;

static void cleanup(void *arg)
{
    (void)arg;
    cleaned = 1;
}

static void *cancellable(void *arg)
{
    int *fds = arg;
    char c;
    pthread_cleanup_push(cleanup, NULL);
    sem_post(&ready);
    read(fds[0], &c, 1);                        /* nothing ever comes */
    pthread_cleanup_pop(0);
    return NULL;
}

static int t_cancel(void)
{
    int fds[2];
    pipe(fds);
    sem_init(&ready, 0, 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, cancellable, fds));
    sem_wait(&ready);
    usleep(10000);
    CHECK(pthread_cancel(t));
    void *r;
    CHECK(pthread_join(t, &r));
    printf("cancel: joined %s, cleanup ran: %s\n", r == PTHREAD_CANCELED ? "PTHREAD_CANCELED" : "a value",
           cleaned ? "yes" : "no");
    return 0;
}

/* ---- robust: the owner dies holding the mutex; a waiter gets EOWNERDEAD ---- */
static pthread_mutex_t robust;

static void *robust_owner(void *arg)
{
    (void)arg;
    CHECK(pthread_mutex_lock(&robust));
    sem_post(&ready);
    usleep(20000);                              /* main blocks on the mutex meanwhile */
    return NULL;                                /* exits holding it */
}

static int t_robust(void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    CHECK(pthread_mutex_init(&robust, &a));
    sem_init(&ready, 0, 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, robust_owner, NULL));
    sem_wait(&ready);
    int r = pthread_mutex_lock(&robust);       /* sleeps until the owner's death wakes it */
    printf("robust: lock after the owner died: %s\n", r == EOWNERDEAD ? "EOWNERDEAD" : strerror(r));
    if (r == EOWNERDEAD)
        CHECK(pthread_mutex_consistent(&robust));
    CHECK(pthread_mutex_unlock(&robust));
    r = pthread_mutex_lock(&robust);
    printf("robust: lock again: %d\n", r);
    pthread_mutex_unlock(&robust);
    pthread_join(t, NULL);
    /* the same without a waiter: the dead owner's mark is found by the next lock */
    CHECK(pthread_create(&t, NULL, robust_owner, NULL));
    pthread_join(t, NULL);
    r = pthread_mutex_lock(&robust);
    printf("robust: lock after the owner died (no waiter): %s\n", r == EOWNERDEAD ? "EOWNERDEAD" : strerror(r));
    return 0;
}

/* ---- mainexit: main calls pthread_exit; the last thread's exit() ends the process ---- */
static void *last_one(void *arg)
{
    (void)arg;
    usleep(20000);
    printf("mainexit: the last thread exits with 3\n");
    fflush(stdout);
    exit(3);
}

static int t_mainexit(void)
{
    pthread_t t;
    CHECK(pthread_create(&t, NULL, last_one, NULL));
    pthread_exit(NULL);
}

/* ---- forkwait: a parent waits for a multithreaded child; the child's main thread leaves first ---- */
static void *child_thread(void *arg)
{
    (void)arg;
    usleep(20000);
    syscall(SYS_exit, 7);                       /* only this thread; the last of its process */
    return NULL;
}

static int t_forkwait(void)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        pthread_t t;
        pthread_create(&t, NULL, child_thread, NULL);
        syscall(SYS_exit, 5);                   /* main thread only: the process lives on */
    }
    int status;
    pid_t r = waitpid(pid, &status, 0);
    printf("forkwait: waitpid returned the child: %s, exited %d with %d\n", r == pid ? "yes" : "no",
           WIFEXITED(status), WEXITSTATUS(status));
    return 0;
}

/* ---- exec: a non-leader thread execs; the other threads go, the pid stays ---- */
static char pidarg[32];

static void *exec_thread(void *arg)
{
    (void)arg;
    char *argv[] = {"pthreads", "status", pidarg, NULL};
    execv("/proc/self/exe", argv);
    die("execv", errno);
    return NULL;
}

static int t_exec(void)
{
    snprintf(pidarg, sizeof pidarg, "%d", getpid());
    pthread_t t, s;
    CHECK(pthread_create(&s, NULL, sleeper, NULL));
    CHECK(pthread_create(&t, NULL, exec_thread, NULL));
    for (;;)
        pause();
    return 0;
}

static int t_status(const char *oldpid)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    int threads = -1, tgid = -1, pid = -1;
    while (f && fgets(line, sizeof line, f)) {
        sscanf(line, "Threads: %d", &threads);
        sscanf(line, "Tgid: %d", &tgid);
        sscanf(line, "Pid: %d", &pid);
    }
    printf("status: threads=%d tgid==pid: %s", threads, tgid == pid && pid == getpid() ? "yes" : "no");
    if (oldpid)
        printf(", pid kept across exec: %s", atoi(oldpid) == getpid() ? "yes" : "no");
    printf("\n");
    return 0;
}

/* ---- fs: threads share the working directory and umask (CLONE_FS) ---- */
static void *fs_worker(void *arg)
{
    (void)arg;
    chdir("/proc");
    umask(027);
    return NULL;
}

static int t_fs(void)
{
    pthread_t t;
    char after[4096];
    chdir("/");          /* (EROFS in a guest without a root disk: cwd is / already) */
    CHECK(pthread_create(&t, NULL, fs_worker, NULL));
    CHECK(pthread_join(t, NULL));
    getcwd(after, sizeof after);
    mode_t old = umask(022);
    printf("fs: a thread's chdir(\"/proc\") moved main: %s, its umask reached main: %s\n",
           strcmp(after, "/") ? "yes" : "no", old == 027 ? "yes" : "no");
    return 0;
}

/* ---- proc: /proc/self/status and /proc/self/task/TID of a process with threads ---- */
static sem_t proc_go;

static void *proc_worker(void *arg)
{
    (void)arg;
    while (sem_wait(&proc_go) == -1 && errno == EINTR)
        ;
    return NULL;
}

static int status_field(const char *path, const char *name)
{
    char line[256];
    int value = -1;
    size_t n = strlen(name);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, name, n) && line[n] == ':')
            value = atoi(line + n + 1);
    if (f)
        fclose(f);
    return value;
}

static int t_proc(void)
{
    pthread_t t[3];
    sem_init(&proc_go, 0, 0);
    sem_init(&ready, 0, 0);
    for (int i = 0; i < 3; i++)
        CHECK(pthread_create(&t[i], NULL, proc_worker, NULL));
    printf("proc: Threads: %d, Tgid is getpid(): %s\n", status_field("/proc/self/status", "Threads"),
           status_field("/proc/self/status", "Tgid") == getpid() ? "yes" : "no");
    int n = 0, consistent = 1, leader = 0;
    char path[300];
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        int tid = atoi(e->d_name);
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        n++;
        leader += tid == getpid();
        consistent &= status_field(path, "Pid") == tid && status_field(path, "Tgid") == getpid();
    }
    if (d)
        closedir(d);
    consistent &= leader == 1;
    printf("proc: /proc/self/task lists %d threads, each with its tid and our tgid: %s\n", n,
           consistent ? "yes" : "no");
    for (int i = 0; i < 3; i++)
        sem_post(&proc_go);
    for (int i = 0; i < 3; i++)
        CHECK(pthread_join(t[i], NULL));
    return 0;
}

/* ---- epoll: level and edge triggering, one-shot, a waiter woken by another thread ---- */
static int epoll_pipe[2];

static void *late_writer(void *arg)
{
    (void)arg;
    usleep(10000);
    write(epoll_pipe[1], "x", 1);
    return NULL;
}

static const char *ep_result(int n, struct epoll_event *ev)
{
    static char buf[64];
    if (n < 0)
        snprintf(buf, sizeof buf, "-1 %s", strerrorname_np(errno));
    else if (n == 0)
        snprintf(buf, sizeof buf, "0");
    else
        snprintf(buf, sizeof buf, "%d events=%#x data=%lu", n, ev[0].events, (unsigned long)ev[0].data.u64);
    return buf;
}

static int t_epoll(void)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 42}, out[4];
    int ep = epoll_create1(EPOLL_CLOEXEC);
    pipe(epoll_pipe);
    printf("epoll: create1 bad flags: %s\n", ep_result(epoll_create1(1), out));
    printf("epoll: ADD: %d", epoll_ctl(ep, EPOLL_CTL_ADD, epoll_pipe[0], &ev));
    printf(", again: %s\n", ep_result(epoll_ctl(ep, EPOLL_CTL_ADD, epoll_pipe[0], &ev), out));
    printf("epoll: MOD of an fd not added: %s\n", ep_result(epoll_ctl(ep, EPOLL_CTL_MOD, epoll_pipe[1], &ev), out));
    int reg = open("/proc/self/exe", O_RDONLY);
    printf("epoll: ADD a regular file: %s\n", ep_result(epoll_ctl(ep, EPOLL_CTL_ADD, reg, &ev), out));
    printf("epoll: ADD itself: %s\n", ep_result(epoll_ctl(ep, EPOLL_CTL_ADD, ep, &ev), out));
    printf("epoll: wait with maxevents 0: %s\n", ep_result(epoll_wait(ep, out, 0, 0), out));
    printf("epoll: wait 10 ms, nothing ready: %s\n", ep_result(epoll_wait(ep, out, 4, 10), out));
    write(epoll_pipe[1], "ab", 2);
    printf("epoll: level-triggered: %s", ep_result(epoll_wait(ep, out, 4, 0), out));
    printf(", again: %s\n", ep_result(epoll_wait(ep, out, 4, 0), out));
    ev.events = EPOLLIN | EPOLLET;
    epoll_ctl(ep, EPOLL_CTL_MOD, epoll_pipe[0], &ev);
    printf("epoll: edge-triggered: %s", ep_result(epoll_wait(ep, out, 4, 0), out));
    printf(", again: %s", ep_result(epoll_wait(ep, out, 4, 0), out));
    write(epoll_pipe[1], "c", 1);
    printf(", after another write: %s\n", ep_result(epoll_wait(ep, out, 4, 0), out));
    ev.events = EPOLLIN | EPOLLONESHOT;
    epoll_ctl(ep, EPOLL_CTL_MOD, epoll_pipe[0], &ev);
    printf("epoll: one-shot: %s", ep_result(epoll_wait(ep, out, 4, 0), out));
    printf(", again: %s", ep_result(epoll_wait(ep, out, 4, 0), out));
    epoll_ctl(ep, EPOLL_CTL_MOD, epoll_pipe[0], &ev);
    printf(", re-armed: %s\n", ep_result(epoll_wait(ep, out, 4, 0), out));
    char buf[8];
    read(epoll_pipe[0], buf, sizeof buf);
    ev.events = EPOLLIN;
    epoll_ctl(ep, EPOLL_CTL_MOD, epoll_pipe[0], &ev);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, late_writer, NULL));
    printf("epoll: wait forever, another thread writes: %s\n", ep_result(epoll_wait(ep, out, 4, -1), out));
    pthread_join(t, NULL);
    printf("epoll: DEL: %d", epoll_ctl(ep, EPOLL_CTL_DEL, epoll_pipe[0], NULL));
    printf(", then wait: %s\n", ep_result(epoll_wait(ep, out, 4, 0), out));
    return 0;
}

/* ---- futex: the system call itself ---- */
static int fw1, fw2, fw_results[4];

static int waiters_on(int *word, int private)
{
    /* requeue to the same word wakes nobody and counts the waiters */
    return (int)futex(word, FUTEX_REQUEUE | (private ? FUTEX_PRIVATE_FLAG : 0), 0, (void *)(long)0x7fffffff,
                      word, 0);
}

static void *futex_waiter(void *arg)
{
    int i = (int)(intptr_t)arg;
    long r = futex(&fw1, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    fw_results[i] = r == 0 ? 0 : errno;
    return NULL;
}

static void *bitset_waiter(void *arg)
{
    (void)arg;
    long r = futex(&fw2, FUTEX_WAIT_BITSET_PRIVATE, 0, NULL, NULL, 0x1);
    return (void *)(r == 0 ? 0L : (long)errno);
}

static volatile int usr1_seen;

static void on_usr1(int sig) { (void)sig; usr1_seen = 1; }

static unsigned long robust_loop[4];

static void *bad_robust(void *arg)
{
    /* a robust list whose entry points at itself, or at nothing: the walk at exit must end */
    robust_loop[0] = (unsigned long)&robust_loop[3];      /* head.list.next -> the entry */
    robust_loop[1] = 8;                                   /* futex_offset */
    robust_loop[2] = arg ? 0xdead0000UL : 0;              /* list_op_pending */
    robust_loop[3] = arg ? 0xdead0000UL : (unsigned long)&robust_loop[3];
    return (void *)syscall(SYS_set_robust_list, robust_loop, 24);
}

static void *eintr_waiter(void *arg)
{
    (void)arg;
    long r = futex(&fw2, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    return (void *)(r == 0 ? 0L : (long)errno);
}

static const char *name(long r, int e)
{
    static char buf[64];
    if (r >= 0)
        snprintf(buf, sizeof buf, "%ld", r);
    else
        snprintf(buf, sizeof buf, "-1 %s", strerrorname_np(e));
    return buf;
}

static int t_futex(void)
{
    struct timespec ts = {0, 5000000}, abs;
    long r;
    int word = 1;
    r = futex(&word, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
    printf("futex: WAIT on a changed value: %s\n", name(r, errno));
    r = futex(&word, FUTEX_WAIT_PRIVATE, 1, &ts, NULL, 0);
    printf("futex: WAIT 5 ms, nobody wakes: %s\n", name(r, errno));
    clock_gettime(CLOCK_MONOTONIC, &abs);
    abs.tv_nsec += 5000000;
    if (abs.tv_nsec >= 1000000000) abs.tv_sec++, abs.tv_nsec -= 1000000000;
    r = futex(&word, FUTEX_WAIT_BITSET_PRIVATE, 1, &abs, NULL, FUTEX_BITSET_MATCH_ANY);
    printf("futex: WAIT_BITSET until monotonic now+5ms: %s\n", name(r, errno));
    clock_gettime(CLOCK_REALTIME, &abs);
    abs.tv_nsec += 5000000;
    if (abs.tv_nsec >= 1000000000) abs.tv_sec++, abs.tv_nsec -= 1000000000;
    r = futex(&word, FUTEX_WAIT_BITSET_PRIVATE | FUTEX_CLOCK_REALTIME, 1, &abs, NULL, FUTEX_BITSET_MATCH_ANY);
    printf("futex: WAIT_BITSET|CLOCK_REALTIME until realtime now+5ms: %s\n", name(r, errno));
    r = futex(&word, FUTEX_WAIT_BITSET_PRIVATE, 1, NULL, NULL, 0);
    printf("futex: WAIT_BITSET with bitset 0: %s\n", name(r, errno));
    r = futex((char *)&word + 1, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    printf("futex: WAKE on a misaligned word: %s\n", name(r, errno));
    r = futex(&word, FUTEX_WAIT_PRIVATE | FUTEX_CLOCK_REALTIME, 1, &ts, NULL, 0);
    printf("futex: WAIT with FUTEX_CLOCK_REALTIME: %s\n", name(r, errno));
    r = futex(&word, FUTEX_WAKE_PRIVATE | FUTEX_CLOCK_REALTIME, 1, NULL, NULL, 0);
    printf("futex: WAKE with FUTEX_CLOCK_REALTIME: %s\n", name(r, errno));
    r = futex(&word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    printf("futex: WAKE with no waiter: %s\n", name(r, errno));

    /* requeue: three waiters on fw1; wake one, move two to fw2, then wake those */
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        CHECK(pthread_create(&t[i], NULL, futex_waiter, (void *)(intptr_t)i));
    while (waiters_on(&fw1, 1) < 3)
        usleep(1000);
    r = futex(&fw1, FUTEX_CMP_REQUEUE_PRIVATE, 1, (void *)2L, &fw2, 1);
    printf("futex: CMP_REQUEUE with a stale value: %s\n", name(r, errno));
    r = futex(&fw1, FUTEX_CMP_REQUEUE_PRIVATE, 1, (void *)2L, &fw2, 0);
    printf("futex: CMP_REQUEUE wake 1, requeue 2: %s; waiting on fw1 %d, on fw2 %d\n", name(r, errno),
           waiters_on(&fw1, 1), waiters_on(&fw2, 1));
    r = futex(&fw2, FUTEX_WAKE, 5, NULL, NULL, 0);
    printf("futex: a shared WAKE does not wake private waiters: %s\n", name(r, errno));
    r = futex(&fw2, FUTEX_WAKE_PRIVATE, 5, NULL, NULL, 0);
    printf("futex: WAKE the requeued: %s\n", name(r, errno));
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    printf("futex: the waiters returned %d %d %d\n", fw_results[0], fw_results[1], fw_results[2]);

    /* bitsets */
    pthread_t b;
    CHECK(pthread_create(&b, NULL, bitset_waiter, NULL));
    while (waiters_on(&fw2, 1) < 1)
        usleep(1000);
    r = futex(&fw2, FUTEX_WAKE_BITSET_PRIVATE, 1, NULL, NULL, 0x2);
    printf("futex: WAKE_BITSET 0x2 to a waiter of 0x1: %s\n", name(r, errno));
    r = futex(&fw2, FUTEX_WAKE_BITSET_PRIVATE, 1, NULL, NULL, 0x3);
    printf("futex: WAKE_BITSET 0x3: %s\n", name(r, errno));
    pthread_join(b, NULL);

    /* wake_op: *fw2 = 5, wake fw1, and fw2 if the old *fw2 was 0 */
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&t[i], NULL, futex_waiter, (void *)(intptr_t)i));
    CHECK(pthread_create(&b, NULL, bitset_waiter, NULL));
    while (waiters_on(&fw1, 1) < 2 || waiters_on(&fw2, 1) < 1)
        usleep(1000);
    r = futex(&fw1, FUTEX_WAKE_OP_PRIVATE, 1, (void *)1L, &fw2,
              FUTEX_OP(FUTEX_OP_SET, 5, FUTEX_OP_CMP_EQ, 0));
    printf("futex: WAKE_OP set 5, cmp eq 0: %s, fw2 now %d\n", name(r, errno), fw2);
    r = futex(&fw1, FUTEX_WAKE_OP_PRIVATE, 1, (void *)1L, &fw2,
              FUTEX_OP(FUTEX_OP_ADD, 1, FUTEX_OP_CMP_EQ, 0));
    printf("futex: WAKE_OP add 1, cmp eq 0: %s, fw2 now %d\n", name(r, errno), fw2);
    pthread_join(t[0], NULL);
    pthread_join(t[1], NULL);
    pthread_join(b, NULL);

    /* a handler interrupts a wait: EINTR (no SA_RESTART) */
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    fw2 = 0;
    CHECK(pthread_create(&b, NULL, eintr_waiter, NULL));
    while (waiters_on(&fw2, 1) < 1)
        usleep(1000);
    pthread_kill(b, SIGUSR1);
    void *res;
    pthread_join(b, &res);
    printf("futex: a signal's handler interrupts WAIT: %s\n", strerrorname_np((int)(long)res));
    sa.sa_flags = SA_RESTART;                   /* now the wait goes on after the handler */
    sigaction(SIGUSR1, &sa, NULL);
    CHECK(pthread_create(&b, NULL, eintr_waiter, NULL));
    while (waiters_on(&fw2, 1) < 1)
        usleep(1000);
    usr1_seen = 0;
    pthread_kill(b, SIGUSR1);
    while (!usr1_seen)
        usleep(1000);
    int back = 0;
    for (int i = 0; i < 1000 && !back; i++) {   /* the handler ran; is the wait going on? */
        back = waiters_on(&fw2, 1);
        if (!back)
            usleep(1000);
    }
    r = futex(&fw2, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    pthread_join(b, &res);
    printf("futex: under SA_RESTART the waiter is back waiting: %d, woken: %s, WAIT returned %ld\n", back,
           name(r, errno), (long)res);

    /* shared: a futex in MAP_SHARED memory between two processes */
    int *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    *shared = 0;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        long w = futex(shared, FUTEX_WAIT, 0, NULL, NULL, 0);
        _exit(w == 0 ? 0 : 1);
    }
    while (waiters_on(shared, 0) < 1)
        usleep(1000);
    *shared = 1;
    r = futex(shared, FUTEX_WAKE, 1, NULL, NULL, 0);
    int status;
    waitpid(pid, &status, 0);
    printf("futex: shared WAKE across fork: %s, the child's WAIT returned 0: %s\n", name(r, errno),
           WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "yes" : "no");

    /* bad arguments */
    r = futex(NULL, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    printf("futex: WAKE_PRIVATE on NULL: %s\n", name(r, errno));
    r = futex(NULL, FUTEX_WAKE, 1, NULL, NULL, 0);
    printf("futex: shared WAKE on NULL: %s\n", name(r, errno));
    r = futex((void *)0xffff800000000000UL, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    printf("futex: WAKE_PRIVATE on a kernel address: %s\n", name(r, errno));
    r = futex(NULL, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    printf("futex: WAIT on NULL: %s\n", name(r, errno));
    r = futex(&word, FUTEX_WAIT_PRIVATE, 1, (void *)8, NULL, 0);
    printf("futex: WAIT with a bad timeout pointer: %s\n", name(r, errno));
    struct timespec bad = {0, 1000000000};
    r = futex(&word, FUTEX_WAIT_PRIVATE, 1, &bad, NULL, 0);
    printf("futex: WAIT with tv_nsec = 1e9: %s\n", name(r, errno));
    r = futex(&word, FUTEX_REQUEUE_PRIVATE, 1, (void *)-1L, &fw2, 0);
    printf("futex: REQUEUE of -1 waiters: %s\n", name(r, errno));
    r = futex(&word, FUTEX_LOCK_PI_PRIVATE + 100, 0, NULL, NULL, 0);
    printf("futex: an unknown command: %s\n", name(r, errno));
    unsigned long cl[11] = {0};
    r = syscall(SYS_clone3, cl, 8);
    printf("clone3: size 8: %s\n", name(r, errno));
    r = syscall(SYS_clone3, cl, 8192);
    printf("clone3: size 8192: %s\n", name(r, errno));
    cl[0] = CLONE_THREAD | CLONE_SIGHAND | CLONE_VM;
    cl[4] = SIGCHLD;
    r = syscall(SYS_clone3, cl, 88);
    printf("clone3: CLONE_THREAD with an exit signal: %s\n", name(r, errno));
    r = syscall(SYS_clone, CLONE_THREAD, 0, 0, 0, 0);
    printf("clone: CLONE_THREAD without CLONE_SIGHAND: %s\n", name(r, errno));
    r = syscall(SYS_clone, CLONE_SIGHAND, 0, 0, 0, 0);
    printf("clone: CLONE_SIGHAND without CLONE_VM: %s\n", name(r, errno));

    for (long i = 0; i < 2; i++) {
        pthread_t rb;
        void *rr;
        CHECK(pthread_create(&rb, NULL, bad_robust, (void *)i));
        CHECK(pthread_join(rb, &rr));
        printf("futex: a thread exits with a %s robust list: set_robust_list %ld, joined\n",
               i ? "dangling" : "circular", (long)rr);
    }

    int *robust_head[3];
    size_t len = 0;
    r = syscall(SYS_get_robust_list, 0, robust_head, &len);
    printf("futex: get_robust_list: %s len %zu, set_robust_list bad len: ", name(r, errno), len);
    r = syscall(SYS_set_robust_list, robust_head, 7);
    printf("%s\n", name(r, errno));
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "mutex")) return t_mutex();
    if (!strcmp(what, "condvar")) return t_condvar();
    if (!strcmp(what, "barrier")) return t_barrier();
    if (!strcmp(what, "tls")) return t_tls();
    if (!strcmp(what, "join")) return t_join();
    if (!strcmp(what, "many")) return t_many();
    if (!strcmp(what, "sigthread")) return t_sigthread();
    if (!strcmp(what, "altstack")) return t_altstack();
    if (!strcmp(what, "fatal")) return t_fatal();
    if (!strcmp(what, "cancel")) return t_cancel();
    if (!strcmp(what, "robust")) return t_robust();
    if (!strcmp(what, "mainexit")) return t_mainexit();
    if (!strcmp(what, "forkwait")) return t_forkwait();
    if (!strcmp(what, "exec")) return t_exec();
    if (!strcmp(what, "status")) return t_status(argc > 2 ? argv[2] : NULL);
    if (!strcmp(what, "futex")) return t_futex();
    if (!strcmp(what, "fs")) return t_fs();
    if (!strcmp(what, "proc")) return t_proc();
    if (!strcmp(what, "epoll")) return t_epoll();
    fprintf(stderr, "usage: pthreads SCENARIO\n");
    return 2;
}
