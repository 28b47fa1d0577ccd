"""ext2 (guestos/fs/ext2.py) against images made by mke2fs and checked by e2fsck.

Every scenario ends with the device synced, the image written out and
`e2fsck -fn` clean; contents are checked by re-mounting and with debugfs."""
import contextlib
import errno as host_errno
import hashlib
import os
import random
import shutil
import signal
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guestos import layouts as D
from guestos.fs import ext2_alloc, ext2_layout as L
from guestos.fs.ext2 import EUCLEAN, Ext2Error, Ext2Fs, FileBlockIO
from guestos.kernel.errno import (EBUSY, EEXIST, EFBIG, EINVAL, EISDIR, ELOOP, ENAMETOOLONG, ENOENT, ENOSPC, ENOTDIR,
                                  ENOTEMPTY, EPERM, EROFS)

pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("mke2fs", "e2fsck", "debugfs")),
                                reason="e2fsprogs not installed")

KiB, MiB = 1 << 10, 1 << 20
FILE_SIZES = {"empty": 0, "one": 1, "f4095": 4095, "f4096": 4096, "f4097": 4097, "f70k": 70 * KiB,
              "f5m": 5 * MiB}


def data(tag, n: int) -> bytes:
    return hashlib.shake_256(str(tag).encode()).digest(n) if n else b""


def mkfs(tmp_path, src, size: str, block_size: int = 1024, inode_size: int = 256, opts=(), name="fs.img"):
    img = tmp_path / name
    cmd = ["mke2fs", "-q", "-F", "-t", "ext2", "-b", str(block_size), "-I", str(inode_size), *opts]
    if src is not None:
        cmd += ["-d", str(src)]
    subprocess.run(cmd + [str(img), size], check=True, capture_output=True)
    return img


