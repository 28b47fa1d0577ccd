"""Page tables, page faults and user copies (mm/memory.c, arch/x86/mm/fault.c, uaccess).

The native fast path in cython_ext.mmu does exactly what do_anonymous_page does
here (same pcp pages, same order, same struct page and PTE), so turning it off
changes speed, never the resulting memory state or counters.
"""
import struct

from ..kernel.errno import EFAULT, ENAMETOOLONG, ENOENT, ENOMEM, SyscallError
from .mm_types import NIL, PAGE_MAPPING_ANON, PG_locked, PG_lru, PG_pgtable, PG_swapbacked, PG_uptodate
from .swapfile import is_swap_pte, swp_slot
from .mmap import VM_EXEC, VM_GROWSDOWN, VM_READ, VM_SHARED, VM_WRITE, STACK_RLIMIT
from .pgtable import (LEVEL_SHIFTS, PAGE_SIZE, PF_INSTR, PF_PROT, PF_WRITE, PTE_PFN_MASK, _PAGE_DIRTY,
                      _PAGE_PRESENT, _PAGE_RW, _PAGE_TABLE, _PAGE_USER, _PAGE_NX, mk_pte, pte_pfn)

ANON_PAGE_FLAGS = (1 << PG_swapbacked) | (1 << PG_uptodate)
PGTABLE_PAGE_FLAGS = 1 << PG_pgtable

# fault results (VM_FAULT_* and the signal a failure becomes)
VM_FAULT_OK = 0
VM_FAULT_OOM = 1
SEGV_MAPERR = 1
SEGV_ACCERR = 2
BUS_ADRERR = 3

ZERO_PAGE = bytes(PAGE_SIZE)

TASK_SIZE_MAX = (1 << 47) - PAGE_SIZE       # the top of the user half, a guard page below the hole
PATH_MAX = 4096
_LAYOUTS = {}


def access_ok(addr: int, size: int) -> bool:
    """The whole range [addr, addr + size) lies in the user half (no wrap, nothing above it)."""
    return 0 <= size <= TASK_SIZE_MAX and 0 <= addr <= TASK_SIZE_MAX - size


class FaultError(Exception):
    """handle_mm_fault could not resolve the access: the signal to send."""

    def __init__(self, signal: str, code: int, address: int):
        super().__init__(signal)
        self.signal, self.code, self.address = signal, code, address


