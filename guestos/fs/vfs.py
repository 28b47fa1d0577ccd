"""The VFS over an ext2 root (fs/namei.c, fs/open.c, fs/readdir.c, fs/read_write.c).

Regular-file data goes through the page cache (one address_space per inode);
metadata through the buffer cache; ext2 decides where blocks are."""
import os
import struct

from ..kernel.errno import (EBADF, EEXIST, EINVAL, EIO, EISDIR, ENOENT, ENOTDIR, EROFS, ESPIPE, SyscallError)
from ..mm.filemap import (PAGE_SHIFT, PAGE_SIZE, AddressSpace, FileRaState, generic_file_read,
                          generic_perform_write)
from .ext2 import EUCLEAN, Ext2Error
from .ext2_layout import S_IFDIR, S_IFLNK, S_IFMT, S_IFREG
from .file import File, generic_file_llseek_size
from .names import fs_encode

O_ACCMODE, O_RDONLY, O_WRONLY, O_RDWR = 3, 0, 1, 2
O_CREAT, O_EXCL, O_TRUNC, O_APPEND = 0o100, 0o200, 0o1000, 0o2000
O_DIRECTORY, O_NOFOLLOW = 0o200000, 0o400000
DT_BY_FT = {0: 0, 1: 8, 2: 4, 3: 2, 4: 6, 5: 1, 6: 12, 7: 10}     # EXT2_FT_* -> DT_*


