"""procfs (fs/proc/): /proc/meminfo, /proc/vmstat, /proc/self/*, /proc/uptime and the writable
/proc/sys/vm/* sysctls, with Linux's names and units."""
from ..kernel.errno import EACCES, EINVAL, ENOENT, SyscallError
from ..mm.mmap import VM_EXEC, VM_READ, VM_SHARED, VM_WRITE
from .file import File

S_IFREG = 0o100000

SYSCTL_VM_DEFAULTS = {
    "swappiness": 60, "min_free_kbytes": 0, "dirty_ratio": 20, "dirty_background_ratio": 10,
    "dirty_expire_centisecs": 3000, "dirty_writeback_centisecs": 500, "vfs_cache_pressure": 100,
    "drop_caches": 0, "overcommit_memory": 0, "page-cluster": 3,
    "min_unmapped_ratio": 1, "max_unmapped_ratio": 16,      # the 2010 series' knobs (v4)
    "unmapped_page_control": 0,     # ours: 0 off, 1 the series' kswapd pass, 2 the review's shrink_list bias
    "pagecache_dedup": 0,           # ours: reclaim drops what the host also caches first
}


def meminfo(k) -> dict:
    """/proc/meminfo in kB, as meminfo_proc_show() computes it."""
    vm = k.vmstat
    buffers = k.vfs.bcache.nrpages if k.vfs is not None else 0
    nr = k.lru.nr
    inactive_anon, active_anon, inactive_file, active_file, unevictable = nr
    free = k.page_alloc.nr_free_pages
    cached = vm["nr_file_pages"] - buffers
    low = k.page_alloc.zone.watermark[1]
    available = max(0, free - low + inactive_file + active_file // 2)
    pages = {
        "MemTotal": k.totalram_pages, "MemFree": free, "MemAvailable": available, "Buffers": buffers,
        "Cached": cached, "SwapCached": len(k.swap.cache) if k.swap else 0,
        "Active": active_anon + active_file, "Inactive": inactive_anon + inactive_file,
        "Active(anon)": active_anon, "Inactive(anon)": inactive_anon,
        "Active(file)": active_file, "Inactive(file)": inactive_file,
        "Unevictable": unevictable, "Mlocked": 0,
        "SwapTotal": (k.swap.pages - 1) if k.swap else 0, "SwapFree": k.swap.nr_free if k.swap else 0,
        "Dirty": vm["nr_dirty"], "Writeback": vm["nr_writeback"], "AnonPages": vm["nr_anon_pages"],
        "Mapped": vm["nr_mapped"], "Shmem": 0, "PageTables": vm["nr_page_table_pages"],
    }
    return {name: n * 4 for name, n in pages.items()}


def _render_meminfo(k, task) -> str:
    return "".join(f"{name + ':':<16}{kb:>8} kB\n" for name, kb in meminfo(k).items())


def _render_vmstat(k, task) -> str:
    return "".join(f"{name} {value}\n" for name, value in k.vmstat_snapshot().items())


def _render_maps(k, task) -> str:
    lines = []
    for v in task.mm.vmas:
        perms = ("r" if v.vm_flags & VM_READ else "-") + ("w" if v.vm_flags & VM_WRITE else "-") + \
                ("x" if v.vm_flags & VM_EXEC else "-") + ("s" if v.vm_flags & VM_SHARED else "p")
        offset = v.vm_pgoff << 12 if v.vm_file is not None else 0
        ino = getattr(getattr(v.vm_file, "inode", v.vm_file), "ino", 0) if v.vm_file is not None else 0
        name = v.name if v.name not in ("bss", "") else ""
        lines.append(f"{v.vm_start:08x}-{v.vm_end:08x} {perms} {offset:08x} 00:00 {ino:<10d} {name}".rstrip())
    return "\n".join(lines) + "\n"


def _render_status(k, task) -> str:
    rss = (task.mm.rss_anon + task.mm.rss_file) * 4 if task.mm else 0
    return (f"Name:\t{task.comm}\nState:\tR (running)\nPid:\t{task.pid}\n"
            f"PPid:\t{task.parent.pid if task.parent else 0}\nVmRSS:\t{rss:8d} kB\n"
            f"RssAnon:\t{(task.mm.rss_anon if task.mm else 0) * 4:8d} kB\n"
            f"RssFile:\t{(task.mm.rss_file if task.mm else 0) * 4:8d} kB\n")


def _render_uptime(k, task) -> str:
    s = k.hw.clock.now_ns() / 1e9
    return f"{s:.2f} {s:.2f}\n"


FILES = {"meminfo": _render_meminfo, "vmstat": _render_vmstat, "uptime": _render_uptime,
         "self/maps": _render_maps, "self/status": _render_status}


class ProcFile(File):
    """Content made when opened (as seq_file does on the first read)."""
    mode = S_IFREG | 0o444

    def __init__(self, path: str, text: str, on_write=None):
        super().__init__(path)
        self.data = text.encode()
        self.on_write = on_write
        if on_write is not None:
            self.mode = S_IFREG | 0o644

    @property
    def size(self) -> int:
        return 0                     # as procfs: st_size 0, read until EOF

    def read(self, task, length: int) -> bytes:
        out = self.data[self.pos:self.pos + length]
        self.pos += len(out)
        return out

    def write(self, task, data: bytes) -> int:
        if self.on_write is None:
            raise SyscallError(EACCES)
        self.on_write(data)
        return len(data)

    def lseek(self, offset: int, whence: int) -> int:
        base = {0: 0, 1: self.pos, 2: len(self.data)}.get(whence)
        if base is None or base + offset < 0:
            raise SyscallError(EINVAL)
        self.pos = base + offset
        return self.pos


def open_proc(k, task, path: str) -> File:
    rel = path[len("/proc/"):].strip("/")
    if rel.startswith(f"{task.pid}/"):
        rel = "self/" + rel.split("/", 1)[1]
    if rel in FILES:
        return ProcFile(path, FILES[rel](k, task))
    if rel.startswith("sys/vm/"):
        name = rel[len("sys/vm/"):]
        if name not in k.sysctl_vm:
            raise SyscallError(ENOENT)
        return ProcFile(path, f"{k.sysctl_vm[name]}\n", lambda data: k.set_sysctl_vm(name, data))
    raise SyscallError(ENOENT)
