"""Static C programs behave in the guest exactly as they do natively."""
import shutil
import subprocess

import pytest

from ballast_testlib import GUEST_ENV, boot
from vmm import cli

WORKOUT = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static unsigned long checksum(const unsigned char *p, size_t n) {
    unsigned long h = 1469598103934665603UL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211UL;
    return h;
}

int main(int argc, char **argv) {
    /* argv (not argv[0], which differs) and the environment */
    printf("argc=%d\n", argc);
    for (int i = 1; i < argc; i++) printf("argv[%d]=<%s> len=%zu\n", i, argv[i], strlen(argv[i]));
    const char *names[] = {"HOME", "TERM", "PATH", "NOT_SET_ANYWHERE"};
    for (int i = 0; i < 4; i++) {
        const char *v = getenv(names[i]);
        printf("%s=%s\n", names[i], v ? v : "(null)");
    }

    /* malloc/free of many sizes, with the contents checked */
    static const size_t sizes[] = {1, 7, 16, 24, 100, 511, 512, 1000, 4095, 4096, 4097, 65536,
                                   131072 - 64, 200000, 1 << 20, 3 << 20};
    enum { N = sizeof sizes / sizeof sizes[0] };
    unsigned char *blocks[N];
    unsigned long sum = 0;
    for (int i = 0; i < N; i++) {
        blocks[i] = malloc(sizes[i]);
        if (!blocks[i]) { printf("malloc(%zu) failed\n", sizes[i]); return 1; }
        for (size_t j = 0; j < sizes[i]; j++) blocks[i][j] = (unsigned char)(j * 31 + i);
    }
    for (int i = 0; i < N; i += 2) { free(blocks[i]); blocks[i] = NULL; }
    for (int i = 1; i < N; i += 2) sum += checksum(blocks[i], sizes[i]);
    printf("checksum=%lx\n", sum);
    for (int i = 1; i < N; i += 2) free(blocks[i]);
    /* lots of small objects, freed in a scrambled order */
    void *small[2000];
    for (int i = 0; i < 2000; i++) { small[i] = malloc(16 + (i * 37) % 300); memset(small[i], i, 16); }
    for (int i = 0; i < 2000; i++) { int k = (i * 7919) % 2000; free(small[k]); }

    /* realloc growing a buffer from small to mmap-sized and back down */
    size_t cap = 8, len = 0;
    char *buf = malloc(cap);
    for (int i = 0; i < 60000; i++) {
        int n = snprintf(NULL, 0, "%d,", i);
        if (len + n + 1 > cap) { cap *= 2; buf = realloc(buf, cap); if (!buf) return 2; }
        len += sprintf(buf + len, "%d,", i);
    }
    printf("realloc len=%zu cap=%zu checksum=%lx\n", len, cap, checksum((unsigned char *)buf, len));
    buf = realloc(buf, 100);
    buf[99] = 0;
    printf("shrunk=%.40s\n", buf);
    free(buf);
    /* calloc is zeroed, even for a large (mmap) block */
    unsigned char *z = calloc(1, 300000);
    size_t nz = 0;
    for (size_t i = 0; i < 300000; i++) nz += z[i] != 0;
    printf("calloc nonzero=%zu\n", nz);
    free(z);

    /* strings */
    char s[128];
    strcpy(s, "The quick brown fox");
    strcat(s, " jumps over the lazy dog");
    printf("strlen=%zu strchr=%s strrchr=%s strstr=%s\n", strlen(s), strchr(s, 'q'), strrchr(s, 'o'),
           strstr(s, "lazy"));
    char *dup = strdup(s);
    for (char *p = dup; *p; p++) if (*p >= 'a' && *p <= 'z') *p -= 32;
    printf("upper=%s cmp=%d ncmp=%d\n", dup, strcmp(s, dup) > 0, strncmp(s, dup, 1));
    free(dup);
    char *tok, *save, words[] = "alpha,beta,,gamma,delta";
    for (tok = strtok_r(words, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) printf("[%s]", tok);
    printf("\n");

    /* qsort */
    int nums[500];
    unsigned x = 12345;
    for (int i = 0; i < 500; i++) { x = x * 1103515245u + 12345u; nums[i] = (int)(x >> 8) % 100000 - 50000; }
    qsort(nums, 500, sizeof nums[0], cmp_int);
    int sorted = 1;
    for (int i = 1; i < 500; i++) sorted &= nums[i - 1] <= nums[i];
    printf("sorted=%d min=%d max=%d median=%d\n", sorted, nums[0], nums[499], nums[250]);
    char *fruit[] = {"pear", "apple", "fig", "banana", "cherry", "date"};
    qsort(fruit, 6, sizeof fruit[0], cmp_str);
    for (int i = 0; i < 6; i++) printf("%s ", fruit[i]);
    printf("\n");

    /* formatting doubles */
    double vals[] = {0.0, -0.0, 1.0 / 3.0, 2.718281828459045, 1e-300, 6.02214076e23, -123456.789, 0.1 + 0.2};
    for (int i = 0; i < 8; i++) {
        char out[96];
        snprintf(out, sizeof out, "%f|%.17g|%e|%a|%10.3f", vals[i], vals[i], vals[i], vals[i], vals[i]);
        printf("%s\n", out);
    }
    printf("strtod=%.10f atof=%g\n", strtod("3.14159265358979", NULL), atof("-2.5e-3"));
    return 0;
}
"""

CLOCK = r"""
#include <time.h>
int main(void) {
    struct timespec a, b, c;
    if (clock_gettime(CLOCK_MONOTONIC, &a)) return 10;
    volatile unsigned long sink = 0;
    for (unsigned long i = 0; i < 100000; i++) sink += i;
    if (clock_gettime(CLOCK_MONOTONIC, &b)) return 11;
    if (clock_gettime(CLOCK_REALTIME, &c)) return 12;
    long long ta = a.tv_sec * 1000000000LL + a.tv_nsec, tb = b.tv_sec * 1000000000LL + b.tv_nsec;
    if (a.tv_nsec < 0 || a.tv_nsec >= 1000000000L || b.tv_nsec < 0 || b.tv_nsec >= 1000000000L) return 13;
    if (tb <= ta) return 1;
    if (c.tv_sec < 1000000000L) return 2;     /* a realtime clock somewhere after 2001 */
    return 0;
}
"""

ABORT = r"""
#include <stdio.h>
#include <stdlib.h>
int main(void) { printf("about to abort\n"); fflush(stdout); abort(); }
"""

FPU_PROBE = r"""
#include <stdio.h>
int main(void) {
    unsigned short fcw; unsigned int mxcsr;
    __asm__ volatile("fnstcw %0" : "=m"(fcw));
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    printf("%#x %#x\n", fcw, mxcsr);
    return 0;
}
"""
# what Linux gives every new program (fpstate_init / fninit): x87 control word and SSE control/status
LINUX_FCW, LINUX_MXCSR = 0x37F, 0x1F80

ARGS = ["one", "two words", "", "x=1", "--flag", "ünïcode", 'a"b', "it's", "back\\slash", "tab\tx", "$HOME"]


def native_run(exe, args):
    proc = subprocess.run(["env", "-i", *[f"{k}={v}" for k, v in GUEST_ENV.items()], str(exe), *args],
                          capture_output=True, timeout=60)
    return proc.returncode, proc.stdout


def guest_run_cli(capfd, exe, args, mem="128M"):
    code = cli.main(["run", "--mem", mem, str(exe), "--", *args])
    out, err = capfd.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def workout_glibc(compile_c):
    return compile_c(WORKOUT, "workout", flags=("-static", "-O1"))


def assert_guest_matches_native(capfd, exe):
    ncode, nout = native_run(exe, ARGS)
    assert ncode == 0, nout
    code, out, err = guest_run_cli(capfd, exe, ARGS)
    assert err == ""
    assert code == 0
    assert out == nout.decode()


def test_glibc_program_matches_native(capfd, workout_glibc):
    assert_guest_matches_native(capfd, workout_glibc)


def test_glibc_program_matches_native_via_machine(workout_glibc):
    chunks = []
    run = boot(workout_glibc.read_bytes(), ["a", "b"], mem=96 << 20, name="workout", console_sink=chunks.append)
    ncode, nout = native_run(workout_glibc, ["a", "b"])
    assert run.code == ncode == 0
    assert b"".join(chunks) == run.output == nout
    # everything the program allocated came back when it exited
    assert run.vmstat["nr_anon_pages"] == 0
    assert run.vmstat["nr_page_table_pages"] == 0


@pytest.fixture(scope="module")
def guest_fpu_state(compile_c):
    exe = compile_c(FPU_PROBE, "fpuprobe", flags=("-static", "-O0"))
    run = boot(exe.read_bytes(), mem=64 << 20, name="fpuprobe")
    assert run.code == 0
    fcw, mxcsr = run.output.decode().split()
    return int(fcw, 16), int(mxcsr, 16)


def test_initial_fpu_state_is_the_linux_one(guest_fpu_state):
    assert guest_fpu_state == (LINUX_FCW, LINUX_MXCSR)


def test_musl_program_matches_native(capfd, compile_c, guest_fpu_state):
    if shutil.which("musl-gcc") is None:
        pytest.skip("musl-gcc is not on PATH")
    # musl formats doubles with x87 arithmetic: this needs the FPU state Linux starts with
    assert guest_fpu_state == (LINUX_FCW, LINUX_MXCSR)
    exe = compile_c(WORKOUT, "workout_musl", cc="musl-gcc", flags=("-static", "-O1"))
    assert_guest_matches_native(capfd, exe)


def test_clock_gettime_moves_forward(compile_c):
    exe = compile_c(CLOCK, "clock", flags=("-static", "-O1"))
    run = boot(exe.read_bytes(), mem=64 << 20, name="clock")
    assert run.code == 0, run.output


def test_abort_exits_134(capfd, compile_c):
    exe = compile_c(ABORT, "aborter", flags=("-static", "-O0"))
    code, out, err = guest_run_cli(capfd, exe, [], mem="64M")
    assert code == 134
    assert out.startswith("about to abort\n")
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ballast:") and "SIGABRT" in lines[0]


def test_argument_with_a_newline_stays_one_argument(capfd, workout_glibc):
    args = ["line1\nline2", "cr\rx"]
    ncode, nout = native_run(workout_glibc, args)
    code, out, _ = guest_run_cli(capfd, workout_glibc, args)
    assert code == ncode == 0
    assert out.splitlines()[0] == "argc=3"
    assert out == nout.decode()