class Ext2Aops:
    """address_space operations of one ext2 inode."""

    def __init__(self, fs, inode):
        self.fs, self.inode = fs, inode

    def i_size(self) -> int:
        return self.inode.size

    def set_i_size(self, size: int) -> None:
        self.inode.size = size
        self.fs.write_inode(self.inode)

    def _map(self, index: int, create: bool):
        bs = self.fs.block_size
        per_page = PAGE_SIZE // bs
        out = []
        for j in range(per_page):
            lblk = index * per_page + j
            block = self.fs.bmap(self.inode, lblk, create=create, zero_data=False) if create \
                else self.fs.bmap(self.inode, lblk)
            out.append((block * bs if block else None, bs))
        return out

    def map_page(self, mapping, index: int):
        return self._map(index, False)

    def map_pages_cached(self, mapping, first: int, n: int) -> list:
        """map_page() of pages first, first+1, ... (at most n), as far as it needs no I/O and meets no
        error (ext2's bmap_cached): [extents] per page."""
        bs = self.fs.block_size
        per_page = PAGE_SIZE // bs
        blocks = self.fs.bmap_cached(self.inode, first * per_page, n * per_page)
        if per_page == 1:
            return [[(block * bs if block else None, bs)] for block in blocks]
        return [[(block * bs if block else None, bs) for block in blocks[j:j + per_page]]
                for j in range(0, len(blocks) - per_page + 1, per_page)]

    def page_blocks_cached(self, mapping, first: int, n: int):
        """map_pages_cached() when a block is a page: the block of each page (0: a hole), or None when
        blocks are smaller than pages."""
        if self.fs.block_size != PAGE_SIZE:
            return None
        return self.fs.bmap_cached(self.inode, first, n)

    def map_page_for_write(self, mapping, index: int):
        # blocks past the end of the file are not allocated for a partial last page
        end = self.inode.size
        full = self._map(index, False)
        bs = self.fs.block_size
        out = []
        for j, (offset, length) in enumerate(full):
            pos = (index << PAGE_SHIFT) + j * bs
            if offset is None and pos < end:
                block = self.fs.bmap(self.inode, pos // bs, create=True, zero_data=False)
                offset = block * bs
            out.append((offset if pos < end else None, length))
        return out


class Vfs:
    """The mounted root: ext2 on a block device, with the kernel's page cache on top."""

    def __init__(self, k, fs, bcache):
        self.k, self.fs, self.bcache = k, fs, bcache
        self.mappings = {}                    # ino -> AddressSpace
        self.names = {}                       # ino -> the path it was first opened by (for reports)
        self.fifos = {}                       # ino -> the Pipe of a FIFO while it is open

    def mapping_of(self, inode) -> AddressSpace:
        mapping = self.mappings.get(inode.ino)
        if mapping is None:
            mapping = AddressSpace(self.k, inode.ino << 1, Ext2Aops(self.fs, inode), self.bcache.blk)
            self.mappings[inode.ino] = mapping
        return mapping

    def resolve(self, path: str, cwd_ino: int = 2, follow: bool = True) -> int:
        return self.call(self.fs.namei, path, cwd_ino, follow)

    def real_path(self, path: str, cwd: str) -> str:
        """d_path() of what `path` names: absolute, every symlink followed, no "." or ".."."""
        parts = [] if path.startswith("/") else [c for c in cwd.split("/") if c]
        todo = [c for c in path.split("/")]
        links = 0
        while todo:
            c = todo.pop(0)
            if c in ("", "."):
                continue
            if c == "..":
                if parts:
                    parts.pop()
                continue
            inode = self.fs.iget(self.resolve("/" + "/".join(parts + [c]), 2, follow=False))
            if inode.is_lnk:
                links += 1
                if links > 40:
                    raise SyscallError(40)                                 # ELOOP
                target = self.call(self.fs.readlink, inode)
                if target.startswith("/"):
                    parts = []
                todo = target.split("/") + todo
            else:
                parts.append(c)
        return "/" + "/".join(parts)

    def parent_and_name(self, path: str, cwd_ino: int):
        head, name = os.path.split(path.rstrip("/") or "/")
        if not name:
            raise SyscallError(EEXIST)
        parent = self.resolve(head or ".", cwd_ino) if head else cwd_ino
        if not self.fs.iget(parent).is_dir:
            raise SyscallError(ENOTDIR)
        return parent, name

    def readlink(self, path: str, cwd_ino: int) -> bytes:
        """readlink(2): the target of the symlink at path (the last component not followed), as the
        bytes on the disk; EINVAL when path names anything else."""
        inode = self.call(self.fs.iget, self.resolve(path, cwd_ino, follow=False))
        if not inode.is_lnk:
            raise SyscallError(EINVAL)
        return self.call(self.fs.readlink, inode).encode("utf-8", "surrogateescape")

    def call(self, fn, *args):
        """A file-system operation; corruption it finds reaches the caller as EIO, as ext2's does."""
        try:
            return fn(*args)
        except Ext2Error as e:
            raise SyscallError(EIO if e.errno == EUCLEAN else e.errno) from None

    def open(self, path: str, flags: int, mode: int, cwd_ino: int) -> File:
        fs = self.fs
        try:
            ino = fs.namei(path, cwd_ino=cwd_ino, follow=not flags & O_NOFOLLOW)
        except Ext2Error as e:
            if e.errno != ENOENT or not flags & O_CREAT:
                raise SyscallError(EIO if e.errno == EUCLEAN else e.errno) from None
            parent, name = self.parent_and_name(path, cwd_ino)
            ino = self.call(fs.create, parent, name, S_IFREG | (mode & 0o7777))
        else:
            if flags & O_CREAT and flags & O_EXCL:
                raise SyscallError(EEXIST)
        inode = fs.iget(ino)
        if flags & O_DIRECTORY and not inode.is_dir:
            raise SyscallError(ENOTDIR)
        if inode.is_dir and flags & O_ACCMODE != O_RDONLY:
            raise SyscallError(EISDIR)
        if flags & O_ACCMODE != O_RDONLY and fs.read_only and inode.file_type in (S_IFREG, S_IFDIR, S_IFLNK):
            raise SyscallError(EROFS)                  # may_open(): devices and FIFOs are not the disk
        if flags & O_TRUNC and inode.is_reg and flags & O_ACCMODE != O_RDONLY:
            self.truncate(inode, 0)
        self.names.setdefault(ino, path)
        return Ext2File(self, inode, path, flags)

    def truncate(self, inode, size: int) -> None:
        mapping = self.mapping_of(inode)
        if size < inode.size:
            mapping.truncate_inode_pages(size)
        self.call(self.fs.truncate, inode, size)

    def unlink(self, path: str, cwd_ino: int) -> None:
        parent, name = self.parent_and_name(path, cwd_ino)
        ino = self.call(self.fs.lookup, parent, name)
        if ino is None:
            raise SyscallError(ENOENT)
        inode = self.fs.iget(ino)
        if inode.is_dir:
            raise SyscallError(EISDIR)
        if inode.links_count <= 1 and not inode.i_count:       # open files keep their data (iput)
            self.drop_pages(ino)
        self.call(self.fs.unlink, parent, name)

    def drop_pages(self, ino: int) -> None:
        mapping = self.mappings.pop(ino, None)
        if mapping is not None:
            mapping.truncate_inode_pages(0)
            for index in list(mapping.pages):
                mapping.remove_from_page_cache(index)

    def sync(self) -> None:
        for mapping in list(self.mappings.values()):
            mapping.writepages()
        self.fs.sync_fs()
        self.bcache.sync()


class Ext2File(File):
    """An open ext2 file or directory."""

    def __init__(self, vfs: Vfs, inode, path: str, flags: int):
        super().__init__(path)
        self.vfs, self.inode, self.flags = vfs, inode, flags
        self.ino = inode.ino
        self.ra = FileRaState()
        self.dir_entries = None
        self.held = False

    def installed(self) -> None:
        """In a descriptor table: an unlinked file lives on while it is open (igrab)."""
        self.vfs.fs.igrab(self.inode)
        self.held = True

    def release(self) -> None:
        """The last descriptor closed: an unlinked inode's pages go, then the inode (iput)."""
        if not self.held:
            return
        self.held = False
        if self.inode.links_count == 0 and self.inode.i_count == 1:
            self.vfs.drop_pages(self.inode.ino)
        self.vfs.call(self.vfs.fs.iput, self.inode)

    @property
    def mode(self) -> int:
        return self.inode.mode

    @property
    def size(self) -> int:
        return self.inode.size

    @property
    def readable(self) -> bool:
        return self.flags & O_ACCMODE != O_WRONLY

    @property
    def writable(self) -> bool:
        return self.flags & O_ACCMODE != O_RDONLY

    def read_user(self, k, task, buf: int, count: int, pos: int) -> int:
        if not self.readable:
            raise SyscallError(EBADF)
        if self.inode.is_dir:
            raise SyscallError(EISDIR)
        return generic_file_read(k, task, self.vfs.mapping_of(self.inode), self.ra, buf, count, pos)

    def write_user(self, k, task, buf: int, count: int, pos: int) -> int:
        if not self.writable:
            raise SyscallError(EBADF)
        if self.flags & O_APPEND:
            pos = self.pos = self.inode.size
        n = generic_perform_write(k, task, self.vfs.mapping_of(self.inode), buf, count, pos)
        self.inode.mtime = self.inode.ctime = int(k.hw.clock.now_ns() // 10**9) + 1276473600
        return n

    def splice_read(self, k, task, pos: int, count: int) -> bytes:
        """sendfile's source: the bytes from the page cache (read in as a read would)."""
        if self.inode.is_dir:
            raise SyscallError(EISDIR)
        mapping = self.vfs.mapping_of(self.inode)
        end = min(self.inode.size, pos + count)
        out = bytearray()
        while pos < end:
            pfn = mapping.get_page(pos >> PAGE_SHIFT, self.ra, (end - pos + PAGE_SIZE - 1) >> PAGE_SHIFT)
            n = min(end - pos, PAGE_SIZE - (pos & (PAGE_SIZE - 1)))
            src = (pfn << PAGE_SHIFT) + (pos & (PAGE_SIZE - 1))
            out += k.ram[src:src + n]
            pos += n
        return bytes(out)

    def splice_write(self, k, task, data: bytes, pos: int) -> int:
        if self.flags & O_APPEND:
            pos = self.pos = self.inode.size
        n = generic_perform_write(k, task, self.vfs.mapping_of(self.inode), 0, len(data), pos, data=data)
        self.inode.mtime = self.inode.ctime = int(k.hw.clock.now_ns() // 10**9) + 1276473600
        return n

    def lseek(self, offset: int, whence: int) -> int:
        self.pos = generic_file_llseek_size(self.pos, offset, whence, self.inode.size, self.vfs.fs.max_size)
        if self.inode.is_dir and self.pos == 0:
            self.dir_entries = None
        return self.pos

    def fsync(self) -> None:
        self.vfs.mapping_of(self.inode).writepages()
        self.vfs.fs.write_inode(self.inode)
        self.vfs.bcache.sync()
        self.vfs.bcache.blk.flush()

    def getdents64(self, k, task, buf: int, count: int) -> int:
        if not self.inode.is_dir:
            raise SyscallError(ENOTDIR)
        if self.dir_entries is None:
            self.dir_entries = self.vfs.call(self.vfs.fs.readdir, self.inode)
        out = bytearray()
        while self.pos < len(self.dir_entries):
            name, ino, ft = self.dir_entries[self.pos]
            raw = fs_encode(name) if isinstance(name, str) else bytes(name)      # the bytes on disk
            reclen = (19 + len(raw) + 1 + 7) & ~7
            if len(out) + reclen > count:
                if not out:
                    raise SyscallError(EINVAL)
                break
            out += struct.pack("<QqHB", ino, self.pos + 1, reclen, DT_BY_FT.get(ft, 0)) + raw
            out += bytes(reclen - 19 - len(raw))
            self.pos += 1
        if out:
            k.mm.copy_to_user(task, buf, bytes(out))
        return len(out)


class MappedFile:
    """What exec and mmap see of an ext2 file: its path, size and page cache."""

    def __init__(self, vfs: Vfs, inode, path: str, ra: FileRaState = None):
        self.vfs, self.inode, self.path = vfs, inode, path
        self.mapping = vfs.mapping_of(inode)
        self.is_dir = inode.is_dir
        self.mapping_id = self.mapping.mapping_id
        self.ra = ra if ra is not None else FileRaState()      # an mmap of an open file shares its f_ra

    @property
    def size(self) -> int:
        return self.inode.size

    def read(self, offset: int, length: int) -> bytes:
        end = min(self.inode.size, offset + length)
        out = bytearray()
        k = self.vfs.k
        while offset < end:
            pfn = self.mapping.get_page(offset >> PAGE_SHIFT, self.ra, 1)
            n = min(end - offset, PAGE_SIZE - (offset & (PAGE_SIZE - 1)))
            src = (pfn << PAGE_SHIFT) + (offset & (PAGE_SIZE - 1))
            out += k.ram[src:src + n]
            offset += n
        return bytes(out)

    def find_get_page(self, index: int, vm_flags: int = 0):
        """filemap_fault(): the page, read in (a major fault, with read-around) if it is not cached."""
        pfn, major = self.mapping.filemap_fault(self.ra, vm_flags, index)
        if major:
            self.vfs.k.vmstat["pgmajfault"] += 1
        return pfn


__all__ = ["Vfs", "Ext2File", "MappedFile", "S_IFDIR", "S_IFLNK", "S_IFMT", "ESPIPE"]
