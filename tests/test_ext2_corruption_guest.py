"""A corrupted root image never crashes or hangs the VMM: a bad superblock is a mount error
(one line), damage found later is EIO to the program."""
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ballast_testlib import FIRMWARE, REPO
from vmm.machine import DiskConfig, Machine, MachineConfig
from vmm.mkdisk import mkdisk

BUSYBOX = Path("/bin/busybox")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corrupt")
    root = tmp / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy(FIRMWARE / "hello", root / "bin" / "hello")
    if BUSYBOX.exists():
        shutil.copy(BUSYBOX, root / "bin" / "busybox")
    for d in range(8):
        (root / f"dir{d}").mkdir()
        for f in range(10):
            (root / f"dir{d}" / f"file{f}").write_bytes(bytes([d * 10 + f]) * (f * 700 + 1))
    image = tmp / "root.img"
    mkdisk(str(root), str(image), 16 << 20)
    return image.read_bytes()


def test_bad_superblock_is_a_one_line_mount_error(tmp_path, pristine):
    image = tmp_path / "bad.img"
    data = bytearray(pristine)
    data[1024 + 24:1024 + 28] = (9).to_bytes(4, "little")   # s_log_block_size: 512 KiB blocks
    image.write_bytes(bytes(data))
    proc = subprocess.run([sys.executable, "-m", "vmm.cli", "run", "--root", str(image), "/bin/hello"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ballast: guest kernel panic: VFS: Unable to mount root fs")


@pytest.mark.parametrize("seed", range(12))
def test_random_metadata_damage_never_crashes(tmp_path, pristine, seed):
    rng = random.Random(seed)
    data = bytearray(pristine)
    for _ in range(40):                                   # bytes in the first MiB: bitmaps, inodes, dirs
        data[rng.randrange(2048, 1 << 20)] = rng.randrange(256)
    image = tmp_path / "fuzzed.img"
    image.write_bytes(bytes(data))
    argv = ["/bin/busybox", "ls", "-lR", "/"] if BUSYBOX.exists() else ["/bin/hello"]
    m = Machine(MachineConfig(mem=64 << 20, disks=[DiskConfig(str(image))]))
    m.load(None, argv[0], argv[1:], root_device="/dev/vda")
    status = m.boot()                                     # any status; never an exception or a hang
    kernel = m.kernel
    m.close()
    assert isinstance(status, int)
    assert kernel.panic_message is None or "Unable to mount" in kernel.panic_message \
        or "init" in kernel.panic_message


# --- hypothesis: named fields of a real mke2fs -d image, edited, then mounted, listed and read -----------
#
# The image (1 KiB blocks, so files reach double and triple indirect blocks) is made by the real
# `mke2fs -d`; hypothesis picks 1-4 edits: a superblock or group-descriptor field, an inode field
# (i_size, i_block[n], i_links_count, i_mode...), a directory entry's inode / rec_len / name_len /
# file_type, an entry of an indirect, double or triple indirect block (pointing back at itself or its
# parent: a loop), a bitmap byte, or any byte of the metadata. Each image is
#   - mounted on the host (guestos.fs.ext2 in process) and walked: every directory listed, every file
#     read at its start and its end, every symlink read: only Ext2Error (an errno) may come out;
#   - checked with the real `e2fsck -fn`: an image it finds clean must mount and list without an error;
#   - booted as the root disk in some examples, with `ls -lR /` and `find / -type f -exec md5sum` as
#     init: the run ends (a bounded number of guest seconds) in an exit status or a one-line mount
#     panic, never a host exception.
# BALLAST_FUZZ_EXAMPLES=N runs N host examples and N/4 boots (tests/README.md).
import hashlib  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import struct  # noqa: E402

from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from guestos.fs import ext2_layout as L  # noqa: E402
from guestos.fs.ext2 import Ext2Error, Ext2Fs, FileBlockIO  # noqa: E402
from vmm.errors import MachineStopped  # noqa: E402

FUZZ_EXAMPLES = int(os.environ.get("BALLAST_FUZZ_EXAMPLES", "0")) or 100
FUZZ_BOOTS = max(FUZZ_EXAMPLES // 4, 1) if os.environ.get("BALLAST_FUZZ_EXAMPLES") else 10
# A clean run takes 6 ms (ls -lR) and 11 ms (find | md5sum) of guest time. A damaged directory can send a
# program into a legitimate deep recursion, as on Linux (a name of NUL bytes reads as "" and find descends
# into the same directory; an entry naming the root makes a loop ls -R follows until PATH_MAX). Our path
# walk has no dcache and costs little guest time, so such a run costs seconds of host time per guest
# millisecond: the guest-time limit bounds it; the host-time alarm catches a VMM that hangs.
GUEST_LIMIT_NS = 25 * 10 ** 6
WALL_LIMIT_S = 120
BS = 1024
SPARSE_AT = 70 << 20                   # past 12 + 256 + 256 * 256 KiB: a triple indirect block


class Hang(Exception):
    pass


class wall_limit:
    """SIGALRM after `seconds` of host time: a loop in the VMM or the file system fails the test."""

    def __init__(self, seconds):
        self.seconds = seconds

    def __enter__(self):
        def alarm(signum, frame):
            raise Hang(f"more than {self.seconds} s of host time")
        self.old = signal.signal(signal.SIGALRM, alarm)
        signal.alarm(self.seconds)

    def __exit__(self, *exc):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.old)


@pytest.fixture(scope="module")
def fuzz_image(tmp_path_factory):
    if not shutil.which("mke2fs") or not shutil.which("e2fsck"):
        pytest.skip("needs e2fsprogs (mke2fs, e2fsck)")
    return make_fuzz_image(tmp_path_factory.mktemp("fuzzimg"))


def make_fuzz_image(tmp):
    root = tmp / "root"
    (root / "bin").mkdir(parents=True)
    if BUSYBOX.exists():
        shutil.copy(BUSYBOX, root / "bin" / "busybox")
    (root / "d" / "sub" / "deeper").mkdir(parents=True)
    (root / "d" / "small").write_bytes(b"s" * 100)
    (root / "d" / "f12k").write_bytes(hashlib.shake_256(b"12k").digest(12 * 1024))
    (root / "d" / "f300k").write_bytes(hashlib.shake_256(b"300k").digest(300 * 1024))
    (root / "d" / "sub" / "deeper" / "leaf").write_bytes(b"leaf\n")
    os.link(root / "d" / "small", root / "d" / "hardlink")
    os.symlink("d/f12k", root / "fastlink")
    os.symlink("d/sub" + "/../sub" * 10 + "/deeper/leaf", root / "slowlink")    # too long for i_block
    (root / "many").mkdir()
    for i in range(70):                                    # a directory of several blocks
        (root / "many" / f"entry-with-a-longish-name-{i:03}").write_bytes(bytes([i]) * (i % 5))
    with open(root / "sparse", "wb") as f:                 # one block behind a triple indirect block
        f.seek(SPARSE_AT)
        f.write(b"tail")
    image = tmp / "base.img"
    with open(image, "wb") as f:
        f.truncate(8 << 20)
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext2", "-b", str(BS), "-I", "128", "-E", "root_owner=0:0",
                    "-d", str(root), str(image)], check=True, capture_output=True)
    data = bytes(image.read_bytes())
    fs = Ext2Fs.mount(FileBlockIO(bytearray(data)), read_only=True)
    inodes = {p: fs.namei(p, follow=False) for p in ("/", "d", "d/small", "d/f12k", "d/f300k", "d/sub",
                                                      "d/sub/deeper", "fastlink", "slowlink", "many",
                                                      "sparse", "lost+found")}
    dir_blocks = sorted({fs.bmap(fs.iget(inodes[p]), n) for p in ("/", "d", "d/sub", "d/sub/deeper", "many")
                         for n in range(fs.iget(inodes[p]).size // BS)} - {0})
    f300k, sparse = fs.iget(inodes["d/f300k"]), fs.iget(inodes["sparse"])
    ind = f300k.i_block[L.EXT2_IND_BLOCK]
    dind = f300k.i_block[L.EXT2_DIND_BLOCK]
    tind = sparse.i_block[L.EXT2_TIND_BLOCK]
    tind_2 = next(b for b in struct.unpack_from("<256I", data, tind * BS) if b)
    tind_3 = next(b for b in struct.unpack_from("<256I", data, tind_2 * BS) if b)
    map_blocks = {"ind": ind, "dind": dind, "dind.0": struct.unpack_from("<I", data, dind * BS)[0],
                  "tind": tind, "tind.0": tind_2, "tind.0.0": tind_3}
    layout = dict(groups=fs.groups_count, inode_table=fs.gd_get(0, "bg_inode_table"),
                  inode_size=fs.sb_get("s_inode_size"), bitmaps=[fs.gd_get(0, "bg_block_bitmap"),
                                                                 fs.gd_get(0, "bg_inode_bitmap")],
                  inodes=inodes, dir_blocks=dir_blocks, map_blocks=map_blocks,
                  blocks=fs.blocks_count)
    return FuzzBase(data, layout)


class FuzzBase(tuple):
    """(image bytes, layout): printed short, so that hypothesis's failure reports stay readable."""

    def __new__(cls, data, layout):
        return super().__new__(cls, (data, layout))

    def __repr__(self):
        return f"<mke2fs -d image of {len(self[0])} bytes>"


SUPER_FIELDS = [n for n in L.SUPER.names if n not in ("s_reserved", "s_uuid", "s_volume_name", "s_last_mounted",
                                                       "s_journal_uuid", "s_hash_seed", "s_jnl_blocks",
                                                       "s_ext4_fields")]
INODE_FIELDS = ["i_mode", "i_size", "i_links_count", "i_blocks", "i_flags", "i_dtime", "i_file_acl", "i_dir_acl"]
DIRENT_FIELDS = {"inode": (0, "<I"), "rec_len": (4, "<H"), "name_len": (6, "B"), "file_type": (7, "B")}


def interesting(size_fmt: str, near=()) -> st.SearchStrategy:
    bits = struct.calcsize("<" + size_fmt.lstrip("<0123456789")) * 8
    top = (1 << bits) - 1
    return st.one_of(st.sampled_from([0, 1, 2, 3, 8, 11, 12, 100, 1023, 1024, 4096, top, top >> 1, top - 1,
                                      *near]).map(lambda v: v & top),
                     st.integers(0, top))


@st.composite
def edits(draw, layout):
    """(offset, struct format, value) edits of one image."""
    out = []
    blocks = layout["blocks"]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["super", "group", "inode", "inode", "i_block", "i_block", "dirent",
                                     "dirent", "map", "map", "bitmap", "byte"]))
        if kind == "super":
            name = draw(st.sampled_from(SUPER_FIELDS))
            fmt = L.SUPER.fmt[name].format
            out.append((1024 + L.SUPER.offset[name], fmt, draw(interesting(fmt, [blocks, blocks + 1]))))
        elif kind == "group":
            name = draw(st.sampled_from(L.GROUP_DESC.names))
            fmt = L.GROUP_DESC.fmt[name].format
            g = draw(st.integers(0, layout["groups"] - 1))
            out.append((2 * BS + 32 * g + L.GROUP_DESC.offset[name], fmt,
                        draw(interesting(fmt, [blocks, layout["inode_table"], 1, 2]))))
        elif kind in ("inode", "i_block"):
            ino = draw(st.one_of(st.sampled_from(sorted(layout["inodes"].values())), st.integers(1, 32)))
            base = layout["inode_table"] * BS + (ino - 1) * layout["inode_size"]
            if kind == "inode":
                name = draw(st.sampled_from(INODE_FIELDS))
                fmt = L.INODE.fmt[name].format
                near = [0o040755, 0o100644, 0o120777, 0o020644, 0o010644, 0o140644, 1 << 31, 70 << 20,
                        0x1000, 0x80000] if name in ("i_mode", "i_size", "i_flags") else [blocks]
                out.append((base + L.INODE.offset[name], fmt, draw(interesting(fmt, near))))
            else:
                slot = draw(st.integers(0, L.EXT2_N_BLOCKS - 1))
                out.append((base + L.INODE.offset["i_block"] + 4 * slot, "<I",
                            draw(interesting("<I", [blocks, blocks - 1, layout["inode_table"],
                                                    *layout["map_blocks"].values(), *layout["dir_blocks"]]))))
        elif kind == "dirent":
            block = draw(st.sampled_from(layout["dir_blocks"]))
            field = draw(st.sampled_from(sorted(DIRENT_FIELDS)))
            delta, fmt = DIRENT_FIELDS[field]
            # entries start at 0 ('.'), 12 ('..'), then where rec_lens say: any 4-aligned offset will do
            off = draw(st.sampled_from([0, 12, 24])) if draw(st.booleans()) else 4 * draw(st.integers(0, BS // 4 - 2))
            out.append((block * BS + off + delta, fmt,
                        draw(interesting(fmt, [BS, BS - 12, BS + 4, 9, 255, 2, 7, layout["inodes"]["d"]]))))
        elif kind == "map":
            name, block = draw(st.sampled_from(sorted(layout["map_blocks"].items())))
            slot = draw(st.sampled_from([0, 1, 255])) if draw(st.booleans()) else draw(st.integers(0, 255))
            out.append((block * BS + 4 * slot, "<I",
                        draw(st.one_of(st.sampled_from(sorted(layout["map_blocks"].values())),
                                       interesting("<I", [blocks, layout["inode_table"], 1])))))
        elif kind == "bitmap":
            block = draw(st.sampled_from(layout["bitmaps"]))
            out.append((block * BS + draw(st.integers(0, BS - 1)), "B", draw(st.integers(0, 255))))
        else:
            out.append((draw(st.integers(1024, (layout["inode_table"] + 8) * BS - 1)), "B",
                        draw(st.integers(0, 255))))
    return out


def apply_edits(data: bytes, changes) -> bytearray:
    img = bytearray(data)
    for off, fmt, value in changes:
        struct.pack_into("<" + fmt.lstrip("<0123456789"), img, off, value)     # an array field: its first item
    return img


def walk_everything(img: bytearray) -> str:
    """Mount read-only on the host and touch every name, file and link; returns what happened."""
    try:
        fs = Ext2Fs.mount(FileBlockIO(img), read_only=True)
    except Ext2Error:
        return "mount refused"
    errors = 0
    stack, seen = [L.EXT2_ROOT_INO], set()
    while stack and len(seen) < 200:
        d = stack.pop()
        if d in seen:
            continue
        seen.add(d)
        try:
            entries = fs.readdir(d)
        except Ext2Error:
            errors += 1
            continue
        for name, ino, _ in entries:
            try:
                fs.lookup(d, name)
                inode = fs.iget(ino)
                if inode.is_dir and name not in (".", ".."):
                    stack.append(ino)
                elif inode.is_reg:
                    fs.read(inode, 0, 1 << 20)
                    fs.read(inode, max(inode.size - 4096, 0), 8192)
                elif inode.is_lnk:
                    fs.readlink(inode)
            except Ext2Error:
                errors += 1
    for path in ("fastlink", "slowlink", "d/sub/deeper/leaf", "d/sub/../f300k"):
        try:
            fs.namei(path)
        except Ext2Error:
            errors += 1
    fs.statfs()
    return "walked with errors" if errors else "walked clean"


def e2fsck_clean(img: bytearray, tmp_dir) -> bool:
    path = tmp_dir / "fsck.img"
    path.write_bytes(bytes(img))
    return subprocess.run(["e2fsck", "-fn", str(path)], capture_output=True).returncode == 0


FUZZ_SETTINGS = dict(deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                            HealthCheck.data_too_large])


@given(data=st.data())
@settings(max_examples=FUZZ_EXAMPLES, **FUZZ_SETTINGS)
def test_edited_fields_are_an_errno_on_the_host(fuzz_image, tmp_path_factory, data):
    base, layout = fuzz_image
    img = apply_edits(base, data.draw(edits(layout)))
    with wall_limit(WALL_LIMIT_S):
        outcome = walk_everything(bytearray(img))
    clean = e2fsck_clean(img, tmp_path_factory.mktemp("fsck"))
    event(f"{outcome}; e2fsck {'clean' if clean else 'finds damage'}")
    if clean:
        # what e2fsck accepts, the kernel must accept too
        assert outcome == "walked clean"


def boot_root(image, argv):
    """Boot with `image` as the root disk and argv as init; (status, console, panic), bounded in guest time."""
    m = Machine(MachineConfig(mem=64 << 20, disks=[DiskConfig(str(image))]))

    def too_long():
        m.stop_reason = "guest time limit"
        raise MachineStopped(m.stop_reason)
    try:
        m.load(None, argv[0], argv[1:], root_device="/dev/vda")
        m.clock.schedule(GUEST_LIMIT_NS, too_long)
        with wall_limit(WALL_LIMIT_S):
            status = m.boot()
        return status, m.console_output.decode("utf-8", "surrogateescape"), m.kernel.panic_message
    finally:
        m.close()


@pytest.mark.skipif(not BUSYBOX.exists(), reason="needs Debian's busybox-static (.ci/run installs it)")
@given(data=st.data())
@settings(max_examples=FUZZ_BOOTS, **FUZZ_SETTINGS)
def test_edited_fields_booted_as_root(fuzz_image, tmp_path_factory, data):
    base, layout = fuzz_image
    img = apply_edits(base, data.draw(edits(layout)))
    tmp = tmp_path_factory.mktemp("boot")
    clean = e2fsck_clean(img, tmp)
    image = tmp / "root.img"
    outcomes = []
    for argv in (["/bin/busybox", "ls", "-lR", "/"],
                 ["/bin/busybox", "find", "/", "-type", "f", "-size", "-1000k", "-exec", "/bin/busybox", "md5sum",
                  "{}", "+"]):
        image.write_bytes(bytes(img))
        status, console, panic = boot_root(image, argv)
        if status is None:
            outcomes.append("guest time limit")
        elif panic is not None:
            assert "\n" not in panic
            assert panic.startswith("VFS: Unable to mount root fs") or "init" in panic, panic
            outcomes.append("panic")
        else:
            outcomes.append(f"exit {status >> 8}")
        if clean:
            assert panic is None and status == 0, console[-2000:]
    event(f"{' / '.join(outcomes)}; e2fsck {'clean' if clean else 'finds damage'}")


@pytest.mark.skipif(not BUSYBOX.exists(), reason="needs Debian's busybox-static (.ci/run installs it)")
def test_a_name_that_is_not_utf8_is_listed_as_its_bytes(tmp_path):
    """Found by the fuzz above: a directory entry whose name is not UTF-8 crashed getdents64. Linux
    hands the bytes over as they are on the disk."""
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    name = b"caf\xe9-\xff\x80"
    with open(os.path.join(os.fsencode(root), name), "wb") as f:
        f.write(b"x")
    image = tmp_path / "root.img"
    mkdisk(str(root), str(image), 8 << 20)
    status, console, panic = boot_root(image, ["/bin/busybox", "ls", "-1", "/"])
    assert panic is None and status == 0, console
    # the same busybox natively, with the guest's environment (no LANG): it lists the name (and can
    # lstat it by its bytes) and prints its non-ASCII bytes as '?'
    native = subprocess.run(["env", "-i", "HOME=/", "TERM=linux", str(BUSYBOX), "ls", "-1", str(root)],
                            capture_output=True)
    assert native.returncode == 0 and b"caf?-??\n" in native.stdout
    expected = native.stdout.replace(b"caf?-??\n", b"caf?-??\nlost+found\n")      # mkdisk adds lost+found
    assert console.encode("utf-8", "surrogateescape") == expected


@pytest.mark.skipif(not BUSYBOX.exists(), reason="needs Debian's busybox-static (.ci/run installs it)")
def test_symlinks_on_the_root_read_back(fuzz_image, tmp_path):
    """Found by the fuzz above: readlink(2) of a symlink on the ext2 root was ENOENT, so `ls -l` could not
    show fast (in i_block) or slow (in a block) links. Their targets are what the host wrote."""
    image = tmp_path / "root.img"
    image.write_bytes(fuzz_image[0])
    status, console, panic = boot_root(image, ["/bin/busybox", "ls", "-l", "/fastlink", "/slowlink"])
    assert panic is None and status == 0, console
    assert "fastlink -> d/f12k" in console
    assert "slowlink -> d/sub" + "/../sub" * 10 + "/deeper/leaf" in console
    status, console, _ = boot_root(image, ["/bin/busybox", "readlink", "/d/small"])
    assert status >> 8 == 1 and console == ""                    # not a symlink: EINVAL, as on Linux


@pytest.mark.skipif(not BUSYBOX.exists(), reason="needs Debian's busybox-static (.ci/run installs it)")
def test_a_damaged_image_that_is_not_root_is_only_bytes(fuzz_image, tmp_path):
    """A disk that is not the root is never parsed (the kernel has no mount(2)): a program reads it raw,
    every byte as the host holds it, whatever its superblock says."""
    data = bytearray(fuzz_image[0])
    struct.pack_into("<I", data, 1024 + 24, 9)                  # s_log_block_size: 512 KiB blocks
    struct.pack_into("<H", data, 1024 + 56, 0)                  # no magic
    image = tmp_path / "second.img"
    image.write_bytes(bytes(data))
    m = Machine(MachineConfig(mem=64 << 20, disks=[DiskConfig(str(image))]))
    try:
        m.load(BUSYBOX.read_bytes(), "/bin/busybox", ["md5sum", "/dev/vda"])
        with wall_limit(WALL_LIMIT_S):
            status = m.boot()
        console = m.console_output.decode()
    finally:
        m.close()
    assert status == 0, console
    assert f"{hashlib.md5(bytes(data)).hexdigest()}  /dev/vda" in console