class MemoryManager:
    """The kernel's view of user memory: page tables, faults, copies."""

    def __init__(self, kernel):
        self.k = kernel
        self.ram = kernel.ram
        self.q = kernel.ram.cast("Q")
        self.mem_map = kernel.mem_map
        self.vmstat = kernel.vmstat

    # --- pages ---
    def alloc_zeroed_page(self) -> int:
        pfn = self.k.pcp.alloc()
        if pfn == NIL:
            raise FaultError("SIGKILL", VM_FAULT_OOM, 0)
        self.ram[pfn << 12:(pfn + 1) << 12] = ZERO_PAGE
        self.k.charge(self.k.costs.page_zero_ns)
        return pfn

    def pgd_alloc(self) -> int:
        pfn = self.alloc_zeroed_page()
        self.mem_map.set_flags(pfn, PGTABLE_PAGE_FLAGS)
        self.mem_map.set_mapcount(pfn, 0)
        self.vmstat["nr_page_table_pages"] += 1
        return pfn

    # --- page tables ---
    def pte_offset(self, mm, addr: int):
        """Word index of the PTE for addr, or None when a table above it is missing."""
        table = mm.pgd << 12
        q = self.q
        for shift in LEVEL_SHIFTS[:3]:
            e = q[(table >> 3) + ((addr >> shift) & 511)]
            if not e & _PAGE_PRESENT:
                return None
            table = e & PTE_PFN_MASK
        return (table >> 3) + ((addr >> 12) & 511)

    def pte_alloc(self, mm, addr: int) -> int:
        """Word index of the PTE for addr, allocating page tables on the way down."""
        table = mm.pgd << 12
        q = self.q
        for shift in LEVEL_SHIFTS[:3]:
            slot = (table >> 3) + ((addr >> shift) & 511)
            e = q[slot]
            if not e & _PAGE_PRESENT:
                pfn = self.alloc_zeroed_page()
                self.mem_map.set_flags(pfn, PGTABLE_PAGE_FLAGS)
                self.mem_map.set_mapcount(pfn, 0)
                self.k.lru_cache_add(mm, pfn, addr, 1)
                e = (pfn << 12) | _PAGE_TABLE
                q[slot] = e
            table = e & PTE_PFN_MASK
        return (table >> 3) + ((addr >> 12) & 511)

    # --- faults ---
    def handle_mm_fault(self, task, addr: int, error_code: int) -> None:
        """do_page_fault(): resolve or raise FaultError."""
        k = self.k
        mm = task.mm
        self.vmstat["pgfault"] += 1
        task.min_flt += 1
        k.charge(k.costs.page_fault_ns)
        vma = mm.find_vma(addr)
        if vma is None:
            raise FaultError("SIGSEGV", SEGV_MAPERR, addr)
        if addr < vma.vm_start:
            if not (vma.vm_flags & VM_GROWSDOWN) or vma.vm_end - (addr & ~0xFFF) > STACK_RLIMIT:
                raise FaultError("SIGSEGV", SEGV_MAPERR, addr)
            vma.vm_start = addr & ~0xFFF              # expand_stack()
            k.mm_changed(mm)
        write = bool(error_code & PF_WRITE)
        if write:
            if not vma.vm_flags & VM_WRITE:
                raise FaultError("SIGSEGV", SEGV_ACCERR, addr)
        elif error_code & PF_INSTR:
            if not vma.vm_flags & VM_EXEC:
                raise FaultError("SIGSEGV", SEGV_ACCERR, addr)
        elif not vma.vm_flags & (VM_READ | VM_WRITE | VM_EXEC):
            raise FaultError("SIGSEGV", SEGV_ACCERR, addr)
        slot = self.pte_alloc(mm, addr)
        pte = self.q[slot]
        if is_swap_pte(pte):
            self.do_swap_page(task, mm, vma, addr, slot, pte)
        elif not pte & _PAGE_PRESENT:
            if vma.is_anonymous:
                self.do_anonymous_page(mm, vma, addr, slot)
            elif write and not vma.vm_flags & VM_SHARED:
                self.do_cow_fault(mm, vma, addr, slot)
            else:
                self.do_read_fault(mm, vma, addr, slot)
        elif write and not pte & _PAGE_RW:
            if vma.vm_flags & VM_SHARED:
                self.q[slot] = pte | _PAGE_RW                 # write-enable after msync cleaned it
                k.flush_tlb()
            else:
                self.do_wp_page(mm, vma, addr, slot)
        elif error_code & PF_PROT:
            # present but not accessible (PROT_NONE leaf) although the VMA allows it
            self.q[slot] = pte | _PAGE_USER
            k.flush_tlb()

    def do_anonymous_page(self, mm, vma, addr: int, slot: int) -> None:
        pfn = self.alloc_zeroed_page()
        if self.q[slot]:                    # !pte_none: another thread mapped it while this one slept
            self.k.page_alloc.put_page(pfn)
            return
        self._map_new_anon(mm, vma, addr, slot, pfn)

    def _map_new_anon(self, mm, vma, addr, slot, pfn) -> None:
        mem_map = self.mem_map
        mem_map.set_flags(pfn, ANON_PAGE_FLAGS)
        mem_map.set_mapcount(pfn, 1)
        mem_map.set_mapping(pfn, vma.anon_id, addr >> 12)
        self.k.lru_cache_add(mm, pfn, addr, 0)
        self.q[slot] = mk_pte(pfn, bool(vma.vm_flags & VM_WRITE), bool(vma.vm_flags & VM_EXEC))

    def do_swap_page(self, task, mm, vma, addr: int, slot: int, pte: int) -> None:
        """The page went to swap: bring it back (a major fault) or find it in the swap cache."""
        k = self.k
        swap = k.swap
        entry = swp_slot(pte)
        mem_map = self.mem_map
        while True:
            pfn = swap.cache.get(entry)
            if pfn is not None and mem_map.test(pfn, PG_locked):     # another task is reading it in
                k.wait_event(lambda: swap.cache.get(entry) != pfn or not mem_map.test(pfn, PG_locked))
                if self.q[slot] != pte:
                    return
                continue
            if pfn is None:
                pfn = swap.swap_readpage(entry)
                if self.q[slot] != pte:         # !pte_same after the read: another thread took it in
                    return
                if pfn == NIL:
                    raise FaultError("SIGKILL", VM_FAULT_OOM, addr)
                if mem_map.test(pfn, PG_locked):
                    continue                    # another task's read, still in flight
                self.vmstat["pgmajfault"] += 1
                task.maj_flt += 1
            break
        first_mapping = mem_map.mapcount(pfn) == 0
        mem_map.set_refcount(pfn, mem_map.refcount(pfn) + 1)
        mem_map.set_mapcount(pfn, mem_map.mapcount(pfn) + 1)
        mem_map.set_mapping(pfn, vma.anon_id, addr >> 12)
        if first_mapping:
            if mem_map.test(pfn, PG_lru):            # it stayed on its LRU list while in the swap cache
                self.vmstat["nr_anon_pages"] += 1
                mm.rss_anon += 1
            else:
                self.k.lru_cache_add(mm, pfn, addr, 0)
        else:
            mm.rss_anon += 1
        swap.swap_free(entry)                        # this PTE no longer needs the slot
        shared = entry in swap.cache                 # another process still has it swapped out
        self.q[slot] = mk_pte(pfn, bool(vma.vm_flags & VM_WRITE) and not shared, bool(vma.vm_flags & VM_EXEC))

    def _file_page(self, vma, addr: int) -> int:
        index = vma.pgoff_of(addr)
        vm_file = vma.vm_file
        try:
            pfn = vm_file.find_get_page(index, vma.vm_flags) if hasattr(vm_file, "mapping") else \
                vm_file.find_get_page(index)
        except SyscallError as e:                    # filemap_fault's read failed
            raise FaultError("SIGKILL" if e.errno == ENOMEM else "SIGBUS",
                             VM_FAULT_OOM if e.errno == ENOMEM else BUS_ADRERR, addr) from None
        self.k.charge(self.k.costs.pagecache_lookup_ns)             # filemap_fault's find_get_page
        if pfn is None:
            raise FaultError("SIGBUS", BUS_ADRERR, addr)
        return pfn

    def do_read_fault(self, mm, vma, addr: int, slot: int) -> None:
        pfn = self._file_page(vma, addr)
        if self.q[slot]:                    # mapped by another thread while this one waited for the read
            return
        mem_map = self.mem_map
        mem_map.set_refcount(pfn, mem_map.refcount(pfn) + 1)
        if mem_map.mapcount(pfn) == 0:
            self.vmstat["nr_mapped"] += 1
        mem_map.set_mapcount(pfn, mem_map.mapcount(pfn) + 1)
        mm.rss_file += 1
        writable = bool(vma.vm_flags & VM_SHARED and vma.vm_flags & VM_WRITE)
        self.q[slot] = mk_pte(pfn, writable, bool(vma.vm_flags & VM_EXEC))

    def do_cow_fault(self, mm, vma, addr: int, slot: int) -> None:
        src = self._file_page(vma, addr)
        pfn = self.alloc_zeroed_page()
        if self.q[slot]:                    # mapped by another thread while this one slept
            self.k.page_alloc.put_page(pfn)
            return
        self.ram[pfn << 12:(pfn + 1) << 12] = self.ram[src << 12:(src + 1) << 12]
        self.k.charge(self.k.costs.page_zero_ns)
        self._map_new_anon(mm, vma, addr, slot, pfn)

    def do_wp_page(self, mm, vma, addr: int, slot: int) -> None:
        old_pte = self.q[slot]
        old = pte_pfn(old_pte)
        mem_map = self.mem_map
        if mem_map.mapping(old) & PAGE_MAPPING_ANON and mem_map.mapcount(old) == 1 \
                and mem_map.refcount(old) == 1:
            self.q[slot] = old_pte | _PAGE_RW          # reuse: we are its only user
        else:
            pfn = self.alloc_zeroed_page()
            if self.q[slot] != old_pte:         # !pte_same: another thread got there while this one slept
                self.k.page_alloc.put_page(pfn)
                return
            self.ram[pfn << 12:(pfn + 1) << 12] = self.ram[old << 12:(old + 1) << 12]
            self.page_remove_rmap(mm, old)
            self._map_new_anon(mm, vma, addr, slot, pfn)
        self.k.flush_tlb()

    # --- unmapping ---
    def page_remove_rmap(self, mm, pfn: int, pte: int = 0) -> None:
        mem_map = self.mem_map
        if pte & _PAGE_DIRTY and not mem_map.mapping(pfn) & PAGE_MAPPING_ANON:
            self.k.set_page_dirty_pfn(pfn)           # a shared file page written through its mapping
        anon = mem_map.mapping(pfn) & PAGE_MAPPING_ANON
        mapped = mem_map.mapcount(pfn) - 1
        mem_map.set_mapcount(pfn, mapped)
        if anon:
            mm.rss_anon -= 1
            if mapped == 0:
                self.vmstat["nr_anon_pages"] -= 1
        else:
            mm.rss_file -= 1
            if mapped == 0:
                self.vmstat["nr_mapped"] -= 1
        self.k.page_alloc.put_page(pfn)

    def zap_page_range(self, mm, start: int, end: int) -> int:
        """Clear the PTEs of [start, end) and drop their pages; returns pages unmapped."""
        q = self.q
        zapped = 0
        addr = start
        while addr < end:
            # one page table covers 2 MiB: scan its slots for this stretch of the range
            table_end = min(end, (addr | ((1 << 21) - 1)) + 1)
            slot = self.pte_offset(mm, addr)
            if slot is not None:
                for s in range(slot, slot + ((table_end - addr) >> 12)):
                    pte = q[s]
                    if pte & _PAGE_PRESENT:
                        q[s] = 0
                        self.page_remove_rmap(mm, pte_pfn(pte), pte)
                        zapped += 1
                    elif pte:                                # a swap entry
                        q[s] = 0
                        self.k.swap.swap_free(swp_slot(pte))
            addr = table_end
        if zapped:
            self.k.flush_tlb()
        return zapped

    def clean_dirty_ptes(self, mm, vma, start: int, end: int) -> int:
        """Move hardware dirty bits of a shared file mapping to the page cache (page_mkclean)."""
        q = self.q
        cleaned = 0
        for addr in range(start, end, PAGE_SIZE):
            slot = self.pte_offset(mm, addr)
            if slot is None:
                continue
            pte = q[slot]
            if pte & _PAGE_PRESENT and pte & _PAGE_DIRTY:
                q[slot] = pte & ~(_PAGE_DIRTY | _PAGE_RW)   # write-protect: the next write dirties again
                self.k.set_page_dirty_pfn(pte_pfn(pte))
                cleaned += 1
        if cleaned:
            self.k.flush_tlb()
        return cleaned

    def change_protection(self, mm, vma, start: int, end: int) -> None:
        """mprotect on present PTEs: write only ever removed (a write fault restores it)."""
        q = self.q
        flags = vma.vm_flags
        for addr in range(start, end, PAGE_SIZE):
            slot = self.pte_offset(mm, addr)
            if slot is None or not q[slot] & _PAGE_PRESENT:
                continue
            pte = q[slot]
            if not flags & VM_WRITE:
                pte &= ~_PAGE_RW
            pte = pte & ~_PAGE_NX if flags & VM_EXEC else pte | _PAGE_NX
            pte = pte | _PAGE_USER if flags & (VM_READ | VM_WRITE | VM_EXEC) else pte & ~_PAGE_USER
            q[slot] = pte
        self.k.flush_tlb()

    def free_pgtables(self, mm) -> None:
        """Free every page-table page and the pgd (at exit, after zapping)."""
        q = self.q

        def free_level(table_pfn: int, depth: int) -> None:
            if depth < 3:
                base = table_pfn << 9
                for i in range(512):
                    e = q[base + i]
                    if e & _PAGE_PRESENT:
                        free_level(pte_pfn(e), depth + 1)
            self.vmstat["nr_page_table_pages"] -= 1
            self.k.page_alloc.free_pages(table_pfn, 0)

        free_level(mm.pgd, 0)
        mm.pgd = 0

    # --- user copies (arch/x86/include/asm/uaccess.h, lib/usercopy.c, lib/strncpy_from_user.c) ---
    # Every user pointer and length a system call hands the kernel is checked here and only here:
    # outside the user half (kernel half, non-canonical, wrapping) is EFAULT before any page is
    # looked at; an unmapped or forbidden page is EFAULT when the copy reaches it.
    def user_page(self, task, addr: int, write: bool) -> int:
        """Physical address of addr for a kernel access on behalf of task, faulting it in."""
        if not 0 <= addr < TASK_SIZE_MAX:
            raise SyscallError(EFAULT)
        access = "write" if write else "read"
        for _ in range(3):
            paddr, _perms = self.k.hw.cpu.walk(addr, access)
            if paddr is not None:
                return paddr
            try:
                self.handle_mm_fault(task, addr, _perms & ~PF_INSTR)
            except FaultError as e:
                if e.signal == "SIGKILL":
                    raise                                 # out of memory: the OOM path
                raise SyscallError(EFAULT) from None      # the exception table's fixup
        raise SyscallError(EFAULT)

    def user_runs(self, task, addr: int, length: int, write: bool, partial: bool = False) -> list:
        """get_user_pages(): the physical runs behind a user range, faulting pages in. partial: the
        runs up to the first page that cannot be had (a short copy; EFAULT only if that is the first)."""
        if not access_ok(addr, length):
            raise SyscallError(EFAULT)
        runs = self.k.hw.cpu.user_segments(addr, length, write)
        if runs is not None:
            return runs
        runs = []
        end = addr + length
        while addr < end:
            try:
                paddr = self.user_page(task, addr, write)
            except SyscallError:
                if partial and runs:
                    break
                raise
            n = min(end - addr, PAGE_SIZE - (addr & 0xFFF))
            if runs and runs[-1][0] + runs[-1][1] == paddr:
                runs[-1] = (runs[-1][0], runs[-1][1] + n)
            else:
                runs.append((paddr, n))
            addr += n
        return runs

    def copy_from_user(self, task, addr: int, length: int) -> bytes:
        if not access_ok(addr, length):
            raise SyscallError(EFAULT)
        out = bytearray()
        ram = self.ram
        while length > 0:
            paddr = self.user_page(task, addr, False)
            n = min(length, PAGE_SIZE - (addr & 0xFFF))
            out += ram[paddr:paddr + n]
            addr += n
            length -= n
        self.k.charge(self.k.costs.copy_ns_per_kib * len(out) // 1024)
        return bytes(out)

    def copy_to_user(self, task, addr: int, data) -> None:
        """Bytes before a faulting page are written (as on Linux), then EFAULT."""
        data = memoryview(data).cast("B")
        if not access_ok(addr, len(data)):
            raise SyscallError(EFAULT)
        ram = self.ram
        pos = 0
        while pos < len(data):
            paddr = self.user_page(task, addr + pos, True)
            n = min(len(data) - pos, PAGE_SIZE - ((addr + pos) & 0xFFF))
            ram[paddr:paddr + n] = data[pos:pos + n]
            pos += n
        self.k.charge(self.k.costs.copy_ns_per_kib * len(data) // 1024)

    def copy_to_user_partial(self, task, addr: int, data) -> int:
        """copy_to_user() as calls that return a short count use it: the bytes written before the
        first page that faults (EFAULT only when that is none)."""
        data = memoryview(data).cast("B")
        if not access_ok(addr, len(data)):
            raise SyscallError(EFAULT)
        pos = 0
        try:
            while pos < len(data):
                paddr = self.user_page(task, addr + pos, True)
                n = min(len(data) - pos, PAGE_SIZE - ((addr + pos) & 0xFFF))
                self.ram[paddr:paddr + n] = data[pos:pos + n]
                pos += n
        except SyscallError:
            if pos == 0:
                raise
        self.k.charge(self.k.costs.copy_ns_per_kib * pos // 1024)
        return pos

    def getname(self, task, addr: int) -> bytes:
        """getname(): a path from the user; the empty path is ENOENT."""
        name = self.strncpy_from_user(task, addr)
        if not name:
            raise SyscallError(ENOENT)
        return name

    def get_user(self, task, addr: int, fmt: str) -> int:
        """get_user(): one value of a struct format ("<i", "<Q"...) from user memory."""
        layout = _LAYOUTS.get(fmt) or _LAYOUTS.setdefault(fmt, struct.Struct(fmt))
        return layout.unpack(self.copy_from_user(task, addr, layout.size))[0]

    def put_user(self, task, addr: int, fmt: str, value: int) -> None:
        """put_user(): one value, converted to the C type first (no host overflow)."""
        layout = _LAYOUTS.get(fmt) or _LAYOUTS.setdefault(fmt, struct.Struct(fmt))
        bits = layout.size * 8
        value &= (1 << bits) - 1
        if fmt[-1].islower() and value >> (bits - 1):
            value -= 1 << bits
        self.copy_to_user(task, addr, layout.pack(value))

    def strncpy_from_user(self, task, addr: int, limit: int = PATH_MAX) -> bytes:
        """getname(): a NUL-terminated string of fewer than `limit` bytes; longer is ENAMETOOLONG,
        a string running into an unmapped page or out of the user half EFAULT."""
        out = bytearray()
        while len(out) < limit:
            paddr = self.user_page(task, addr, False)
            n = min(PAGE_SIZE - (addr & 0xFFF), limit - len(out))
            chunk = bytes(self.ram[paddr:paddr + n])
            nul = chunk.find(b"\0")
            if nul >= 0:
                return bytes(out) + chunk[:nul]
            out += chunk
            addr += n
        raise SyscallError(ENAMETOOLONG)
