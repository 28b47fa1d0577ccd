"""Issue 12's missing calls and blocking, compared with native Linux: tests/programs/shell_calls.c (umask,
the chmod/chown families, fast and slow symlinks and readlink, mknod with st_rdev, utimensat, sendfile,
poll/select, signals that interrupt nanosleep, read and wait4 or restart them, sigsuspend, SIGPIPE,
process groups and sessions) run natively and in the guest; busybox shell lines in the guest and in
a native chroot of the same tree (taskset to one CPU, as the guest has). One image for the module;
each run gets a copy."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from test_ext2_root import e2fsck_clean, run_root
from vmm.mkdisk import mkdisk

PROGRAMS = Path(__file__).resolve().parent / "programs"
BUSYBOX = Path("/bin/busybox")
pytestmark = [
    pytest.mark.skipif(not BUSYBOX.exists(), reason="needs Debian's busybox-static (.ci/run installs it)"),
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("taskset") is None,
                       reason="the native side runs chrooted (mknod, chown), as root"),
]


@pytest.fixture(scope="module")
def root(tmp_path_factory, compile_c):
    base = tmp_path_factory.mktemp("shellcalls")
    tree = base / "root"
    for d in ("bin", "w", "etc", "dev"):
        (tree / d).mkdir(parents=True)
    shutil.copy(BUSYBOX, tree / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (tree / "bin" / applet).symlink_to("busybox")
    os.mknod(tree / "dev" / "null", 0o20666, os.makedev(1, 3))
    (tree / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (tree / "etc" / "group").write_text("root:x:0:\n")
    calls = compile_c((PROGRAMS / "shell_calls.c").read_text(), "shell_calls", flags=("-static", "-O1"))
    shutil.copy(calls, tree / "bin" / "shell_calls")
    image = base / "root.img"
    mkdisk(str(tree), str(image))
    return base, tree, image


def guest(root, argv, raw=False):
    """(wait status, console text without printk lines) of argv as init on a copy of the image."""
    base, _, image = root
    copy = base / "run.img"
    shutil.copy(image, copy)
    status, out, _, _ = run_root(copy, argv, mem=64 << 20)
    return status, out if raw else "".join(line for line in out.splitlines(True) if not line.startswith("["))


def native(root, argv, chroot=True):
    base, tree, _ = root
    work = base / "native"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(tree, work, symlinks=True)
    cmd = ["taskset", "-c", "0"] + (["chroot", str(work)] if chroot else []) + argv
    return subprocess.run(cmd, capture_output=True, timeout=60, cwd=work)


def test_calls_match_native(root):
    base, _, _ = root
    status, out = guest(root, ["/bin/shell_calls", "/w"])
    ref = native(root, ["/bin/shell_calls", "/w"])
    assert status == 0 and ref.returncode == 0, out
    assert out == ref.stdout.decode()
    e2fsck_clean(base / "run.img")                      # nodes, links, the unlinked open file: all sound


SHELL_LINES = [
    "echo hi | cat",
    "/bin/true; echo $?",
    "yes | head -1",                                         # yes dies by SIGPIPE, silently
    "yes | head -1; echo $?; sh -c 'yes; echo status $? >&2' | head -c 2; echo",
    "touch /w/t; ls -l /w/t | cut -c1-10",
    "touch -d '2001-02-03 04:05:06' /w/d; stat -c %Y /w/d",
    "mkfifo /w/ff; ls -l /w/ff | cut -c1-10; test -p /w/ff && echo fifo",
    "mkfifo /w/p; (cat /w/p > /w/out &); echo via-fifo > /w/p; sleep 1; cat /w/out",
    "ln -s /w/target /w/ln; readlink /w/ln; ls -l /w/ln | cut -c1-10; ln -s $(seq -s/ 1 40) /w/long; readlink /w/long",
    "touch /w/c; chmod 4751 /w/c; ls -l /w/c | cut -c1-10; chmod u-s,o+w /w/c; stat -c %a /w/c",
    "mknod /w/n c 1 3; stat -c '%t %T %F' /w/n; echo x > /w/n; cat /w/n | wc -c",
    "umask; umask 077; umask; mkdir /w/m; stat -c %a /w/m",
    "id; nproc",
    "timeout 5 sleep 1; echo $?",
    "timeout 1 sleep 5; echo $?",
    "sleep 1 & wait; echo done $?",
    "(sleep 1; echo a) & (echo b); wait",
    "read x < /etc/group; echo $x",
    "trap 'echo caught' USR1; kill -USR1 $$; echo after",
    "sh -c 'kill -TERM $$'; echo $?",
    "dmesg > /dev/null; echo $?",
]


@pytest.mark.parametrize("line", SHELL_LINES)
def test_busybox_shell_matches_native(root, line):
    argv = ["/bin/sh", "-c", "{ " + line + "; } 2>&1"]        # stderr in line with stdout on both sides
    status, out = guest(root, argv)
    ref = native(root, argv)
    assert (status >> 8, out) == (ref.returncode, ref.stdout.decode())


def test_dmesg_reads_the_kernel_log(root):
    """dmesg (syslog READ_ALL after SIZE_BUFFER) prints the guest's boot messages in Linux's layout."""
    status, out = guest(root, ["/bin/dmesg"], raw=True)
    assert status == 0
    lines = out.splitlines()
    assert any(line.startswith("[    0.000000] Command line: ") for line in lines), lines
    assert any(line.endswith("] VFS: Mounted root (ext2 filesystem) on device /dev/vda.") for line in lines)
    assert all(line.startswith("[") and line[13:15] == "] " for line in lines), lines
    status, out = guest(root, ["/bin/dmesg", "-r"], raw=True)
    assert status == 0 and out.splitlines()[0].startswith("<6>[    0.000000] Command line: ")
