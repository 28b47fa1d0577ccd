"""Address spaces: mm_struct, vm_area_struct, mmap/munmap/mprotect/brk (mm/mmap.c, mm/mprotect.c)."""
import bisect

from ..record import Record
from .pgtable import PAGE_SIZE, page_align

TASK_SIZE = 0x7FFFFFFFF000
STACK_TOP = TASK_SIZE
STACK_RLIMIT = 8 << 20
MMAP_BASE = STACK_TOP - STACK_RLIMIT - (1 << 30)     # top-down area below the stack gap
MMAP_MIN_ADDR = 0x10000

VM_READ = 0x1
VM_WRITE = 0x2
VM_EXEC = 0x4
VM_SHARED = 0x8
VM_GROWSDOWN = 0x100

PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_PRIVATE = 0x01, 0x02
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_GROWSDOWN = 0x100
MAP_POPULATE = 0x8000
MAP_FIXED_NOREPLACE = 0x100000

# flags of the native fast path's VMA mirror
NATIVE_VMA_ANON = 8


def calc_vm_prot_bits(prot: int) -> int:
    return (VM_READ if prot & PROT_READ else 0) | (VM_WRITE if prot & PROT_WRITE else 0) | \
        (VM_EXEC if prot & PROT_EXEC else 0)


class VMA(Record):
    """vm_area_struct: [vm_start, vm_end) with flags, and a file or anonymous memory. (A plain class, as
    MM: a dataclass would compile its methods at every start.)"""

    def __init__(self, vm_start: int, vm_end: int, vm_flags: int, vm_file=None, vm_pgoff: int = 0,
                 anon_id: int = 0, name: str = ""):
        self.vm_start = vm_start
        self.vm_end = vm_end
        self.vm_flags = vm_flags
        self.vm_file = vm_file      # an inode with a page cache, or None for anonymous memory
        self.vm_pgoff = vm_pgoff    # file offset of vm_start, in pages
        self.anon_id = anon_id      # page->mapping value of its anonymous pages
        self.name = name


    @property
    def is_anonymous(self) -> bool:
        return self.vm_file is None

    def pgoff_of(self, addr: int) -> int:
        return self.vm_pgoff + ((addr - self.vm_start) >> 12)

    def split_at(self, addr: int) -> "VMA":
        """Cut at addr; self keeps [start, addr), the returned VMA is [addr, end)."""
        tail = VMA(addr, self.vm_end, self.vm_flags, self.vm_file,
                   self.pgoff_of(addr) if self.vm_file else 0, self.anon_id, self.name)
        self.vm_end = addr
        return tail


class MM(Record):
    """mm_struct of one process."""

    def __init__(self, pgd: int, vmas: list = None, start_brk: int = 0, brk: int = 0, start_stack: int = 0,
                 rss_anon: int = 0, rss_file: int = 0, nr_ptes: int = 0, users: int = 1):
        self.pgd = pgd                                  # pfn of the top-level page table
        self.vmas = [] if vmas is None else vmas        # sorted by vm_start, non-overlapping
        self.start_brk = start_brk
        self.brk = brk
        self.start_stack = start_stack
        self.rss_anon = rss_anon
        self.rss_file = rss_file
        self.nr_ptes = nr_ptes
        self.users = users                              # tasks sharing it (vfork children)


    # --- lookup ---
    def find_vma(self, addr: int):
        """The first VMA with vm_end > addr (it may start above addr), as Linux's find_vma."""
        i = bisect.bisect_right(self._ends(), addr)
        return self.vmas[i] if i < len(self.vmas) else None

    def _ends(self):
        return [v.vm_end for v in self.vmas]

    def overlapping(self, start: int, end: int):
        return [v for v in self.vmas if v.vm_start < end and v.vm_end > start]

    anon_ids = None                          # shared counter, set at boot: ids unique kernel-wide

    def new_anon_id(self) -> int:
        return (next(MM.anon_ids) << 1) | 1           # PAGE_MAPPING_ANON in the low bit

    # --- structure ---
    def insert(self, vma: VMA) -> VMA:
        """Insert, merging with an anonymous neighbour that has the same flags (vma_merge)."""
        starts = [v.vm_start for v in self.vmas]
        i = bisect.bisect_left(starts, vma.vm_start)
        if vma.is_anonymous:
            prev = self.vmas[i - 1] if i > 0 else None
            nxt = self.vmas[i] if i < len(self.vmas) else None
            if prev and prev.is_anonymous and prev.vm_end == vma.vm_start and prev.vm_flags == vma.vm_flags:
                prev.vm_end = vma.vm_end
                vma = prev
                if nxt and nxt.is_anonymous and nxt.vm_start == vma.vm_end and nxt.vm_flags == vma.vm_flags \
                        and nxt.anon_id == vma.anon_id:
                    vma.vm_end = nxt.vm_end
                    self.vmas.remove(nxt)
                return vma
            if nxt and nxt.is_anonymous and nxt.vm_start == vma.vm_end and nxt.vm_flags == vma.vm_flags:
                nxt.vm_start = vma.vm_start
                return nxt
        self.vmas.insert(i, vma)
        return vma

    def carve(self, start: int, end: int) -> list:
        """Split VMAs at start and end and return those inside [start, end)."""
        out = []
        for v in list(self.overlapping(start, end)):
            if v.vm_start < start:
                tail = v.split_at(start)
                self.vmas.insert(self.vmas.index(v) + 1, tail)
                v = tail
            if v.vm_end > end:
                tail = v.split_at(end)
                self.vmas.insert(self.vmas.index(v) + 1, tail)
            out.append(v)
        return out

    def get_unmapped_area(self, length: int, hint: int = 0):
        """Top-down search below MMAP_BASE (arch_get_unmapped_area_topdown)."""
        length = page_align(length)
        if hint:
            hint = page_align(hint)
            if MMAP_MIN_ADDR <= hint and hint + length <= TASK_SIZE and not self.overlapping(hint, hint + length):
                return hint
        top = MMAP_BASE
        for v in reversed(self.vmas):
            if v.vm_start >= top:
                continue
            if v.vm_end <= top - length:
                return top - length
            top = v.vm_start
        if top - length >= max(MMAP_MIN_ADDR, self.brk + PAGE_SIZE):
            return top - length
        return None

    def native_vmas(self):
        """The VMA mirror the native anonymous-fault path searches."""
        out = []
        for v in self.vmas:
            flags = v.vm_flags & (VM_READ | VM_WRITE | VM_EXEC)
            if v.is_anonymous and not v.vm_flags & VM_SHARED:
                flags |= NATIVE_VMA_ANON
            out.append((v.vm_start, v.vm_end, flags, v.anon_id))
        return out
