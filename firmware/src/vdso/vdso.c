/* The vDSO: time without a system call, as Linux's arch/x86/entry/vdso/vclock_gettime.c.
 *
 * How it reads time: Linux reads the TSC with rdtsc and scales it with what the kernel keeps in
 * the [vvar] page. Unicorn cannot trap rdtsc (it returns the host's TSC, which would make the
 * guest non-deterministic), so the machine offers the same thing as a hypervisor CPUID leaf:
 * CPUID 0x40000001 returns the virtual clock in nanoseconds in EDX:EAX, exact to the instruction
 * (a 1 GHz "TSC" that is the virtual clock itself). The kernel keeps in [vvar] what turns that
 * count into each clock (the offset of CLOCK_REALTIME), so a call here and the system call read
 * the same clock at the same virtual instant, with no system call and no kernel entry. Clocks
 * the kernel computes per task (CPU-time clocks) fall back to the system call, as Linux's do. */
#include <stdint.h>

#define CLOCK_REALTIME 0
#define CLOCK_MONOTONIC 1
#define CLOCK_MONOTONIC_RAW 4
#define CLOCK_REALTIME_COARSE 5
#define CLOCK_MONOTONIC_COARSE 6
#define CLOCK_BOOTTIME 7
#define CPUID_VIRTUAL_CLOCK 0x40000001u
#define NSEC_PER_SEC 1000000000ull
#define __NR_gettimeofday 96
#define __NR_getcpu 309
#define __NR_clock_gettime 228
#define __NR_clock_getres 229

struct timespec64 { int64_t tv_sec; int64_t tv_nsec; };
struct timeval64 { int64_t tv_sec; int64_t tv_usec; };
struct timezone32 { int tz_minuteswest; int tz_dsttime; };

/* guestos/kernel/vdso.py writes this page (VVAR_LAYOUT there) */
struct vvar_data {
	uint32_t seq;                   /* odd while the kernel rewrites the page */
	uint32_t clock_mode;            /* 1: the virtual clock leaf is there */
	int64_t realtime_offset_ns;     /* CLOCK_REALTIME - CLOCK_MONOTONIC */
	int32_t tz_minuteswest;
	int32_t tz_dsttime;
};

extern const struct vvar_data vvar_page __attribute__((visibility("hidden")));

static inline uint64_t read_virtual_clock(void)
{
	uint32_t lo, hi, b, c;
	__asm__ volatile("cpuid" : "=a"(lo), "=b"(b), "=c"(c), "=d"(hi) : "a"(CPUID_VIRTUAL_CLOCK), "c"(0));
	return ((uint64_t)hi << 32) | lo;
}

static inline long syscall2(long nr, long a, long b)
{
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b) : "rcx", "r11", "memory");
	return ret;
}

static inline long syscall3(long nr, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return ret;
}

/* the clock in ns, or -1 for a clock the vDSO does not serve */
static int64_t vdso_clock_ns(int clock)
{
	const volatile struct vvar_data *vd = &vvar_page;
	uint32_t seq;
	int64_t offset, ns;
	if (vd->clock_mode != 1)
		return -1;
	do {
		seq = vd->seq;
		__asm__ volatile("" ::: "memory");
		offset = vd->realtime_offset_ns;
		ns = (int64_t)read_virtual_clock();
		__asm__ volatile("" ::: "memory");
	} while ((seq & 1) || seq != vd->seq);
	switch (clock) {
	case CLOCK_REALTIME:
	case CLOCK_REALTIME_COARSE:
		return ns + offset;
	case CLOCK_MONOTONIC:
	case CLOCK_MONOTONIC_RAW:
	case CLOCK_MONOTONIC_COARSE:
	case CLOCK_BOOTTIME:
		return ns;
	}
	return -1;
}

int __vdso_clock_gettime(int clock, struct timespec64 *ts)
{
	int64_t ns = vdso_clock_ns(clock);
	if (ns < 0)
		return (int)syscall2(__NR_clock_gettime, clock, (long)ts);
	ts->tv_sec = ns / NSEC_PER_SEC;
	ts->tv_nsec = ns % NSEC_PER_SEC;
	return 0;
}

int __vdso_gettimeofday(struct timeval64 *tv, struct timezone32 *tz)
{
	int64_t ns = vdso_clock_ns(CLOCK_REALTIME);
	if (ns < 0)
		return (int)syscall2(__NR_gettimeofday, (long)tv, (long)tz);
	if (tv) {
		tv->tv_sec = ns / NSEC_PER_SEC;
		tv->tv_usec = ns % NSEC_PER_SEC / 1000;
	}
	if (tz) {
		tz->tz_minuteswest = vvar_page.tz_minuteswest;
		tz->tz_dsttime = vvar_page.tz_dsttime;
	}
	return 0;
}

int64_t __vdso_time(int64_t *t)
{
	int64_t ns = vdso_clock_ns(CLOCK_REALTIME), sec;
	struct timeval64 tv;
	if (ns < 0) {
		syscall2(__NR_gettimeofday, (long)&tv, 0);
		sec = tv.tv_sec;
	} else {
		sec = ns / NSEC_PER_SEC;
	}
	if (t)
		*t = sec;
	return sec;
}

/* one CPU, one node */
long __vdso_getcpu(unsigned *cpu, unsigned *node, void *unused)
{
	(void)unused;
	if (cpu)
		*cpu = 0;
	if (node)
		*node = 0;
	return 0;
}

int __vdso_clock_getres(int clock, struct timespec64 *res)
{
	if (vdso_clock_ns(clock) < 0)
		return (int)syscall2(__NR_clock_getres, clock, (long)res);
	if (res) {
		res->tv_sec = 0;
		res->tv_nsec = 1;
	}
	return 0;
}

int clock_gettime(int, struct timespec64 *) __attribute__((weak, alias("__vdso_clock_gettime")));
int gettimeofday(struct timeval64 *, struct timezone32 *) __attribute__((weak, alias("__vdso_gettimeofday")));
int64_t time(int64_t *) __attribute__((weak, alias("__vdso_time")));
long getcpu(unsigned *, unsigned *, void *) __attribute__((weak, alias("__vdso_getcpu")));
int clock_getres(int, struct timespec64 *) __attribute__((weak, alias("__vdso_clock_getres")));
