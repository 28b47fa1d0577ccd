"""brk, mmap, munmap, mprotect, madvise (mm/mmap.c, mm/mprotect.c, mm/madvise.c)."""
from ..kernel.errno import EEXIST, EINVAL, ENOMEM, EOVERFLOW, SyscallError
from .mmap import (MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_POPULATE, MAP_PRIVATE,
                   MAP_SHARED, MMAP_MIN_ADDR, TASK_SIZE, VM_READ, VM_SHARED, VM_WRITE, VMA,
                   calc_vm_prot_bits)
from .filemap import VM_RAND_READ, VM_SEQ_READ
from .pgtable import PAGE_SIZE, page_align

MADV_DONTNEED = 4
MADV_READ_HINTS = {0: 0, 1: VM_RAND_READ, 2: VM_SEQ_READ}     # MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL
MAP_TYPE, MAP_SHARED_VALIDATE = 0x0F, 0x03
MAP_HUGETLB, MAP_HUGE_SHIFT = 0x40000, 26
PROT_SEM, PROT_GROWSDOWN, PROT_GROWSUP = 0x8, 0x01000000, 0x02000000
# the advice values Linux 6.x accepts (madvise_behavior_valid)
MADV_VALID = {0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 100, 101}


def sys_brk(k, task, brk, *_):
    mm = task.mm
    if brk < mm.start_brk:
        return mm.brk
    new_end, old_end = page_align(brk), page_align(mm.brk)
    if new_end < old_end:
        do_munmap(k, mm, new_end, old_end - new_end)
    elif new_end > old_end:
        if mm.overlapping(old_end, new_end) or new_end > TASK_SIZE:
            return mm.brk
        mm.insert(VMA(old_end, new_end, VM_READ | VM_WRITE, None, 0, mm.new_anon_id(), "[heap]"))
        k.mm_changed(mm)
    mm.brk = brk
    return brk


def do_munmap(k, mm, start: int, length: int) -> None:
    end = start + page_align(length)
    doomed = mm.carve(start, end)
    for vma in doomed:
        k.mm.zap_page_range(mm, vma.vm_start, vma.vm_end)
        mm.vmas.remove(vma)
        if vma.vm_flags & 4:
            k.hw.cpu.flush_code()
    k.mm_changed(mm)


def sys_mmap(k, task, addr, length, prot, flags, fd, offset):
    """x86's sys_mmap, ksys_mmap_pgoff and do_mmap, their checks in their order."""
    mm = task.mm
    if offset & (PAGE_SIZE - 1):
        raise SyscallError(EINVAL)
    f = None
    if not flags & MAP_ANONYMOUS:
        f = k.fds_of(task).get(fd)                          # EBADF before anything else looks
        if flags & MAP_HUGETLB:
            raise SyscallError(EINVAL)                      # not a hugetlbfs file
    elif flags & MAP_HUGETLB:
        if (flags >> MAP_HUGE_SHIFT) & 0x3F not in (0, 21, 30):
            raise SyscallError(EINVAL)                      # no such huge page size
        raise SyscallError(ENOMEM)                          # no huge pages are reserved here
    if not length:
        raise SyscallError(EINVAL)
    length = page_align(length)
    if length > TASK_SIZE - MMAP_MIN_ADDR:                  # get_unmapped_area(): it can never fit
        raise SyscallError(ENOMEM)
    pgoff = offset >> 12
    if pgoff + (length >> 12) >= 1 << 64:
        raise SyscallError(EOVERFLOW)
    if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
        if addr & (PAGE_SIZE - 1):
            raise SyscallError(EINVAL)
        if addr > TASK_SIZE - length:
            raise SyscallError(ENOMEM)
    else:
        addr &= ~(PAGE_SIZE - 1)                            # only a hint
    if flags & MAP_TYPE not in (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE):
        raise SyscallError(EINVAL)
    vm_flags = calc_vm_prot_bits(prot) | (VM_SHARED if flags & MAP_SHARED else 0)
    vm_file, name = None, ""
    if f is not None:
        vm_file, name = k.file_for_mmap(f, vm_flags)
    else:
        pgoff = 0
    if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
        if addr < MMAP_MIN_ADDR:
            raise SyscallError(EINVAL if flags & MAP_FIXED else ENOMEM)
        if mm.overlapping(addr, addr + length):
            if flags & MAP_FIXED_NOREPLACE and not flags & MAP_FIXED:
                raise SyscallError(EEXIST)
            do_munmap(k, mm, addr, length)
        start = addr
    else:
        start = mm.get_unmapped_area(length, addr)
        if start is None:
            raise SyscallError(ENOMEM)
    mm.insert(VMA(start, start + length, vm_flags, vm_file, pgoff, mm.new_anon_id(), name))
    k.mm_changed(mm)
    if flags & MAP_POPULATE:                     # mm_populate(): a page that cannot be had stays unpopulated
        for a in range(start, start + length, PAGE_SIZE):
            try:
                k.mm.user_page(task, a, bool(vm_flags & VM_WRITE))
            except SyscallError:
                break
    return start