def fsck(img_bytes, tmp_path, name="check.img"):
    path = tmp_path / name
    path.write_bytes(img_bytes)
    r = subprocess.run(["e2fsck", "-fn", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return path


def debugfs_cat(path, file_path: str) -> bytes:
    r = subprocess.run(["debugfs", "-R", f"cat {file_path}", str(path)], capture_output=True)
    assert r.returncode == 0
    return r.stdout


def mount(img, **kw):
    return Ext2Fs.mount(FileBlockIO(img), **kw)


def errno_of(fn, *args, **kw) -> int:
    with pytest.raises(Ext2Error) as ei:
        fn(*args, **kw)
    return ei.value.errno


def walk(fs, ino=2, prefix=""):
    """{path: ino} of everything below a directory."""
    out = {}
    for name, child, ftype in fs.readdir(ino):
        if name in (".", ".."):
            continue
        out[prefix + name] = child
        if ftype == L.EXT2_FT_DIR:
            out.update(walk(fs, child, prefix + name + "/"))
    return out


@pytest.fixture(scope="module")
def src_tree(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    for name, size in FILE_SIZES.items():
        (src / name).write_bytes(data(name, size))
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "sub" / "a.txt").write_bytes(b"hello ext2\n")
    (src / "sub" / "deeper" / "b.bin").write_bytes(data("b", 12345))
    (src / "emptydir").mkdir()
    os.symlink("sub/a.txt", src / "link")
    os.symlink("x" * 100 + "/target", src / "longlink")       # a slow symlink (> 59 bytes)
    return src


@pytest.fixture(scope="module")
def images(src_tree, tmp_path_factory):
    cache = {}

    def get(block_size=1024, inode_size=256, size="16M"):
        key = (block_size, inode_size, size)
        if key not in cache:
            d = tmp_path_factory.mktemp("img")
            cache[key] = mkfs(d, src_tree, size, block_size, inode_size).read_bytes()
        return bytearray(cache[key])
    return get


TRIALS = int(os.environ.get("EXT2_CORRUPTION_TRIALS", "60"))
GEOMETRIES = [(1024, 128), (1024, 256), (2048, 256), (4096, 128), (4096, 256)]


# --- layouts -------------------------------------------------------------------

@pytest.mark.parametrize("con,view", [(D.ext2_super_block, L.SUPER), (D.ext2_group_desc, L.GROUP_DESC),
                                      (D.ext2_inode, L.INODE), (D.ext2_inode_large_extra, L.INODE_EXTRA),
                                      (D.ext2_xattr_header, L.XATTR_HEADER)])
def test_struct_views_match_construct(con, view):
    rng = random.Random(1)
    assert con.sizeof() == view.size
    for _ in range(20):
        raw = bytes(rng.randrange(256) for _ in range(view.size))
        parsed = con.parse(raw)
        fields = view.unpack(raw, 0)
        assert fields == {k: (list(v) if isinstance(v, list) else v) for k, v in parsed.items() if k != "_io"}
        buf = bytearray(view.size)
        view.pack_into(buf, 0, fields)
        assert bytes(buf) == con.build(parsed) == raw


def test_dirent_views_match_construct():
    for con, view in ((D.ext2_dir_entry_2, L.DIRENT2_HDR), (D.ext2_dir_entry, L.DIRENT_HDR)):
        raw = con.build(dict(inode=12, rec_len=20, name_len=5, file_type=1, name=b"hello"))
        assert list(view.unpack(raw, 0).values()) == list(view.struct.unpack_from(raw, 0))
        assert view.unpack(raw, 0)["name_len"] == 5 and con.parse(raw).name == b"hello"


@given(st.binary(min_size=1, max_size=64), st.integers(0, 7), st.integers(0, 600))
@settings(max_examples=200, database=None, deadline=None)
def test_find_next_zero_bit(bitmap, short, start):
    size = max(1, len(bitmap) * 8 - short)
    naive = next((i for i in range(start, size) if not bitmap[i >> 3] >> (i & 7) & 1), size)
    assert ext2_alloc.find_next_zero_bit(bitmap, size, start) == naive
    assert ext2_alloc.count_free_bits(bitmap, size) == sum(not bitmap[i >> 3] >> (i & 7) & 1 for i in range(size))


# --- reading what mke2fs wrote ---------------------------------------------------------

@pytest.mark.parametrize("block_size,inode_size", GEOMETRIES)
def test_read_back_matches_source(images, src_tree, block_size, inode_size):
    fs = mount(images(block_size, inode_size), read_only=True)
    assert fs.block_size == block_size and fs.inode_size == inode_size
    tree = walk(fs)
    expected = {}
    for root, dirs, files in os.walk(src_tree):
        rel = os.path.relpath(root, src_tree)
        for n in dirs + files:
            expected[n if rel == "." else f"{rel}/{n}"] = os.path.join(root, n)
    assert set(tree) - {"lost+found"} == set(expected)
    for rel, host in expected.items():
        ino = fs.namei(rel, follow=False)
        assert ino == tree[rel]
        inode = fs.iget(ino)
        st_ = os.lstat(host)
        assert inode.mode == st_.st_mode and inode.uid == st_.st_uid and inode.gid == st_.st_gid
        if os.path.islink(host):
            assert fs.readlink(ino) == os.readlink(host)
        elif os.path.isdir(host):
            names = {n for n, _, _ in fs.readdir(ino)} - {".", ".."}
            assert names == set(os.listdir(host))
            assert inode.links_count == 2 + sum(os.path.isdir(os.path.join(host, n)) for n in names)
        else:
            assert inode.size == st_.st_size
            assert fs.read(ino, 0, 1 << 30) == open(host, "rb").read()
    # reads at odd offsets and across block boundaries
    big = fs.namei("/f5m")
    ref = data("f5m", 5 * MiB)
    for off, n in ((0, 1), (block_size - 1, 2), (12 * block_size - 3, 7), (70_000, 100_000), (5 * MiB - 5, 100)):
        assert fs.read(big, off, n) == ref[off:off + n]
    assert fs.namei("link") == fs.namei("sub/a.txt") == fs.namei("/sub/./deeper/../a.txt")
    assert fs.namei("a.txt", cwd_ino=fs.namei("sub")) == fs.namei("sub/a.txt")


def test_indirect_blocks_in_use(images):
    fs = mount(images(1024, 256), read_only=True)
    f70k, f5m = fs.iget(fs.namei("f70k")), fs.iget(fs.namei("f5m"))
    assert f70k.i_block[L.EXT2_IND_BLOCK] and not f70k.i_block[L.EXT2_DIND_BLOCK]
    assert f5m.i_block[L.EXT2_DIND_BLOCK] and not f5m.i_block[L.EXT2_TIND_BLOCK]
    assert fs.bmap(f5m, 12 + 256 + 300) != 0 and fs.bmap(f5m, 5 * 1024) == 0
    # i_blocks counts the indirect blocks too
    assert f70k.blocks == (70 + 1) * 2


def test_statfs(images):
    fs = mount(images(1024, 256), read_only=True)
    s = fs.statfs()
    sb = D.ext2_super_block.parse(bytes(fs.bread(1)))
    assert s.f_bsize == 1024 and s.f_namelen == 255
    assert s.f_files == sb.s_inodes_count and s.f_ffree == sb.s_free_inodes_count
    assert s.f_bfree == sb.s_free_blocks_count and s.f_bavail == s.f_bfree - sb.s_r_blocks_count
    assert 0 < s.f_bfree < s.f_blocks < sb.s_blocks_count


def test_read_only_mount_refuses_writes(images):
    img = images()
    before = bytes(img)
    fs = mount(img, read_only=True)
    assert errno_of(fs.create, 2, "x") == EROFS
    assert errno_of(fs.write, fs.namei("one"), 0, b"z") == EROFS
    assert errno_of(fs.truncate, fs.namei("one"), 0) == EROFS
    assert errno_of(fs.unlink, 2, "one") == EROFS
    fs.bio.sync()
    assert bytes(img) == before


# --- writing --------------------------------------------------------------------

def check_and_remount(fs, img, tmp_path, model: dict[str, bytes]):
    """Sync, fsck, then compare the model with a fresh mount and with debugfs."""
    fs.bio.sync()
    path = fsck(img, tmp_path)
    fresh = mount(bytearray(img), read_only=True)
    for p, content in model.items():
        assert fresh.read(fresh.namei(p), 0, len(content) + 10) == content, p
    for p, content in list(model.items())[:4]:
        assert debugfs_cat(path, "/" + p) == content, p
    return fresh


@pytest.mark.parametrize("block_size,inode_size", [(1024, 256), (4096, 128)])
def test_writes_appends_overwrites(images, tmp_path, block_size, inode_size):
    img = images(block_size, inode_size)
    fs = mount(img)
    bs = block_size
    model = {}
    # overwrite across block boundaries inside an existing file
    ino = fs.namei("f70k")
    ref = bytearray(data("f70k", 70 * KiB))
    for off, n in ((bs - 10, 20), (3 * bs - 1, 2 * bs + 2), (12 * bs - 5, 10), (0, 1)):
        patch = data(("ow", off), n)
        assert fs.write(ino, off, patch) == n
        ref[off:off + n] = patch
    model["f70k"] = bytes(ref)
    # appends, one byte short of and across block edges, into the indirect range
    ino = fs.create(2, "appended")
    ref = bytearray()
    for i, n in enumerate((1, bs - 2, 1, 1, bs, 3 * bs + 7, 12 * bs, 300 * bs // 4)):
        chunk = data(("ap", i), n)
        assert fs.write(ino, fs.iget(ino).size, chunk) == n
        ref += chunk
    model["appended"] = bytes(ref)
    assert fs.iget(ino).size == len(ref)
    # extend the 5 MiB file into its double indirect range and past it
    ino = fs.namei("f5m")
    tail = data("tail", 3 * bs + 1)
    fs.write(ino, 5 * MiB, tail)
    model["f5m"] = data("f5m", 5 * MiB) + tail
    # write far beyond the end: a hole in between
    ino = fs.create(2, "sparse")
    fs.write(ino, 0, b"head")
    fs.write(ino, 300 * bs + 17, b"tail")
    model["sparse"] = b"head" + bytes(300 * bs + 13) + b"tail"
    # head block + (1 KiB: double indirect, indirect, data | 4 KiB: indirect, data)
    assert fs.bmap(ino, 5) == 0 and fs.iget(ino).blocks == (4 if bs == 1024 else 3) * (bs // 512)
    for p, content in model.items():
        assert fs.read(fs.namei(p), 0, len(content) + 1) == content
    check_and_remount(fs, img, tmp_path, model)


def test_new_blocks_are_near_the_file(images):
    fs = mount(images(1024, 256))
    ino = fs.create(2, "contig")
    fs.write(ino, 0, data("c", 200 * KiB))
    blocks = [fs.bmap(ino, i) for i in range(200)]
    # sequential writes get consecutive blocks, skipping only the indirect block
    gaps = [b - a for a, b in zip(blocks, blocks[1:])]
    assert gaps.count(1) >= 197
    inode = fs.iget(ino)
    assert inode.i_block[L.EXT2_IND_BLOCK] == blocks[11] + 1


def test_truncate_shrink_and_grow(images, tmp_path):
    img = images(1024, 256)
    fs = mount(img)
    free0 = fs.statfs().f_bfree
    ino = fs.namei("f5m")
    before = fs.iget(ino).blocks // 2
    assert before == 5120 + 1 + 1 + 19                # data, ind, dind and the 19 indirect blocks under it
    fs.truncate(ino, 5 * MiB - 1)                   # within a block
    fs.truncate(ino, 70 * KiB + 3)                  # out of double indirect, into single
    assert fs.iget(ino).i_block[L.EXT2_DIND_BLOCK] == 0
    fs.truncate(ino, 11 * KiB + 5)                  # direct blocks only, tail zeroed
    assert fs.iget(ino).i_block[L.EXT2_IND_BLOCK] == 0
    assert fs.iget(ino).blocks == 12 * 2
    fs.truncate(ino, 200 * KiB)                     # grow: a hole, the old tail reads zeros
    ref = data("f5m", 11 * KiB + 5) + bytes(200 * KiB - (11 * KiB + 5))
    assert fs.read(ino, 0, 1 << 30) == ref
    assert fs.iget(ino).blocks == 12 * 2
    fs.write(ino, 100 * KiB, b"mid")                # fill a hole in the middle
    ref = ref[:100 * KiB] + b"mid" + ref[100 * KiB + 3:]
    assert fs.statfs().f_bfree == free0 + before - 12 - 2        # 12 kept, an indirect and a data block new
    # shrink to a block edge, then to zero
    ino2 = fs.namei("f70k")
    fs.truncate(ino2, 4096)
    assert fs.read(ino2, 0, 10000) == data("f70k", 4096)
    fs.truncate(ino2, 0)
    assert fs.iget(ino2).blocks == 0 and fs.iget(ino2).i_block == [0] * 15
    fs.write(ino2, 5000, b"x")                      # regrow after zero
    check_and_remount(fs, img, tmp_path, {"f5m": ref, "f70k": bytes(5000) + b"x"})
    assert errno_of(fs.truncate, 2, 0) == EISDIR
    assert errno_of(fs.truncate, ino, -1) == EINVAL


def test_triple_indirect_and_large_sparse_files(images, tmp_path):
    img = images(1024, 256)
    fs = mount(img)
    free = fs.statfs().f_bfree
    ino = fs.create(2, "huge")
    tind_start = (12 + 256 + 256 * 256) * 1024
    fs.write(ino, tind_start + 5, b"triple")
    inode = fs.iget(ino)
    assert inode.i_block[L.EXT2_TIND_BLOCK] and inode.blocks == 4 * 2         # tind, dind, ind, data
    fs.write(ino, 3 << 30, b"past 2 GiB")                                    # i_size_high
    assert inode.size == (3 << 30) + 10 and inode.raw["i_dir_acl"] == 0 and inode.raw["i_size"] == (3 << 30) + 10
    fs.write(ino, 5 << 30, b"!")
    assert inode.raw["i_dir_acl"] == 1
    assert fs.read(ino, tind_start, 11) == b"\0\0\0\0\0triple"
    assert fs.read(ino, (5 << 30) - 3, 10) == b"\0\0\0!"
    assert errno_of(fs.write, ino, fs.max_size, b"x") == EFBIG
    fs.bio.sync()
    path = fsck(img, tmp_path)
    stat = subprocess.run(["debugfs", "-R", "stat /huge", str(path)], capture_output=True, text=True).stdout
    assert f"Size: {(5 << 30) + 1}" in stat
    fresh = mount(bytearray(img), read_only=True)
    assert fresh.iget(fresh.namei("huge")).size == (5 << 30) + 1
    fs.truncate(ino, tind_start + 8)
    assert fs.read(ino, tind_start, 100) == b"\0\0\0\0\0tri" and inode.blocks == 4 * 2
    fs.truncate(ino, 1000)
    assert inode.blocks == 0 and inode.i_block == [0] * 15
    fs.unlink(2, "huge")
    assert fs.statfs().f_bfree == free
    fs.bio.sync()
    fsck(img, tmp_path)


def test_namespace_operations(images, tmp_path):
    img = images(1024, 256)
    fs = mount(img)
    root_links = fs.iget(2).links_count
    # create / mkdir
    a = fs.create(2, "newfile", 0o600, uid=1000, gid=100)
    assert fs.iget(a).mode == L.S_IFREG | 0o600 and fs.iget(a).uid == 1000 and fs.iget(a).links_count == 1
    d = fs.mkdir(2, "newdir", 0o750)
    assert fs.iget(2).links_count == root_links + 1 and fs.iget(d).links_count == 2
    assert [(n, i) for n, i, _ in fs.readdir(d)] == [(".", d), ("..", 2)]
    sub = fs.mkdir(d, "child")
    assert fs.iget(d).links_count == 3
    assert fs.namei("newdir/child/..") == d
    # errors
    assert errno_of(fs.create, 2, "newfile") == EEXIST
    assert errno_of(fs.mkdir, 2, "newdir") == EEXIST
    assert errno_of(fs.create, 2, "x" * 256) == ENAMETOOLONG
    assert errno_of(fs.create, a, "x") == ENOTDIR
    assert errno_of(fs.namei, "newfile/x") == ENOTDIR
    assert errno_of(fs.namei, "nothere") == ENOENT
    assert fs.lookup(2, "nothere") is None
    assert errno_of(fs.unlink, 2, "newdir") == EISDIR
    assert errno_of(fs.rmdir, 2, "newfile") == ENOTDIR
    assert errno_of(fs.rmdir, 2, "newdir") == ENOTEMPTY
    assert errno_of(fs.unlink, 2, "nothere") == ENOENT
    assert errno_of(fs.link, d, 2, "dirlink") == EPERM
    # a long name fits exactly
    long_ino = fs.create(d, "y" * 255)
    assert fs.lookup(d, "y" * 255) == long_ino
    # many entries: the directory grows past one block
    for i in range(120):
        fs.create(sub, f"file-{i:03d}")
    assert fs.iget(sub).size > 1024
    for i in range(0, 120, 2):
        fs.unlink(sub, f"file-{i:03d}")
    assert sorted(n for n, _, _ in fs.readdir(sub))[2:] == [f"file-{i:03d}" for i in range(1, 120, 2)]
    # hard links
    fs.write(a, 0, b"linked content")
    fs.link(a, sub, "hard")
    assert fs.iget(a).links_count == 2
    fs.unlink(2, "newfile")
    assert fs.iget(a).links_count == 1 and fs.read(fs.namei("newdir/child/hard"), 0, 100) == b"linked content"
    # symlinks, fast and slow
    s1 = fs.symlink(2, "fast", "newdir/child/hard")
    s2 = fs.symlink(2, "slow", "/newdir/child/" + "./" * 40 + "hard")
    assert fs.iget(s1).blocks == 0 and fs.iget(s2).blocks == 2
    assert fs.readlink(s2) == "/newdir/child/" + "./" * 40 + "hard"
    assert fs.namei("fast") == fs.namei("slow") == a
    assert fs.namei("fast", follow=False) == s1
    fs.symlink(2, "loop1", "loop2")
    fs.symlink(2, "loop2", "loop1")
    assert errno_of(fs.namei, "loop1") == ELOOP
    # unlink frees the inode and its blocks
    free = fs.statfs()
    fs.unlink(2, "f70k")
    after = fs.statfs()
    assert after.f_ffree == free.f_ffree + 1 and after.f_bfree == free.f_bfree + 71
    # rmdir
    e = fs.mkdir(d, "empty")
    fs.rmdir(d, "empty")
    assert fs.iget(d).links_count == 3 and fs.lookup(d, "empty") is None
    assert errno_of(fs.iget, e) != 0
    assert errno_of(fs.rmdir, d, ".") == EINVAL
    assert errno_of(fs.rmdir, d, "..") == ENOTEMPTY
    fs.rmdir(2, "emptydir")
    model = {"newdir/child/hard": b"linked content", "sub/a.txt": b"hello ext2\n"}
    fresh = check_and_remount(fs, img, tmp_path, model)
    assert fresh.readlink(fresh.namei("slow", follow=False)).endswith("hard")


def test_large_flat_directory(images, tmp_path):
    """A directory of thousands of entries (a build's object directory): creates, lookups, unlinks and
    refills of freed slots agree with e2fsck and with debugfs's listing."""
    img = images(4096, 256, "32M")
    fs = mount(img)
    d = fs.mkdir(2, "obj")
    names = [f"module-{i:05d}.o" for i in range(2500)]
    inos = {name: fs.create(d, name) for name in names}
    assert fs.iget(d).size > 10 * 4096
    assert all(fs.lookup(d, name) == ino for name, ino in inos.items())
    for name in names[::3]:
        fs.unlink(d, name)
        del inos[name]
    for i in range(400):                    # shorter and longer names reuse the freed slots or grow the directory
        name = f"n{i}" if i % 2 else f"a-much-longer-object-file-name-{i:04d}.o"
        inos[name] = fs.create(d, name)
    assert errno_of(fs.create, d, names[1]) == EEXIST
    listed = {n: i for n, i, _ in fs.readdir(d) if n not in (".", "..")}
    assert listed == inos
    fs.bio.sync()
    path = fsck(img, tmp_path)
    out = subprocess.run(["debugfs", "-R", "ls -p /obj", str(path)], capture_output=True, text=True).stdout
    on_disk = [(f.split("/")[5], int(f.split("/")[1])) for f in out.split("\n") if f.count("/") >= 6]
    assert {n: i for n, i in on_disk if i and n not in (".", "..")} == inos


def test_directory_block_changed_behind_the_fs_is_read_afresh(images):
    """Parsed directory blocks are kept by content: a block rewritten on the device (another writer of
    /dev/vda, a corruption) is parsed and checked again, never answered from a stale parse."""
    img = images(1024, 256)
    fs = mount(img)
    d = fs.mkdir(2, "dir")
    ino = fs.create(d, "alpha")
    assert fs.lookup(d, "alpha") == ino
    block = fs.bmap(fs.iget(d), 0) * 1024
    at = block + bytes(img[block:block + 1024]).index(b"alpha")
    img[at:at + 5] = b"omega"                       # renamed on the device
    assert fs.lookup(d, "alpha") is None and fs.lookup(d, "omega") == ino
    struct.pack_into("<H", img, at - 8 + 4, 6)      # its rec_len corrupted
    assert errno_of(fs.lookup, d, "omega") == EUCLEAN
    assert errno_of(fs.create, d, "beta") == EUCLEAN


def test_special_files_and_setattr(images, tmp_path):
    img = images(1024, 256)
    fs = mount(img)
    tty = fs.mknod(2, "ttyS0", L.S_IFCHR | 0o620, os.makedev(4, 64))
    nvme = fs.mknod(2, "nvme", L.S_IFBLK | 0o660, os.makedev(259, 300))     # needs the new encoding
    fifo = fs.mknod(2, "fifo", L.S_IFIFO | 0o644)
    assert fs.iget(tty).rdev == os.makedev(4, 64) and fs.iget(tty).i_block[:2] == [(4 << 8) | 64, 0]
    assert fs.iget(nvme).rdev == os.makedev(259, 300) and fs.iget(nvme).i_block[0] == 0
    assert {n: t for n, _, t in fs.readdir(2)}["fifo"] == L.EXT2_FT_FIFO and fs.iget(fifo).blocks == 0
    assert errno_of(fs.read, fifo, 0, 1) == EINVAL and errno_of(fs.write, tty, 0, b"x") == EINVAL
    assert errno_of(fs.mknod, 2, "bad", L.S_IFDIR | 0o755) == EINVAL
    fs.setattr(fs.namei("one"), mode=0o4711, uid=70000, gid=5, mtime=1234)
    one = fs.iget(fs.namei("one"))
    assert one.mode == L.S_IFREG | 0o4711 and one.uid == 70000 and one.mtime == 1234
    fs.bio.sync()
    path = fsck(img, tmp_path)
    stat = lambda p: subprocess.run(["debugfs", "-R", f"stat {p}", str(path)],  # noqa: E731
                                    capture_output=True, text=True).stdout
    assert "character special" in stat("/ttyS0") and "major/minor number: 04:64" in stat("/ttyS0")
    assert "major/minor number: 259:300" in stat("/nvme")
    fs.unlink(2, "nvme")
    fs.bio.sync()
    fsck(img, tmp_path)
    fresh = mount(bytearray(img), read_only=True)
    assert fresh.iget(fresh.namei("one")).uid == 70000


def test_rename(images, tmp_path):
    img = images(1024, 256)
    fs = mount(img)
    root_links = fs.iget(2).links_count
    # file over file: the old target goes, with its blocks
    free = fs.statfs()
    fs.rename(2, "one", 2, "f70k")
    assert fs.lookup(2, "one") is None and fs.read(fs.namei("f70k"), 0, 10) == data("one", 1)
    assert fs.statfs().f_ffree == free.f_ffree + 1 and fs.statfs().f_bfree == free.f_bfree + 71
    # move a file to another directory under a new name
    fs.rename(2, "f4097", fs.namei("sub"), "moved")
    # directory move: ".." and both parents' link counts follow
    sub, deeper = fs.namei("sub"), fs.namei("sub/deeper")
    sub_links = fs.iget(sub).links_count
    fs.rename(sub, "deeper", 2, "top")
    assert fs.namei("top") == deeper and fs.namei("top/..") == 2
    assert fs.iget(2).links_count == root_links + 1 and fs.iget(sub).links_count == sub_links - 1
    # rename within the same directory
    fs.rename(2, "top", 2, "top2")
    assert fs.iget(2).links_count == root_links + 1
    # a directory over an empty directory
    empty = fs.namei("emptydir")
    fs.rename(2, "top2", 2, "emptydir")
    assert fs.namei("emptydir") == deeper and fs.iget(2).links_count == root_links
    assert errno_of(fs.iget, empty) != 0
    # errors
    d2 = fs.mkdir(deeper, "inner")
    assert errno_of(fs.rename, 2, "emptydir", d2, "x") == EINVAL        # into itself
    assert errno_of(fs.rename, 2, "emptydir", deeper, "x") == EINVAL
    assert errno_of(fs.rename, 2, "sub", 2, "f4096") == ENOTDIR
    assert errno_of(fs.rename, 2, "f4096", 2, "sub") == EISDIR
    fs.mkdir(2, "full")
    fs.create(fs.namei("full"), "x")
    assert errno_of(fs.rename, 2, "sub", 2, "full") == ENOTEMPTY
    assert errno_of(fs.rename, 2, "missing", 2, "x") == ENOENT
    assert errno_of(fs.rename, 2, ".", 2, "x") == EBUSY
    # hard links of one inode: nothing happens
    fs.link(fs.namei("f4096"), 2, "f4096b")
    fs.rename(2, "f4096", 2, "f4096b")
    assert fs.lookup(2, "f4096") and fs.iget(fs.namei("f4096")).links_count == 2
    model = {"f70k": data("one", 1), "sub/moved": data("f4097", 4097), "emptydir/b.bin": data("b", 12345),
             "f4096b": data("f4096", 4096)}
    check_and_remount(fs, img, tmp_path, model)


def test_fill_disk_to_enospc(src_tree, tmp_path):
    img = bytearray(mkfs(tmp_path, None, "2M", 1024, 128, opts=("-g", "512")).read_bytes())
    fs = mount(img)
    assert fs.groups_count == 4
    start = fs.statfs()
    ino = fs.create(2, "big")
    chunk = data("fill", 64 * KiB)
    total = 0
    while True:
        try:
            n = fs.write(ino, total, chunk)
        except Ext2Error as e:
            assert e.errno == ENOSPC
            break
        total += n
        if n < len(chunk):
            break
    assert errno_of(fs.write, ino, total, b"more") == ENOSPC
    s = fs.statfs()
    assert s.f_bfree == 0 and s.f_bavail == 0
    assert fs.read(ino, 0, total) == (chunk * (total // len(chunk) + 1))[:total]
    # a new directory needs a block: ENOSPC, and nothing leaks
    ffree = fs.statfs().f_ffree
    assert errno_of(fs.mkdir, 2, "nodir") == ENOSPC
    assert fs.statfs().f_ffree == ffree and fs.lookup(2, "nodir") is None
    fs.bio.sync()
    fsck(img, tmp_path)
    fs.unlink(2, "big")
    assert fs.statfs().f_bfree == start.f_bfree and fs.statfs().f_ffree == start.f_ffree
    fs.put_super()
    fsck(img, tmp_path)


def test_inodes_run_out(tmp_path):
    img = bytearray(mkfs(tmp_path, None, "1M", 1024, 128, opts=("-N", "32")).read_bytes())
    fs = mount(img)
    made = 0
    with pytest.raises(Ext2Error) as ei:
        for i in range(1000):
            fs.create(2, f"f{i}")
            made += 1
    assert ei.value.errno == ENOSPC and fs.statfs().f_ffree == 0 and made == fs.statfs().f_files - 11
    fs.bio.sync()
    fsck(img, tmp_path)


def test_timestamps_follow_linux(images):
    clock = [1_700_000_000]
    img = images(1024, 256)
    fs = mount(img, now=lambda: clock[0])
    clock[0] += 10
    ino = fs.create(2, "t")
    root = fs.iget(2)
    assert root.mtime == root.ctime == clock[0]
    inode = fs.iget(ino)
    assert inode.atime == inode.mtime == inode.ctime == clock[0]
    clock[0] += 10
    fs.write(ino, 0, b"abc")
    assert inode.mtime == inode.ctime == clock[0] and inode.atime == clock[0] - 10 and root.mtime == clock[0] - 10
    clock[0] += 10
    fs.read(ino, 0, 3)                               # noatime: reads change nothing
    assert inode.atime == clock[0] - 20
    fs.link(ino, 2, "t2")
    assert inode.ctime == clock[0] and inode.mtime == clock[0] - 10
    clock[0] += 10
    fs.unlink(2, "t")
    assert root.mtime == root.ctime == inode.ctime == clock[0]
    # times survive a remount, with the nanoseconds mke2fs stored dropped when changed
    fs.write(fs.namei("one"), 0, b"1")
    fs.bio.sync()
    fresh = mount(bytearray(img), read_only=True)
    assert fresh.iget(ino).mtime == clock[0] - 20
    one = fresh.iget(fresh.namei("one"))
    assert one.mtime == clock[0] and one.extra["i_mtime_extra"] == 0 and one.extra["i_extra_isize"] == 32


def test_mount_state_and_put_super(images, tmp_path):
    img = images(1024, 256)
    fs = mount(img)
    fs.create(2, "x")
    fs.sync_fs()
    sb = D.ext2_super_block.parse(bytes(img[1024:2048]))
    assert not sb.s_state & L.EXT2_VALID_FS and sb.s_mnt_count == 1
    fsck(img, tmp_path)
    fs.put_super()
    sb = D.ext2_super_block.parse(bytes(img[1024:2048]))
    assert sb.s_state & L.EXT2_VALID_FS
    assert errno_of(fs.create, 2, "y") == EROFS


def test_open_unlinked_inode_lives_until_iput(images, tmp_path):
    img = images(1024, 256)
    fs = mount(img)
    ino = fs.namei("f70k")
    free = fs.statfs()
    inode = fs.igrab(ino)
    fs.unlink(2, "f70k")
    assert inode.links_count == 0 and fs.read(inode, 0, 70 * KiB) == data("f70k", 70 * KiB)
    assert fs.statfs().f_ffree == free.f_ffree
    fs.write(inode, 0, b"still writable")
    fs.iput(inode)
    assert fs.statfs().f_ffree == free.f_ffree + 1 and fs.statfs().f_bfree == free.f_bfree + 71
    fs.bio.sync()
    fsck(img, tmp_path)


def test_unlink_releases_xattr_blocks(src_tree, tmp_path):
    """An EA block (ext_attr) is counted in i_blocks; a shared one loses a reference, the last user frees it."""
    path = mkfs(tmp_path, src_tree, "16M", 1024, 128)
    for f in ("/one", "/f4095"):
        subprocess.run(["debugfs", "-w", "-R", f"ea_set {f} user.test value", str(path)], check=True,
                       capture_output=True)
    img = bytearray(path.read_bytes())
    fs = mount(img)
    one, f4095 = fs.iget(fs.namei("one")), fs.iget(fs.namei("f4095"))
    assert one.file_acl and f4095.file_acl and one.blocks == 2 + 2
    # share /one's EA block with /f4095, as ext2_xattr_set does for identical sets
    ext2_alloc.ext2_free_blocks(fs, f4095.file_acl, 1)
    f4095.file_acl = one.file_acl
    fs.write_inode(f4095)
    L.XATTR_HEADER.set(fs.bread(one.file_acl), 0, "h_refcount", 2)
    fs.bio.sync()
    fsck(img, tmp_path)
    shared = one.file_acl
    free = fs.statfs().f_bfree
    fs.unlink(2, "one")
    assert fs.statfs().f_bfree == free + 1                      # its data block; the EA block stays
    assert L.XATTR_HEADER.get(fs.bread(shared), 0, "h_refcount") == 1
    fs.unlink(2, "f4095")
    assert fs.statfs().f_bfree == free + 1 + 4 + 1
    fs.bio.sync()
    fsck(img, tmp_path)


def test_file_backed_blockio(images, tmp_path):
    path = tmp_path / "file.img"
    path.write_bytes(images(4096, 256))
    with open(path, "r+b") as f:
        fs = Ext2Fs.mount(FileBlockIO(f))
        d = fs.mkdir(2, "viafile")
        fs.write(fs.create(d, "data"), 0, data("vf", 9000))
        fs.put_super()
    r = subprocess.run(["e2fsck", "-fn", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    assert debugfs_cat(path, "/viafile/data") == data("vf", 9000)


# --- features ------------------------------------------------------------------------

def test_other_layouts_and_features(src_tree, tmp_path):
    for opts in (("-O", "flex_bg"), ("-O", "^filetype"), ("-O", "^sparse_super,^dir_index,^resize_inode"),
                 ("-O", "sparse_super2", "-g", "1024"), ("-g", "1024", "-N", "2048")):
        img = bytearray(mkfs(tmp_path, src_tree, "16M", 1024, 256, opts=opts).read_bytes())
        fs = mount(img)
        assert fs.read(fs.namei("sub/a.txt"), 0, 100) == b"hello ext2\n"
        d = fs.mkdir(2, "made")
        fs.write(fs.create(d, "f"), 0, data("ff", 30000))
        fs.rename(d, "f", 2, "g")
        fs.unlink(2, "f5m")
        fs.bio.sync()
        fsck(img, tmp_path)
        assert debugfs_cat(tmp_path / "check.img", "/g") == data("ff", 30000)


def test_revision_0(tmp_path):
    img = bytearray(mkfs(tmp_path, None, "1M", 1024, 128, opts=("-r", "0")).read_bytes())
    fs = mount(img)
    assert fs.first_ino == 11 and fs.inode_size == 128 and not fs.has_filetype
    fs.write(fs.create(2, "f"), 0, b"rev0")
    assert [t for n, _, t in fs.readdir(2)] == [0] * len(fs.readdir(2))
    fs.bio.sync()
    fsck(img, tmp_path)


@pytest.mark.parametrize("opts,needle", [(("-t", "ext4"), "unsupported optional features"),
                                         (("-O", "extents"), "unsupported optional features (40)"),
                                         (("-O", "64bit,extents"), "unsupported optional features")])
def test_incompatible_features_rejected(tmp_path, opts, needle):
    img = tmp_path / "x.img"
    subprocess.run(["mke2fs", "-q", "-F", *opts, str(img), "8M"], check=True, capture_output=True)
    with pytest.raises(Ext2Error) as ei:
        mount(bytearray(img.read_bytes()))
    assert ei.value.errno == EINVAL and needle in str(ei.value) and "\n" not in str(ei.value)


def test_journal_needing_recovery_rejected(tmp_path):
    img = tmp_path / "j.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext3", str(img), "8M"], check=True, capture_output=True)
    mount(bytearray(img.read_bytes()), read_only=True)          # a clean ext3 reads as ext2
    subprocess.run(["debugfs", "-w", "-R", "feature needs_recovery", str(img)], check=True, capture_output=True)
    with pytest.raises(Ext2Error) as ei:
        mount(bytearray(img.read_bytes()), read_only=True)
    assert ei.value.errno == EINVAL and "recovery" in str(ei.value)


def test_unknown_ro_compat_feature_mounts_read_only(tmp_path):
    img = bytearray(mkfs(tmp_path, None, "4M", 1024, 256, opts=("-O", "metadata_csum")).read_bytes())
    with pytest.raises(Ext2Error) as ei:
        mount(img)
    assert ei.value.errno == EINVAL and "read-only" in str(ei.value)
    fs = mount(img, read_only=True)
    assert fs.readdir(2)[0][0] == "."


def test_bad_superblocks_rejected(images):
    for field, value in (("s_magic", 0x1234), ("s_log_block_size", 3), ("s_rev_level", 2),
                         ("s_inodes_per_group", 0), ("s_blocks_count", 1 << 30), ("s_first_data_block", 0),
                         ("s_inode_size", 100), ("s_inodes_count", 7), ("s_blocks_per_group", 9000)):
        img = images(1024, 256)
        L.SUPER.set(img, 1024, field, value)
        assert errno_of(mount, img) == EINVAL, field


# --- random operations against a model ------------------------------------------------

NAMES = ["a", "b", "c", "d/x", "d/y"]
OPS = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(NAMES)),
    st.tuples(st.just("write"), st.sampled_from(NAMES), st.integers(0, 150_000), st.integers(0, 20_000),
              st.integers(0, 1 << 30)),
    st.tuples(st.just("truncate"), st.sampled_from(NAMES), st.integers(0, 200_000)),
    st.tuples(st.just("unlink"), st.sampled_from(NAMES)),
    st.tuples(st.just("rename"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
    st.tuples(st.just("link"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
)


@pytest.fixture(scope="module")
def model_image(tmp_path_factory):
    # four block groups, so that allocation moves between groups
    return mkfs(tmp_path_factory.mktemp("model"), None, "4M", 1024, 256, opts=("-g", "1024")).read_bytes()


@given(st.lists(OPS, min_size=1, max_size=30))
@settings(max_examples=25, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_random_operations_match_model(model_image, tmp_path, ops):
    img = bytearray(model_image)
    fs = mount(img)
    fs.mkdir(2, "d")
    model: dict[str, bytearray] = {}                # hard links share one bytearray

    def parent(p):
        head, _, tail = p.rpartition("/")
        return (fs.namei(head) if head else 2), tail

    for op in ops:
        kind, name = op[0], op[1]
        if kind == "create":
            if name in model:
                assert errno_of(fs.create, *parent(name)) == EEXIST
            else:
                fs.create(*parent(name))
                model[name] = bytearray()
        elif name not in model:
            assert errno_of(fs.namei, name) == ENOENT
        elif kind == "write":
            _, _, off, n, seed = op
            chunk = data(seed, n)
            assert fs.write(fs.namei(name), off, chunk) == n
            m = model[name]
            if n and off > len(m):
                m.extend(bytes(off - len(m)))
            m[off:off + n] = chunk
        elif kind == "truncate":
            fs.truncate(fs.namei(name), op[2])
            m = model[name]
            del m[op[2]:]
            m.extend(bytes(op[2] - len(m)))
        elif kind == "unlink":
            fs.unlink(*parent(name))
            del model[name]
        elif kind == "rename":
            fs.rename(*parent(name), *parent(op[2]))
            if model.get(op[2]) is not model[name]:
                model[op[2]] = model.pop(name)
        elif kind == "link":
            if op[2] in model:
                assert errno_of(fs.link, fs.namei(name), *parent(op[2])) == EEXIST
            else:
                fs.link(fs.namei(name), *parent(op[2]))
                model[op[2]] = model[name]
    for name, content in model.items():
        assert fs.read(fs.namei(name), 0, 1 << 20) == bytes(content)
        assert fs.iget(fs.namei(name)).size == len(content)
    assert set(walk(fs)) - {"lost+found", "d"} == set(model)
    fs.bio.sync()
    fsck(img, tmp_path)
    fresh = mount(bytearray(img), read_only=True)
    for name, content in model.items():
        assert fresh.read(fresh.namei(name), 0, 1 << 20) == bytes(content)
        assert fresh.iget(fresh.namei(name)).links_count == sum(c is content for c in model.values())


DIRS = ["p", "q", "p/r", "q/s", "p/r/t", "p/z"]
DIR_OPS = st.lists(st.one_of(st.tuples(st.just("mkdir"), st.sampled_from(DIRS)),
                             st.tuples(st.just("rmdir"), st.sampled_from(DIRS)),
                             st.tuples(st.just("rename"), st.sampled_from(DIRS), st.sampled_from(DIRS))),
                   min_size=1, max_size=40)


@given(DIR_OPS)
@settings(max_examples=25, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_random_directory_operations_match_model(model_image, tmp_path, ops):
    """mkdir / rmdir / rename of directories against a set of paths: the
    same errors as Linux, and link counts and '..' that e2fsck accepts."""
    img = bytearray(model_image)
    fs = mount(img)
    model: set[str] = set()

    def split(p):
        head, _, tail = p.rpartition("/")
        return head, tail

    def expect(err, fn, *args):
        if err:
            assert errno_of(fn, *args) == err
        else:
            fn(*args)

    for op in ops:
        kind, a = op[0], op[1]
        ha, ta = split(a)
        parent_ok = not ha or ha in model
        if kind == "mkdir":
            err = ENOENT if not parent_ok else EEXIST if a in model else 0
            expect(err, lambda: fs.mkdir(fs.namei(ha) if ha else 2, ta))
            if not err:
                model.add(a)
        elif kind == "rmdir":
            err = ENOENT if a not in model else ENOTEMPTY if any(m.startswith(a + "/") for m in model) else 0
            expect(err, lambda: fs.rmdir(fs.namei(ha) if ha else 2, ta))
            if not err:
                model.discard(a)
        else:
            b = op[2]
            hb, tb = split(b)
            if a not in model or (hb and hb not in model):
                err = ENOENT
            elif a == b:
                err = 0
            elif b.startswith(a + "/"):
                err = EINVAL
            elif b in model and any(m.startswith(b + "/") for m in model):
                err = ENOTEMPTY
            else:
                err = 0
            expect(err, lambda: fs.rename(fs.namei(ha) if ha else 2, ta, fs.namei(hb) if hb else 2, tb))
            if not err and a != b:
                moved = {m for m in model if m == a or m.startswith(a + "/")}
                model -= moved | {b}
                model |= {b + m[len(a):] for m in moved}
    assert set(walk(fs)) - {"lost+found"} == model
    for d in model:
        head = d.rpartition("/")[0]
        assert fs.namei(d + "/..") == (fs.namei(head) if head else 2)
    fs.bio.sync()
    fsck(img, tmp_path)


# --- corrupted images ----------------------------------------------------------------

class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    def on_alarm(signum, frame):
        raise Hang(f"no answer in {seconds} s")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def attempt(fn, *args):
    try:
        return fn(*args)
    except Ext2Error:
        return None


def exercise(img) -> None:
    """Mount, walk, read everything, then change things; only Ext2Error may come out."""
    try:
        fs = Ext2Fs.mount(FileBlockIO(img))
    except Ext2Error:
        return
    stack, seen, files = [2], set(), []
    while stack and len(seen) < 100:
        d = stack.pop()
        if d in seen:
            continue
        seen.add(d)
        for name, ino, ftype in attempt(fs.readdir, d) or []:
            if name in (".", ".."):
                continue
            inode = attempt(fs.iget, ino)
            if inode is None:
                continue
            if inode.is_dir:
                stack.append(ino)
            elif inode.is_reg:
                attempt(fs.read, inode, 0, 1 << 20)
                files.append((d, name, ino))
            elif inode.is_lnk:
                attempt(fs.readlink, inode)
            attempt(fs.lookup, d, name)
    for path in ("sub/deeper/b.bin", "link", "sub/../f70k"):
        attempt(fs.namei, path)
    attempt(fs.statfs)
    for d, name, ino in files[:4]:
        attempt(fs.write, ino, 3000, b"w" * 5000)
        attempt(fs.truncate, ino, 100)
        attempt(fs.rename, d, name, 2, "renamed-" + name)
    for d, name, ino in files[4:8]:
        attempt(fs.unlink, d, name)
    new = attempt(fs.create, 2, "brand-new")
    if new:
        attempt(fs.write, new, 0, b"n" * 20000)
    sub = attempt(fs.mkdir, 2, "newdir")
    if sub:
        attempt(fs.rename, 2, "sub", sub, "sub")
        attempt(fs.rmdir, 2, "newdir")
    attempt(fs.rmdir, 2, "emptydir")
    fs.bio.sync()


@pytest.fixture(scope="module")
def corrupt_base(tmp_path_factory):
    src = tmp_path_factory.mktemp("csrc")
    for name, size in (("empty", 0), ("small", 100), ("f4097", 4097), ("f70k", 70 * KiB)):
        (src / name).write_bytes(data(name, size))
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "sub" / "deeper" / "b.bin").write_bytes(data("b", 3000))
    (src / "emptydir").mkdir()
    os.symlink("sub/deeper/b.bin", src / "link")
    os.symlink("y" * 80, src / "slowlink")
    img = bytearray(mkfs(tmp_path_factory.mktemp("cimg"), src, "1M", 1024, 128).read_bytes())
    fs = mount(img, read_only=True)
    bs = fs.block_size
    it = fs.gd_get(0, "bg_inode_table")
    regions = {
        "superblock": (1024, L.SUPER.offset["s_reserved"]),     # the fields, not the padding
        "group descriptors": (2 * bs, 32 * fs.groups_count),
        "inode table": (it * bs, 4 * bs),
        "bitmaps": (fs.gd_get(0, "bg_block_bitmap") * bs, bs),
        "directory blocks": None,
        "indirect block": (fs.iget(fs.namei("f70k")).i_block[L.EXT2_IND_BLOCK] * bs, bs),
    }
    dirs = [fs.bmap(fs.namei(p), 0) * bs for p in ("/", "sub", "sub/deeper", "emptydir")]
    return bytes(img), regions, dirs


@pytest.mark.parametrize("region", ["superblock", "group descriptors", "inode table", "bitmaps",
                                    "directory blocks", "indirect block"])
def test_corruption_gives_ext2error_never_a_crash_or_hang(corrupt_base, region):
    base, regions, dirs = corrupt_base
    rng = random.Random(region)
    for trial in range(TRIALS):
        img = bytearray(base)
        if region == "directory blocks":
            start, length = rng.choice(dirs), 1024
        else:
            start, length = regions[region]
        for _ in range(rng.choice((1, 2, 4, 16, 64))):
            off = start + rng.randrange(length)
            if rng.random() < 0.5:
                img[off] = rng.randrange(256)
            else:                               # a plausible small number: a near-valid pointer or count
                struct.pack_into("<I", img, off - off % 4, rng.choice((0, 1, 2, 3, 12, 100, 1023, 1024, 5000,
                                                                        0xFFFFFFFF, rng.randrange(1024))))
        with time_limit(10):
            exercise(img)


def test_targeted_corruptions(corrupt_base):
    base, regions, dirs = corrupt_base
    fs0 = mount(bytearray(base), read_only=True)
    f70k = fs0.namei("f70k")
    it_block = fs0.gd_get(0, "bg_inode_table")
    inode_off = lambda ino: it_block * 1024 + (ino - 1) * 128   # noqa: E731
    i_block_off = lambda ino, i: inode_off(ino) + 40 + 4 * i  # noqa: E731

    def mutated(fn):
        img = bytearray(base)
        fn(img)
        return Ext2Fs.mount(FileBlockIO(img))

    # a data pointer into the inode table, beyond the device, onto the superblock
    for bad in (it_block, 1 << 20, 1, 2):
        fs = mutated(lambda img: struct.pack_into("<I", img, i_block_off(f70k, 0), bad))
        assert errno_of(fs.read, f70k, 0, 10) == EUCLEAN
        assert errno_of(fs.truncate, f70k, 0) == EUCLEAN
    # an indirect block naming one data block 256 times: more blocks than i_blocks, never a double free
    ind = fs0.iget(f70k).i_block[L.EXT2_IND_BLOCK]
    fs = mutated(lambda img: struct.pack_into("<256I", img, ind * 1024, *([ind + 1] * 256)))
    assert errno_of(fs.truncate, f70k, 0) == EUCLEAN
    # rec_len 0 / unaligned / running past the block in the root directory
    for rec_len in (0, 6, 2000):
        fs_img = bytearray(base)
        struct.pack_into("<H", fs_img, dirs[0] + 4, rec_len)
        assert errno_of(lambda: Ext2Fs.mount(FileBlockIO(fs_img)).readdir(2)) == EUCLEAN
    # a directory entry naming a nonexistent inode
    fs = mutated(lambda img: struct.pack_into("<I", img, dirs[1] + 24, 10 ** 6))
    assert errno_of(fs.readdir, fs0.namei("sub")) == EUCLEAN
    # a ".." loop: sub/deeper/.. -> deeper itself; moving a directory into it must not hang
    deeper = fs0.namei("sub/deeper")
    fs = mutated(lambda img: struct.pack_into("<I", img, dirs[2] + 12, deeper))
    with time_limit(5):
        assert errno_of(fs.rename, 2, "emptydir", deeper, "x") == EUCLEAN
    # a directory larger than the file system
    fs = mutated(lambda img: struct.pack_into("<I", img, inode_off(2) + 4, 1 << 31))
    assert errno_of(fs.readdir, 2) == EUCLEAN
    # inode numbers out of range through the API
    assert errno_of(fs0.iget, 0) == EUCLEAN and errno_of(fs0.iget, 1 << 40) == EUCLEAN


def test_errors_carry_linux_errno_names():
    e = Ext2Error(ENOENT, "no such file: x")
    assert e.errno == host_errno.ENOENT and str(e) == "EXT2-fs: no such file: x (ENOENT)"
    assert str(Ext2Error(EUCLEAN, "bad")).endswith("(EUCLEAN)")
