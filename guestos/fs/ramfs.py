"""ramfs: the root the initramfs unpacks into. Its files live only in the page
cache (pages in guest RAM), never on a disk, as Linux's ramfs."""
from ..mm.mm_types import NIL, PG_unevictable, PG_uptodate
from .cpio import S_IFDIR, S_IFREG, unpack_newc

S_IFMT = 0o170000


class Inode:
    def __init__(self, kernel, ino: int, path: str, mode: int):
        self.k = kernel
        self.ino = ino
        self.path = path
        self.mode = mode
        self.size = 0
        self.pages = {}                    # page index -> pfn (the inode's page cache)
        self.mapping_id = ino << 1         # page->mapping of its pages (low bit clear: file)

    @property
    def is_dir(self) -> bool:
        return self.mode & S_IFMT == S_IFDIR

    def find_get_page(self, index: int):
        return self.pages.get(index)

    def write_initial(self, data) -> None:
        """Fill the page cache at unpack time."""
        k = self.k
        for index in range(0, (len(data) + 4095) // 4096):
            pfn = k.page_alloc.alloc_pages()
            if pfn == NIL:
                raise MemoryError("initramfs: out of memory unpacking " + self.path)
            chunk = data[index * 4096:(index + 1) * 4096]
            k.ram[pfn << 12:(pfn << 12) + len(chunk)] = chunk
            if len(chunk) < 4096:
                k.ram[(pfn << 12) + len(chunk):(pfn + 1) << 12] = bytes(4096 - len(chunk))
            k.mem_map.set_flags(pfn, (1 << PG_uptodate) | (1 << PG_unevictable))
            k.mem_map.set_mapping(pfn, self.mapping_id, index)
            self.pages[index] = pfn
            k.vmstat["nr_file_pages"] += 1
            k.vmstat["nr_unevictable"] += 1
            k.lru.lru_cache_add(pfn)             # the unevictable list: ramfs pages never leave
        self.size = len(data)

    def read(self, offset: int, length: int) -> bytes:
        out = bytearray()
        end = min(self.size, offset + length)
        while offset < end:
            pfn = self.pages[offset >> 12]
            n = min(end - offset, 4096 - (offset & 0xFFF))
            out += self.k.ram[(pfn << 12) + (offset & 0xFFF):(pfn << 12) + (offset & 0xFFF) + n]
            offset += n
        return bytes(out)


class RamFs:
    def __init__(self, kernel):
        self.k = kernel
        self.inodes = {"/": Inode(kernel, 1, "/", S_IFDIR | 0o755)}

    def unpack_initramfs(self, archive) -> int:
        """populate_rootfs(): returns the number of files."""
        count = 0
        for name, mode, data in unpack_newc(archive):
            path = "/" + name.lstrip("/")
            parts = path.strip("/").split("/")
            for depth in range(1, len(parts)):
                d = "/" + "/".join(parts[:depth])
                self.inodes.setdefault(d, Inode(self.k, len(self.inodes) + 1, d, S_IFDIR | 0o755))
            inode = Inode(self.k, len(self.inodes) + 1, path, mode)
            if mode & S_IFMT == S_IFREG:
                inode.write_initial(data)
                count += 1
            self.inodes[path] = inode
        return count

    def lookup(self, path: str):
        return self.inodes.get("/" + path.strip("/") if path != "/" else "/")
