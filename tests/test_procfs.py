"""/proc as programs expect it: the files' formats are Linux's (compared with the host's, which
runs a newer kernel: the lines added since 6.1 are named), and busybox's ps, top, free, df, mount,
uptime and sysctl print in the guest what they print natively in a chroot with /proc mounted.
Values that depend on the machine (memory sizes, times, the host's processes) are not compared."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ballast_testlib import boot
from test_ext2_root import run_root
from vmm.mkdisk import mkdisk

READER = r"""
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static void show(const char *path) {
    char buf[16384];
    FILE *f = fopen(path, "r");
    if (!f) { printf("== %s: cannot open\n", path); return; }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++) if (!buf[i]) buf[i] = '|';
    buf[n] = 0;
    printf("== %s\n%s", path, buf);
}
int main(int argc, char **argv) {
    char link[256], want[32];
    ssize_t n = readlink("/proc/self", link, sizeof link - 1);
    link[n > 0 ? n : 0] = 0;
    snprintf(want, sizeof want, "%d", getpid());
    printf("== self is pid: %d\n", strcmp(link, want) == 0);
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    printf("== fds:");
    while ((e = readdir(d))) if (e->d_name[0] != '.') printf(" %s", e->d_name);
    printf("\n");
    closedir(d);
    for (int i = 1; i < argc; i++) show(argv[i]);
    return 0;
}
"""
# lines newer kernels print that Linux 6.1 does not (the host may run one of them)
NEWER_STATUS = {"Kthread", "untag_mask", "x86_Thread_features", "x86_Thread_features_locked"}
NEWER_MEMINFO = {"SecPageTables", "Balloon", "Unaccepted", "ZswapIncomp"}
# lines that depend on the kernel's configuration (CONFIG_MEMORY_FAILURE, CONFIG_ZSWAP, 1 GiB pages...);
# we print Debian's 6.1 set
CONFIG_MEMINFO = {"HardwareCorrupted", "Zswap", "Zswapped", "DirectMap1G", "DirectMap2M", "ShmemHugePages",
                  "ShmemPmdMapped", "FileHugePages", "FilePmdMapped", "AnonHugePages"}


def sections(out: str) -> dict:
    parts = {}
    for chunk in out.split("== ")[1:]:
        head, _, body = chunk.partition("\n")
        parts[head] = body
    return parts


def keys(text: str) -> list:
    return [line.split(":")[0] for line in text.splitlines() if ":" in line]


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    d = tmp_path_factory.mktemp("procfs")
    (d / "reader.c").write_text(READER)
    subprocess.run(["gcc", "-static", "-O1", "-o", str(d / "reader"), str(d / "reader.c")], check=True)
    return d / "reader"


def test_proc_files_have_linuxs_formats(reader):
    files = ["/proc/self/stat", "/proc/self/status", "/proc/self/maps", "/proc/meminfo", "/proc/self/cmdline",
             "/proc/self/comm", "/proc/loadavg", "/proc/stat", "/proc/uptime", "/proc/sys/kernel/ostype",
             "/proc/self/statm"]
    native = sections(subprocess.run([str(reader), *files], capture_output=True, text=True, check=True).stdout)
    run = boot(reader.read_bytes(), files, name="reader")
    assert run.status == 0
    guest = sections(run.output.decode())
    assert guest["self is pid: 1"] == "" and "self is pid: 1" in native
    assert guest["fds: 0 1 2 3"] == ""
    g_stat, n_stat = guest["/proc/self/stat"].split(), native["/proc/self/stat"].split()
    assert len(g_stat) == len(n_stat) == 52
    assert g_stat[:3] == ["1", "(reader)", "R"] and n_stat[1:3] == ["(reader)", "R"]
    assert [k for k in keys(native["/proc/self/status"]) if k not in NEWER_STATUS] == keys(guest["/proc/self/status"])
    native_keys, guest_keys = keys(native["/proc/meminfo"]), keys(guest["/proc/meminfo"])
    assert set(guest_keys) - set(native_keys) <= CONFIG_MEMINFO
    assert [k for k in native_keys if k not in NEWER_MEMINFO] == [k for k in guest_keys if k in native_keys]
    assert guest["/proc/self/cmdline"].split("|")[1:] == native["/proc/self/cmdline"].split("|")[1:]
    assert guest["/proc/self/comm"] == native["/proc/self/comm"] == "reader\n"
    assert guest["/proc/sys/kernel/ostype"] == native["/proc/sys/kernel/ostype"] == "Linux\n"
    for name in ("/proc/loadavg", "/proc/uptime", "/proc/self/statm"):
        shape = lambda text: re.sub(r"\d+", "N", text)                    # noqa: E731
        assert shape(guest[name]) == shape(native[name]), name
    assert keys(guest["/proc/stat"])[:0] == [] and guest["/proc/stat"].split("\n")[0].split()[0] == "cpu"
    assert [line.split()[0] for line in guest["/proc/stat"].splitlines()][2:] == \
        [w for w in (line.split()[0] for line in native["/proc/stat"].splitlines()) if not w.startswith("cpu")]
    vsyscall = [line for line in native["/proc/self/maps"].splitlines() if line.endswith("[vsyscall]")]
    assert guest["/proc/self/maps"].splitlines()[-1:] == vsyscall
    header = re.compile(r"^[0-9a-f]{8,}-[0-9a-f]{8,} [r-][w-][x-][ps] [0-9a-f]{8} [0-9a-f]{2}:[0-9a-f]{2} \d+ ")
    for line in guest["/proc/self/maps"].splitlines():
        assert header.match(line), line
        assert len(line) <= header.match(line).end() or line[73 - 1] == " " and line[73] != " "


BUSYBOX = Path("/bin/busybox")
needs_chroot = [pytest.mark.skipif(not BUSYBOX.exists(), reason="needs busybox-static"),
                pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None,
                                   reason="the native side runs chrooted with /proc mounted, as root")]


@pytest.fixture(scope="module")
def bbroot(tmp_path_factory):
    base = tmp_path_factory.mktemp("bbproc")
    tree = base / "root"
    (tree / "bin").mkdir(parents=True)
    (tree / "proc").mkdir()
    shutil.copy(BUSYBOX, tree / "bin" / "busybox")
    image = base / "root.img"
    mkdisk(str(tree), str(image))
    return tree, image


def native_run(tree, argv):
    if subprocess.run(["mount", "-t", "proc", "proc", str(tree / "proc")], capture_output=True).returncode:
        pytest.skip("cannot mount proc here")
    try:
        return subprocess.run(["chroot", str(tree), "/bin/busybox", *argv], capture_output=True, text=True)
    finally:
        subprocess.run(["umount", str(tree / "proc")], check=True)


def guest_run(image, argv):
    status, out, _, _ = run_root(image, ["/bin/busybox", *argv], mem=64 << 20)
    return status, out


@pytest.mark.parametrize("argv, same_lines", [
    (["sysctl", "kernel.ostype"], "all"),
    (["ps"], 1),                           # the header; natively the host's processes follow
    (["top", "-b", "-n1"], 0),
    (["free"], 1),
    (["df"], 1),
    (["uptime"], 0),
], ids=lambda v: v if isinstance(v, str) else " ".join(v) if isinstance(v, list) else str(v))
def test_busybox_reads_proc_as_natively(bbroot, argv, same_lines):
    for mark in needs_chroot:
        if mark.args[0]:
            pytest.skip(mark.kwargs["reason"])
    tree, image = bbroot
    native = native_run(tree, argv)
    status, out = guest_run(image, argv)
    assert status >> 8 == native.returncode == 0, out
    shape = lambda text: [re.sub(r"\d+(\.\d+)?[KmM%]?", "N", line).split() for line in text.splitlines()]  # noqa
    g, n = out.splitlines(), native.stdout.splitlines()
    if same_lines == "all":
        assert out == native.stdout
    else:
        assert g[:same_lines] == n[:same_lines]
    if argv[0] == "ps":
        # init, and the kernel threads in brackets (kernel/sched.py: kswapd, the flusher of the root disk)
        assert g[1:] == ["    1 0        /bin/busybox ps", "    2 0        [kswapd0]", "    3 0        [flush-254:0]"]
    elif argv[0] == "top":
        assert shape(out)[:4] == shape(native.stdout)[:4]      # Mem:, CPU:, Load average:, the header
        assert g[4].split()[:3] == ["1", "0", "0"] and g[4].endswith("/bin/busybox top -b -n1")
    elif argv[0] == "free":
        assert [line.split()[0] for line in g] == [line.split()[0] for line in n]
        total, used, free_, shared, cache, avail = map(int, g[1].split()[1:])
        assert total == 63488 or total > 60000 and used + free_ + cache == total
    elif argv[0] == "df":
        fs, blocks, used, avail, pct, mnt = g[1].split()
        assert (fs, mnt) == ("/dev/root", "/") and int(used) + int(avail) <= int(blocks)
    elif argv[0] == "uptime":
        assert shape(out) == shape(native.stdout)[:1] or \
            re.match(r"^ \d\d:\d\d:\d\d up \d+ min,  0 users,  load average: 0\.00, 0\.00, 0\.00$", g[0])


def test_mount_lists_the_root_and_proc(bbroot):
    for mark in needs_chroot:
        if mark.args[0]:
            pytest.skip(mark.kwargs["reason"])
    tree, image = bbroot
    native = native_run(tree, ["mount"])
    status, out = guest_run(image, ["mount"])
    assert status == 0
    assert out.splitlines() == ["/dev/root on / type ext2 (rw,relatime)", "proc on /proc type proc (rw,relatime)"]
    assert "proc on /proc type proc (rw,relatime)" in native.stdout.splitlines()
    status, out = guest_run(image, ["sysctl", "-a"])
    assert "kernel.ostype = Linux" in out.splitlines() and "vm.swappiness = 60" in out.splitlines()


CPUID_PROGRAM = r"""
#include <cpuid.h>
#include <stdio.h>
#include <string.h>
int main(void) {
    unsigned a, b, c, d, regs[12];
    char vendor[13] = {0}, brand[49] = {0};
    __cpuid(0, a, b, c, d);
    memcpy(vendor, &b, 4); memcpy(vendor + 4, &d, 4); memcpy(vendor + 8, &c, 4);
    printf("vendor_id=%s\ncpuid level=%u\n", vendor, a);
    __cpuid(1, a, b, c, d);
    unsigned family = (a >> 8) & 15, model = (a >> 4) & 15;
    if (family == 6 || family == 15) model += ((a >> 16) & 15) << 4;
    if (family == 15) family += (a >> 20) & 255;
    printf("cpu family=%u\nmodel=%u\nstepping=%u\n", family, model, a & 15);
    printf("fpu=%u\nsse2=%u\npni=%u\nhypervisor=%u\n", d & 1, d >> 26 & 1, c & 1, c >> 31 & 1);
    for (unsigned i = 0; i < 3; i++) __cpuid(0x80000002 + i, regs[i * 4], regs[i * 4 + 1], regs[i * 4 + 2], regs[i * 4 + 3]);
    memcpy(brand, regs, 48);
    printf("model name=%s\n", brand);
    __cpuid(0x80000008, a, b, c, d);
    printf("address sizes=%u bits physical, %u bits virtual\n", a & 255, a >> 8 & 255);
    __cpuid(0x80000006, a, b, c, d);
    printf("cache size=%u KB\n", c >> 16);
    return 0;
}
"""


def test_cpuinfo_says_what_the_vcpu_says_by_cpuid(reader, tmp_path):
    (tmp_path / "cpuid.c").write_text(CPUID_PROGRAM)
    subprocess.run(["gcc", "-static", "-O1", "-o", str(tmp_path / "cpuid"), str(tmp_path / "cpuid.c")], check=True)
    run = boot((tmp_path / "cpuid").read_bytes(), name="cpuid")
    said = dict(line.split("=", 1) for line in run.output.decode().splitlines())
    run = boot(reader.read_bytes(), ["/proc/cpuinfo"], name="reader")
    info = dict((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in
                                                       sections(run.output.decode())["/proc/cpuinfo"].splitlines()))
    for name in ("vendor_id", "cpu family", "model", "stepping", "model name", "cpuid level", "address sizes",
                 "cache size"):
        assert info[name] == said[name], name
    flags = info["flags"].split()
    for flag in ("fpu", "sse2", "pni", "hypervisor"):
        assert (flag in flags) == (said[flag] == "1"), flag


FAMILY = r"""
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static int asleep(int pid) {            /* /proc/PID/stat says S */
    char path[64], buf[256] = {0};
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    return strstr(buf, ") S ") != 0;
}
int main(int argc, char **argv) {
    int p[2], kids[2];
    char c;
    pipe(p);
    for (int i = 0; i < 2; i++)
        if ((kids[i] = fork()) == 0) {  /* children wait on the pipe: asleep while ps looks */
            close(p[1]);
            read(p[0], &c, 1);
            _exit(0);
        }
    close(p[0]);
    for (int i = 0; i < 2; i++)
        while (!asleep(kids[i])) ;      /* until the scheduler ran them into their read */
    char *ps[] = {"/bin/busybox", argv[1], argv[2], argv[3], 0};
    execv(ps[0], argc > 3 ? ps : (char *[]){"/bin/busybox", argv[1], 0});
    return 127;
}
"""


@pytest.mark.parametrize("argv", [["ps"], ["top", "-b", "-n1"]], ids=lambda a: a[0])
def test_ps_and_top_list_every_task_as_natively(bbroot, tmp_path, argv):
    """A parent forks two children that sleep on a pipe, then execs ps: every task is listed, the
    children with their command line and state, as ps lists them natively."""
    for mark in needs_chroot:
        if mark.args[0]:
            pytest.skip(mark.kwargs["reason"])
    tree, _ = bbroot
    (tmp_path / "family.c").write_text(FAMILY)
    subprocess.run(["gcc", "-static", "-O1", "-o", str(tree / "bin" / "family"), str(tmp_path / "family.c")],
                   check=True)
    image = tmp_path / "root.img"
    mkdisk(str(tree), str(image))
    native = native_run(tree, ["sh", "-c", "exec /bin/family " + " ".join(argv)])
    status, out = run_root(image, ["/bin/family", *argv], mem=64 << 20)[:2]
    assert status == 0, out
    pid = lambda line: re.sub(r"^ *\d+( +\d+)?", "PID", line)         # noqa: E731
    mine = [pid(line) for line in out.splitlines() if "/bin/family" in line]
    theirs = [pid(line) for line in native.stdout.splitlines() if "/bin/family" in line]
    if argv[0] == "top":                 # VSZ and %VSZ are the machine's: compare the other columns
        cut = lambda line: line.split()[1:3] + line.split()[6:]             # noqa: E731
        mine, theirs = [cut(m) for m in mine], [cut(t) for t in theirs]
    assert len(mine) == 2 and sorted(mine) == sorted(theirs)


PROC_PATHS = r"""
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
static void say(const char *what, int r) { printf("%s %d %s\n", what, r < 0 ? -1 : 0, r < 0 ? strerror(errno) : ""); }
int main(void) {
    int self = open("/proc/self", O_RDONLY | O_DIRECTORY), sys = open("/proc/sys", O_RDONLY | O_DIRECTORY);
    say("openat(self, comm)", openat(self, "comm", O_RDONLY));
    say("openat(sys, kernel/ostype)", openat(sys, "kernel/ostype", O_RDONLY));
    say("fchdir(sys)", fchdir(sys));
    say("open(vm/swappiness)", open("vm/swappiness", O_RDONLY));
    say("chdir(/proc)", chdir("/proc"));
    say("mkdir(x)", mkdir("x", 0755));
    say("mkdir(/proc/self)", mkdir("/proc/self", 0755));
    say("unlink(stat)", unlink("stat"));
    say("rmdir(/proc/sys)", rmdir("/proc/sys"));
    say("mkdirat(self, y)", mkdirat(self, "y", 0755));
    struct stat st;
    say("stat(self)", stat("self", &st));
    printf("self is a directory %d, a link %d\n", S_ISDIR(st.st_mode), lstat("self", &st) == 0 && S_ISLNK(st.st_mode));
    char cwd[64];
    printf("cwd %s\n", getcwd(cwd, sizeof cwd));
    return 0;
}
"""


def test_paths_in_proc_behave_as_natively(bbroot, tmp_path):
    """Relative to an open /proc directory or a cwd in /proc, and nothing created or removed there
    (the ext2 directory under /proc is never reached)."""
    for mark in needs_chroot:
        if mark.args[0]:
            pytest.skip(mark.kwargs["reason"])
    tree, _ = bbroot
    (tmp_path / "paths.c").write_text(PROC_PATHS)
    subprocess.run(["gcc", "-static", "-O1", "-o", str(tree / "bin" / "paths"), str(tmp_path / "paths.c")],
                   check=True)
    image = tmp_path / "root.img"
    mkdisk(str(tree), str(image))
    native = subprocess.run(["sh", "-c", f"mount -t proc proc {tree}/proc && chroot {tree} /bin/paths; "
                                         f"umount {tree}/proc"], capture_output=True, text=True)
    status, out = run_root(image, ["/bin/paths"], mem=64 << 20)[:2]
    assert status == 0
    assert out == native.stdout
    listing = subprocess.run(["debugfs", "-R", "ls /proc", str(image)], capture_output=True, text=True).stdout
    assert " x " not in listing and " y " not in listing


def test_fd_links_name_pipes_as_linux(tmp_path):
    source = r"""
#include <stdio.h>
#include <unistd.h>
int main(void) {
    int p[2];
    char a[64] = {0}, b[64] = {0}, c[64] = {0};
    pipe(p);
    readlink("/proc/self/fd/3", a, 63);
    readlink("/proc/self/fd/4", b, 63);
    readlink("/proc/self/fd/1", c, 63);
    printf("%s\n%s\n%s\n", a, b, c);
    return 0;
}
"""
    (tmp_path / "fds.c").write_text(source)
    subprocess.run(["gcc", "-static", "-O1", "-o", str(tmp_path / "fds"), str(tmp_path / "fds.c")], check=True)
    native = subprocess.run([str(tmp_path / "fds")], capture_output=True, text=True).stdout.splitlines()
    guest = boot((tmp_path / "fds").read_bytes(), name="fds").output.decode().splitlines()
    for lines in (native, guest):
        assert re.fullmatch(r"pipe:\[\d+\]", lines[0]) and lines[0] == lines[1]
    assert guest[2] == "/dev/console"