def sys_munmap(k, task, addr, length, *_):
    if addr & (PAGE_SIZE - 1) or not length or addr + length > TASK_SIZE:
        raise SyscallError(EINVAL)
    do_munmap(k, task.mm, addr, length)
    return 0


def _has_hole(mm, start: int, end: int) -> bool:
    covered = sum(min(end, v.vm_end) - max(start, v.vm_start) for v in mm.overlapping(start, end))
    return covered != end - start


def sys_mprotect(k, task, start, length, prot, *_):
    """do_mprotect_pkey()'s checks in its order."""
    if prot & (PROT_GROWSDOWN | PROT_GROWSUP) == PROT_GROWSDOWN | PROT_GROWSUP:
        raise SyscallError(EINVAL)                 # cannot grow both ways
    prot &= ~(PROT_GROWSDOWN | PROT_GROWSUP)
    if start & (PAGE_SIZE - 1):
        raise SyscallError(EINVAL)
    if not length:
        return 0
    mm = task.mm
    end = start + page_align(length)
    if end <= start or end >= 1 << 64:
        raise SyscallError(ENOMEM)
    if prot & ~(7 | PROT_SEM):
        raise SyscallError(EINVAL)
    if _has_hole(mm, start, end):
        raise SyscallError(ENOMEM)              # a hole in the range
    vmas = mm.carve(start, end)
    for vma in vmas:
        vma.vm_flags = (vma.vm_flags & ~7) | calc_vm_prot_bits(prot)
        k.mm.change_protection(mm, vma, vma.vm_start, vma.vm_end)
    k.mm_changed(mm)
    k.hw.cpu.flush_code(start, end)
    return 0


MS_ASYNC, MS_INVALIDATE, MS_SYNC = 1, 2, 4


def sys_msync(k, task, start, length, flags, *_):
    """Dirty bits of shared file mappings become dirty pages; MS_SYNC writes them back. A range that
    wraps or has a hole is ENOMEM (after doing the mapped parts, as Linux does)."""
    if start & (PAGE_SIZE - 1) or flags & ~7 or (flags & MS_ASYNC and flags & MS_SYNC):
        raise SyscallError(EINVAL)
    end = start + (page_align(length) & ((1 << 64) - 1))       # PAGE_ALIGN wraps in 64 bits
    if end >= 1 << 64:
        raise SyscallError(ENOMEM)
    if end == start:
        return 0
    for vma in task.mm.overlapping(start, end):
        if vma.vm_file is None or not vma.vm_flags & VM_SHARED:
            continue
        k.mm.clean_dirty_ptes(task.mm, vma, max(start, vma.vm_start), min(end, vma.vm_end))
        mapping = getattr(vma.vm_file, "mapping", None)
        if flags & MS_SYNC and mapping is not None:
            mapping.writepages()
    if _has_hole(task.mm, start, end):
        raise SyscallError(ENOMEM)
    return 0


def sys_madvise(k, task, start, length, advice, *_):
    """do_madvise(): bad advice, alignment or a wrapping range EINVAL; the mapped parts advised;
    a hole ENOMEM. MADV_DONTNEED drops pages; MADV_NORMAL, MADV_RANDOM and MADV_SEQUENTIAL set the read
    hints of mapped files; other advice changes nothing here."""
    if advice not in MADV_VALID or start & (PAGE_SIZE - 1):
        raise SyscallError(EINVAL)
    end = start + page_align(length)
    if length and end == start or end < start or end >= 1 << 64:
        raise SyscallError(EINVAL)
    if end == start:
        return 0
    if advice == MADV_DONTNEED:
        for vma in task.mm.overlapping(start, end):
            k.mm.zap_page_range(task.mm, max(start, vma.vm_start), min(end, vma.vm_end))
    elif advice in MADV_READ_HINTS:
        # madvise_behavior(): the VMAs' read hints, which filemap_fault's readahead follows
        for vma in task.mm.carve(start, end):
            vma.vm_flags = vma.vm_flags & ~(VM_RAND_READ | VM_SEQ_READ) | MADV_READ_HINTS[advice]
        k.mm_changed(task.mm)
    if _has_hole(task.mm, start, end):
        raise SyscallError(ENOMEM)
    return 0
