# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Native hardware for the vCPU: the x86-64 page walker behind Unicorn's TLB fill,
instruction counting for the virtual clock and preemption, the syscall exit, and
the kernel's anonymous-fault fast path (Linux's do_anonymous_page, natively).

Unicorn calls these through C function pointers; nothing here takes the GIL.
We never link libunicorn: the function pointers come from the copy that the
Python binding already loaded.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t
from libc.string cimport memset
from libc.stdlib cimport calloc, free

cdef extern from *:
    """
    #define UC_PROT_READ (1)
    #define UC_PROT_WRITE (2)
    #define UC_PROT_EXEC (4)
    #define UC_MEM_READ (16)
    #define UC_MEM_WRITE (17)
    #define UC_MEM_FETCH (18)
    #define UC_HOOK_INTR (1)
    #define UC_HOOK_INSN (2)
    #define UC_HOOK_BLOCK (8)
    #define UC_HOOK_TLB_FILL (131072)
    #define UC_X86_INS_SYSCALL (699)
    #define UC_X86_INS_SYSENTER (700)
    #define UC_X86_INS_IN (218)
    #define UC_X86_INS_OUT (500)
    #define UC_CTL_TB_REQUEST_CACHE_RW (int)(8u | (2u << 26) | (3u << 30))
    #define UC_CTL_TLB_FLUSH_W (int)(11u | (0u << 26) | (1u << 30))
    #define PTE_P (1 << 0)
    #define PTE_RW (1 << 1)
    #define PTE_US (1 << 2)
    #define PTE_A (1 << 5)
    #define PTE_D (1 << 6)
    #define PTE_PS (1 << 7)
    #define PTE_NX (1ULL << 63)
    #define PTE_ADDR 0x000ffffffffff000ULL
    #define USER_TOP (1ULL << 47)
    #define PF_PROT (1)
    #define PF_WRITE (2)
    #define PF_USER (4)
    #define PF_RSVD (8)
    #define PF_INSTR (16)
    #define EXIT_NONE (0)
    #define EXIT_SYSCALL (1)
    #define EXIT_PAGE_FAULT (2)
    #define EXIT_QUANTUM (3)
    #define EXIT_BACKING (4)
    #define EXIT_TRAP (9)
    #define CPU_AREA_VADDR 0xfffffe0000000000ULL
    #define BLOCK_CACHE_BITS (16)
    #define GOLDEN 0x9E3779B97F4A7C15ULL
    #define VMA_READ (1)
    #define VMA_WRITE (2)
    #define VMA_EXEC (4)
    #define VMA_ANON (8)
    """
    const long long UC_PROT_READ
    const long long UC_PROT_WRITE
    const long long UC_PROT_EXEC
    const long long UC_MEM_READ
    const long long UC_MEM_WRITE
    const long long UC_MEM_FETCH
    const long long UC_HOOK_INTR
    const long long UC_HOOK_INSN
    const long long UC_HOOK_BLOCK
    const long long UC_HOOK_TLB_FILL
    const long long UC_X86_INS_SYSCALL
    const long long UC_X86_INS_SYSENTER
    const long long UC_X86_INS_IN
    const long long UC_X86_INS_OUT
    const long long UC_CTL_TB_REQUEST_CACHE_RW
    const long long UC_CTL_TLB_FLUSH_W
    const long long PTE_P
    const long long PTE_RW
    const long long PTE_US
    const long long PTE_A
    const long long PTE_D
    const long long PTE_PS
    const unsigned long long PTE_NX
    const unsigned long long PTE_ADDR
    const unsigned long long USER_TOP
    const long long PF_PROT
    const long long PF_WRITE
    const long long PF_USER
    const long long PF_RSVD
    const long long PF_INSTR
    const long long EXIT_NONE
    const long long EXIT_SYSCALL
    const long long EXIT_PAGE_FAULT
    const long long EXIT_QUANTUM
    const long long EXIT_BACKING
    const long long EXIT_TRAP
    const unsigned long long CPU_AREA_VADDR
    const long long BLOCK_CACHE_BITS
    const unsigned long long GOLDEN
    const long long VMA_READ
    const long long VMA_WRITE
    const long long VMA_EXEC
    const long long VMA_ANON


# --- Unicorn ABI (unicorn 2.1.4, include/unicorn/unicorn.h) -------------------
cdef struct uc_tlb_entry:
    uint64_t paddr
    uint32_t perms

cdef struct uc_tb:
    uint64_t pc
    uint16_t icount
    uint16_t size

ctypedef int (*uc_emu_stop_fn)(void *uc) noexcept nogil
ctypedef int (*uc_emu_start_fn)(void *uc, uint64_t begin, uint64_t until, uint64_t timeout,
                                size_t count) noexcept nogil
ctypedef int (*uc_reg_read_fn)(void *uc, int regid, void *value) noexcept nogil
ctypedef int (*uc_reg_write_fn)(void *uc, int regid, const void *value) noexcept nogil
ctypedef int (*uc_ctl_fn)(void *uc, int control, ...) noexcept nogil
ctypedef int (*uc_hook_add_fn)(void *uc, size_t *hh, int htype, void *callback,
                               void *user_data, uint64_t begin, uint64_t end, ...) noexcept nogil

# UC_CTL_READ_WRITE(UC_CTL_TB_REQUEST_CACHE, 2) = 8 | (2 << 26) | (3 << 30)

# --- x86-64 paging ------------------------------------------------------------

# #PF error code bits

# Exit reasons (mirrored in vmm/cpu.py)


# --- kernel fast path: struct page and VMA mirrors ------------------------------

cdef struct anon_fastpath:
    int enabled
    # VMAs of the current mm, sorted by start
    uint64_t *vma_start
    uint64_t *vma_end
    uint32_t *vma_flags
    uint64_t *vma_anon_id
    int nr_vmas
    int vma_capacity
    # per-cpu free frames (Linux's pcp list), refilled by the kernel
    uint32_t *pcp
    int pcp_count
    int pcp_capacity
    # pages mapped natively, drained by the kernel (like lru_add pagevecs)
    uint32_t *new_pfn
    uint64_t *new_vaddr
    uint8_t *new_kind        # 0 = anon page, 1 = page-table page
    int new_count
    int new_capacity
    # struct page layout in guest RAM
    uint64_t mem_map_paddr
    uint32_t struct_page_size
    uint32_t off_flags
    uint32_t off_refcount
    uint32_t off_mapcount
    uint32_t off_mapping
    uint32_t off_index
    uint64_t anon_page_flags
    uint64_t pgtable_page_flags
    uint64_t pgfault          # faults resolved here
    uint64_t pgtable_pages

cdef struct vcpu_state:
    void *uc
    uint8_t *ram
    uint64_t ram_size
    uint64_t cr3
    uint8_t *backed           # per frame: 1 when the host backs it
    int stop_on_violation
    # last exit
    int exit_reason
    uint64_t fault_vaddr
    int fault_access
    uint32_t fault_error
    uint32_t trap_vector      # the CPU exception or `int n` vector of an EXIT_TRAP
    uint64_t trap_rip         # the faulting instruction, when RIP has moved past it (sysenter); else 0
    int io_pending            # an IN/OUT ran: the I/O breakpoint (#DB) right after it is its #GP
    int io_trap               # EXIT_TRAP came from port I/O: RIP is after the instruction
    uint64_t io_regs[4]       # rax, rcx, rsi, rdi before it: a faulting instruction changes nothing
    # the CPU area (GDT, the sysretq trampoline) is mapped at CPU_AREA_VADDR for this many TLB fills:
    # while entering user mode, and for one descriptor load from user mode (a supervisor access)
    int cpu_area_open
    uint64_t cpu_area_paddr
    # violations (touching unbacked frames)
    uint64_t violations
    uint64_t last_violation_pfn
    uint64_t last_violation_vaddr
    # instruction counting
    uint64_t icount
    uint64_t deadline
    uint64_t *bc_pc
    uint32_t *bc_val          # icount | size << 16
    uint64_t bc_misses
    uint64_t tlb_fills
    # the block being executed, to uncount its unretired tail after a mid-block exit
    uint64_t block_pc
    uint32_t block_size
    uint32_t block_icount
    uc_emu_stop_fn emu_stop
    uc_ctl_fn ctl
    uc_reg_read_fn reg_read
    uc_reg_write_fn reg_write
    anon_fastpath *fast


cdef inline uint64_t *pte_at(vcpu_state *st, uint64_t paddr) noexcept nogil:
    if paddr + 8 > st.ram_size:
        return NULL
    return <uint64_t *>(st.ram + paddr)


cdef int walk(vcpu_state *st, uint64_t vaddr, int access, uint64_t *paddr_out,
              uint32_t *perms_out, uint32_t *error_out) noexcept nogil:
    """Walk the 4-level tables at CR3 as the hardware does. 0 on success."""
    cdef uint64_t table = st.cr3 & PTE_ADDR
    cdef uint64_t *slot
    cdef uint64_t e = 0, page_size = 0
    cdef int level, shift
    cdef bint rw = True, us = True, nx = False
    cdef uint32_t error = PF_USER
    if access == UC_MEM_WRITE:
        error |= PF_WRITE
    elif access == UC_MEM_FETCH:
        error |= PF_INSTR
    if vaddr >= USER_TOP:
        error_out[0] = error | PF_PROT
        return -1
    for level in range(4):
        shift = 39 - 9 * level
        slot = pte_at(st, table + ((vaddr >> shift) & 511) * 8)
        if slot == NULL:
            error_out[0] = error | PF_RSVD
            return -1
        e = slot[0]
        if not (e & PTE_P):
            error_out[0] = error
            return -1
        rw = rw and (e & PTE_RW) != 0
        us = us and (e & PTE_US) != 0
        nx = nx or (e & PTE_NX) != 0
        if (level == 1 or level == 2) and (e & PTE_PS):
            page_size = (<uint64_t>1) << shift
            break
        if level == 3:
            page_size = 4096
            break
        if not (e & PTE_A):
            slot[0] = e | PTE_A
        table = e & PTE_ADDR
    # leaf permission checks (CPL 3 semantics)
    if not us or (access == UC_MEM_WRITE and not rw) or (access == UC_MEM_FETCH and nx):
        error_out[0] = error | PF_PROT
        return -1
    cdef uint64_t newe = e | PTE_A
    if access == UC_MEM_WRITE:
        newe |= PTE_D
    if newe != e:
        slot[0] = newe
    paddr_out[0] = (e & PTE_ADDR & ~(page_size - 1)) | (vaddr & (page_size - 1) & ~(<uint64_t>0xfff))
    # A clean page is filled read-only so that the first write comes back to set D.
    cdef uint32_t perms = UC_PROT_READ
    if not nx:
        perms |= UC_PROT_EXEC
    if rw and (newe & PTE_D):
        perms |= UC_PROT_WRITE
    perms_out[0] = perms
    return 0


cdef uint64_t take_frame(anon_fastpath *fp, vcpu_state *st) noexcept nogil:
    fp.pcp_count -= 1
    cdef uint64_t pfn = fp.pcp[fp.pcp_count]
    memset(st.ram + pfn * 4096, 0, 4096)
    return pfn


cdef void init_struct_page(anon_fastpath *fp, vcpu_state *st, uint64_t pfn, uint64_t flags,
                           int32_t mapcount, uint64_t mapping, uint64_t index) noexcept nogil:
    cdef uint8_t *page = st.ram + fp.mem_map_paddr + pfn * fp.struct_page_size
    (<uint64_t *>(page + fp.off_flags))[0] = flags
    (<int32_t *>(page + fp.off_refcount))[0] = 1
    (<int32_t *>(page + fp.off_mapcount))[0] = mapcount
    (<uint64_t *>(page + fp.off_mapping))[0] = mapping
    (<uint64_t *>(page + fp.off_index))[0] = index


cdef void log_new_page(anon_fastpath *fp, uint64_t pfn, uint64_t vaddr, uint8_t kind) noexcept nogil:
    fp.new_pfn[fp.new_count] = <uint32_t>pfn
    fp.new_vaddr[fp.new_count] = vaddr
    fp.new_kind[fp.new_count] = kind
    fp.new_count += 1


cdef int do_anonymous_fault(vcpu_state *st, uint64_t vaddr, int access) noexcept nogil:
    """Resolve a not-present fault in a private anonymous VMA; 0 on success.

    The same steps as the kernel's Python do_anonymous_page, so either path leaves
    the same page tables, struct pages and counters behind."""
    cdef anon_fastpath *fp = st.fast
    cdef int lo = 0, hi, mid, i, level, shift
    cdef uint32_t flags
    cdef uint64_t table, e, pfn
    cdef uint64_t *slot
    if fp == NULL or not fp.enabled:
        return -1
    hi = fp.nr_vmas - 1
    i = -1
    while lo <= hi:
        mid = (lo + hi) >> 1
        if vaddr < fp.vma_start[mid]:
            hi = mid - 1
        elif vaddr >= fp.vma_end[mid]:
            lo = mid + 1
        else:
            i = mid
            break
    if i < 0:
        return -1
    flags = fp.vma_flags[i]
    if not (flags & VMA_ANON):
        return -1
    if (access == UC_MEM_WRITE and not (flags & VMA_WRITE)) or \
       (access == UC_MEM_FETCH and not (flags & VMA_EXEC)) or \
       (access == UC_MEM_READ and not (flags & VMA_READ)):
        return -1
    # count the pages needed (missing page tables and the page) before taking any
    cdef int needed = 1
    table = st.cr3 & PTE_ADDR
    for level in range(3):
        slot = pte_at(st, table + ((vaddr >> (39 - 9 * level)) & 511) * 8)
        if slot == NULL:
            return -1
        e = slot[0]
        if not (e & PTE_P):
            needed += 3 - level
            break
        if e & PTE_PS:
            return -1
        table = e & PTE_ADDR
    if fp.pcp_count < needed or fp.new_count + needed > fp.new_capacity:
        return -1
    table = st.cr3 & PTE_ADDR
    for level in range(3):
        shift = 39 - 9 * level
        slot = pte_at(st, table + ((vaddr >> shift) & 511) * 8)
        if slot == NULL:
            return -1
        e = slot[0]
        if not (e & PTE_P):
            pfn = take_frame(fp, st)
            init_struct_page(fp, st, pfn, fp.pgtable_page_flags, -1, 0, 0)
            log_new_page(fp, pfn, vaddr, 1)
            fp.pgtable_pages += 1
            e = (pfn << 12) | PTE_P | PTE_RW | PTE_US
            slot[0] = e
        elif e & PTE_PS:
            return -1
        table = e & PTE_ADDR
    slot = pte_at(st, table + ((vaddr >> 12) & 511) * 8)
    if slot == NULL or slot[0] != 0:          # present, or a swap entry: the slow path decides
        return -1
    pfn = take_frame(fp, st)
    init_struct_page(fp, st, pfn, fp.anon_page_flags, 0, fp.vma_anon_id[i], vaddr >> 12)
    log_new_page(fp, pfn, vaddr, 0)
    e = (pfn << 12) | PTE_P | PTE_US
    if flags & VMA_WRITE:
        e |= PTE_RW
    if not (flags & VMA_EXEC):
        e |= PTE_NX
    slot[0] = e
    fp.pgfault += 1
    return 0


cdef bint hook_tlb_fill(void *uc, uint64_t vaddr, int access, uc_tlb_entry *result,
                        void *user_data) noexcept nogil:
    cdef vcpu_state *st = <vcpu_state *>user_data
    cdef uint64_t paddr = 0, pfn
    cdef uint32_t perms = 0, error = 0
    st.tlb_fills += 1
    if walk(st, vaddr, access, &paddr, &perms, &error) != 0:
        if st.cpu_area_open > 0 and (vaddr & ~(<uint64_t>0xfff)) == CPU_AREA_VADDR:
            st.cpu_area_open -= 1
            result.paddr = st.cpu_area_paddr
            result.perms = UC_PROT_READ | UC_PROT_EXEC
            return True
        if (error & (PF_PROT | PF_RSVD)) or do_anonymous_fault(st, vaddr, access) != 0 \
                or walk(st, vaddr, access, &paddr, &perms, &error) != 0:
            st.exit_reason = EXIT_PAGE_FAULT
            st.fault_vaddr = vaddr
            st.fault_access = access
            st.fault_error = error
            return False
    pfn = paddr >> 12
    if paddr + 4096 > st.ram_size:
        # a PTE pointing outside guest RAM: never let the host touch it
        st.exit_reason = EXIT_PAGE_FAULT
        st.fault_vaddr = vaddr
        st.fault_access = access
        st.fault_error = error | PF_RSVD
        return False
    if not st.backed[pfn]:
        st.violations += 1
        st.last_violation_pfn = pfn
        st.last_violation_vaddr = vaddr
        if st.stop_on_violation:
            st.exit_reason = EXIT_BACKING
            st.fault_vaddr = vaddr
            st.fault_access = access
            return False
        st.backed[pfn] = 1   # the host backs it again on touch, as anonymous memory does
    result.paddr = paddr
    result.perms = perms
    return True


cdef inline uint32_t block_icount(vcpu_state *st, uint64_t address, uint32_t size) noexcept nogil:
    cdef uint32_t slot = <uint32_t>((address * GOLDEN) >> (64 - BLOCK_CACHE_BITS))
    cdef uint32_t v = st.bc_val[slot]
    cdef uc_tb tb
    if st.bc_pc[slot] == address and (v >> 16) == size:
        return v & 0xffff
    st.bc_misses += 1
    tb.icount = 0
    tb.size = 0
    if st.ctl(st.uc, UC_CTL_TB_REQUEST_CACHE_RW, address, &tb) != 0 or tb.icount == 0:
        return 1
    st.bc_pc[slot] = address
    st.bc_val[slot] = tb.icount | (<uint32_t>size << 16)
    return tb.icount


cdef void hook_block(void *uc, uint64_t address, uint32_t size, void *user_data) noexcept nogil:
    cdef vcpu_state *st = <vcpu_state *>user_data
    # Stopping here leaves RIP at this block, unexecuted: count it only when it runs.
    if st.icount >= st.deadline and st.exit_reason == EXIT_NONE:
        st.exit_reason = EXIT_QUANTUM
        st.emu_stop(uc)
        return
    cdef uint32_t n = block_icount(st, address, size)
    st.block_pc = address
    st.block_size = size
    st.block_icount = n
    st.icount += n


cdef void hook_syscall(void *uc, void *user_data) noexcept nogil:
    cdef vcpu_state *st = <vcpu_state *>user_data
    st.exit_reason = EXIT_SYSCALL
    st.emu_stop(uc)


cdef void hook_intr(void *uc, uint32_t intno, void *user_data) noexcept nogil:
    """A CPU exception or `int n` at CPL 3 (never a page fault: those stop in the TLB fill).
    RIP is at a faulting instruction, after a trapping one or an `int n`."""
    cdef vcpu_state *st = <vcpu_state *>user_data
    if intno == 1 and st.exit_reason == EXIT_SYSCALL:
        # TF over `syscall`: Linux masks TF for the call (SFMASK) and the step trap comes after the
        # next instruction; the system call is what this exit is for
        return
    st.exit_reason = EXIT_TRAP
    st.trap_vector = intno
    st.trap_rip = 0
    st.io_trap = 0
    if st.io_pending and intno == 1:
        st.trap_vector = 13                               # #GP: port I/O at CPL 3 with IOPL 0
        st.io_trap = 1
    st.io_pending = 0
    st.emu_stop(uc)


cdef void port_io_fault(vcpu_state *st, void *uc, uint32_t port) noexcept nogil:
    """Unicorn does not check I/O permission (gen_check_io is compiled out). An I/O breakpoint
    (DR7 type IO, armed by the trampoline) on this very port makes the CPU raise #DB right after
    the instruction, before anything else runs; hook_intr reports it as the #GP it should be."""
    cdef uint64_t dr0 = port
    if not st.io_pending:
        st.reg_read(uc, 35, &st.io_regs[0])               # rax, rcx, rsi, rdi (string I/O moves them)
        st.reg_read(uc, 38, &st.io_regs[1])
        st.reg_read(uc, 43, &st.io_regs[2])
        st.reg_read(uc, 39, &st.io_regs[3])
    st.io_pending = 1
    st.reg_write(uc, 66, &dr0)                            # UC_X86_REG_DR0


cdef uint32_t hook_in(void *uc, uint32_t port, int size, void *user_data) noexcept nogil:
    cdef vcpu_state *st = <vcpu_state *>user_data
    cdef uint64_t rax = 0
    port_io_fault(st, uc, port)
    st.reg_read(uc, 35, &rax)                             # the destination keeps its value
    return <uint32_t>rax


cdef void hook_out(void *uc, uint32_t port, int size, uint32_t value, void *user_data) noexcept nogil:
    port_io_fault(<vcpu_state *>user_data, uc, port)


cdef void hook_sysenter(void *uc, void *user_data) noexcept nogil:
    """SYSENTER in 64-bit mode is #UD on AMD (Unicorn runs it as a no-op): a trap at the
    instruction (RIP is synced to it while the hook runs and moves past it afterwards)."""
    cdef vcpu_state *st = <vcpu_state *>user_data
    st.exit_reason = EXIT_TRAP
    st.trap_vector = 6
    st.reg_read(uc, 41, &st.trap_rip)                     # UC_X86_REG_RIP
    st.emu_stop(uc)


cdef class NativeVcpu:
    """Native state shared with Unicorn's hooks for one vCPU."""
    cdef vcpu_state st
    cdef anon_fastpath fp
    cdef object _keep
    cdef uc_emu_start_fn emu_start

    def __cinit__(self):
        memset(&self.st, 0, sizeof(vcpu_state))
        memset(&self.fp, 0, sizeof(anon_fastpath))

    def __init__(self, size_t uc_handle, size_t ram_ptr, uint64_t ram_size, backed,
                 size_t fn_hook_add, size_t fn_emu_stop, size_t fn_ctl, size_t fn_reg_read=0,
                 size_t fn_reg_write=0, size_t fn_emu_start=0):
        cdef uint8_t[::1] backed_view = backed
        self._keep = backed
        self.st.uc = <void *>uc_handle
        self.st.ram = <uint8_t *>ram_ptr
        self.st.ram_size = ram_size
        self.st.backed = &backed_view[0]
        self.st.emu_stop = <uc_emu_stop_fn>fn_emu_stop
        self.st.ctl = <uc_ctl_fn>fn_ctl
        self.st.reg_read = <uc_reg_read_fn>fn_reg_read
        self.st.reg_write = <uc_reg_write_fn>fn_reg_write
        self.st.deadline = <uint64_t>-1
        self.emu_start = <uc_emu_start_fn>fn_emu_start
        self.st.bc_pc = <uint64_t *>calloc(1 << BLOCK_CACHE_BITS, sizeof(uint64_t))
        self.st.bc_val = <uint32_t *>calloc(1 << BLOCK_CACHE_BITS, sizeof(uint32_t))
        if self.st.bc_pc == NULL or self.st.bc_val == NULL:
            raise MemoryError()
        self.st.fast = &self.fp
        cdef uc_hook_add_fn hook_add = <uc_hook_add_fn>fn_hook_add
        cdef size_t hh = 0
        if hook_add(self.st.uc, &hh, UC_HOOK_TLB_FILL, <void *>hook_tlb_fill, &self.st, 1, 0) != 0:
            raise RuntimeError("uc_hook_add(TLB_FILL) failed")
        if hook_add(self.st.uc, &hh, UC_HOOK_BLOCK, <void *>hook_block, &self.st, 1, 0) != 0:
            raise RuntimeError("uc_hook_add(BLOCK) failed")
        if hook_add(self.st.uc, &hh, UC_HOOK_INSN, <void *>hook_syscall, &self.st, 1, 0,
                    <int>UC_X86_INS_SYSCALL) != 0:
            raise RuntimeError("uc_hook_add(INSN syscall) failed")
        if hook_add(self.st.uc, &hh, UC_HOOK_INSN, <void *>hook_sysenter, &self.st, 1, 0,
                    <int>UC_X86_INS_SYSENTER) != 0:
            raise RuntimeError("uc_hook_add(INSN sysenter) failed")
        if hook_add(self.st.uc, &hh, UC_HOOK_INSN, <void *>hook_in, &self.st, 1, 0, <int>UC_X86_INS_IN) != 0 \
                or hook_add(self.st.uc, &hh, UC_HOOK_INSN, <void *>hook_out, &self.st, 1, 0, <int>UC_X86_INS_OUT) != 0:
            raise RuntimeError("uc_hook_add(INSN in/out) failed")
        if hook_add(self.st.uc, &hh, UC_HOOK_INTR, <void *>hook_intr, &self.st, 1, 0) != 0:
            raise RuntimeError("uc_hook_add(INTR) failed")

    def __dealloc__(self):
        free(self.st.bc_pc)
        free(self.st.bc_val)
        free(self.fp.vma_start)
        free(self.fp.vma_end)
        free(self.fp.vma_flags)
        free(self.fp.vma_anon_id)
        free(self.fp.pcp)
        free(self.fp.new_pfn)
        free(self.fp.new_vaddr)
        free(self.fp.new_kind)

    # --- run-loop interface ---
    property cr3:
        def __get__(self): return self.st.cr3
        def __set__(self, uint64_t v): self.st.cr3 = v
    property icount:
        def __get__(self): return self.st.icount
        def __set__(self, uint64_t v): self.st.icount = v
    property deadline:
        def __get__(self): return self.st.deadline
        def __set__(self, uint64_t v): self.st.deadline = v
    property cpu_area_open:
        """TLB fills left that may map the CPU area."""
        def __get__(self): return self.st.cpu_area_open
        def __set__(self, int v): self.st.cpu_area_open = v
    property cpu_area_paddr:
        def __get__(self): return self.st.cpu_area_paddr
        def __set__(self, uint64_t v): self.st.cpu_area_paddr = v
    property trap_vector:
        def __get__(self): return self.st.trap_vector
    property trap_rip:
        def __get__(self): return self.st.trap_rip
    property io_trap:
        def __get__(self): return bool(self.st.io_trap)

    def io_saved_regs(self):
        """(rax, rcx, rsi, rdi) as they were before the faulting port I/O."""
        return (self.st.io_regs[0], self.st.io_regs[1], self.st.io_regs[2], self.st.io_regs[3])
    property stop_on_violation:
        def __get__(self): return bool(self.st.stop_on_violation)
        def __set__(self, v): self.st.stop_on_violation = 1 if v else 0

    # --- registers without the binding's per-call overhead (syscalls are frequent) ---
    def read_reg(self, int regid):
        cdef uint64_t v = 0
        self.st.reg_read(self.st.uc, regid, &v)
        return v

    def write_reg(self, int regid, uint64_t value):
        self.st.reg_write(self.st.uc, regid, &value)

    def syscall_args(self):
        """(nr, arg0..arg5): rax, rdi, rsi, rdx, r10, r8, r9."""
        cdef uint64_t v[7]
        cdef int ids[7]
        ids[:] = [35, 39, 43, 40, 108, 106, 107]
        for i in range(7):
            self.st.reg_read(self.st.uc, ids[i], &v[i])
        return (v[0], v[1], v[2], v[3], v[4], v[5], v[6])

    def user_segments(self, uint64_t vaddr, uint64_t length, bint write):
        """Physical runs behind [vaddr, vaddr+length) for a kernel access (A/D set as the
        CPU would), merged when contiguous; None if any page would fault."""
        cdef uint64_t paddr = 0, end = vaddr + length, n, run_start = 0, run_len = 0
        cdef uint32_t perms = 0, error = 0
        cdef int access = UC_MEM_WRITE if write else UC_MEM_READ
        out = []
        while vaddr < end:
            if walk(&self.st, vaddr, access, &paddr, &perms, &error) != 0:
                return None
            paddr |= vaddr & 0xfff
            n = 4096 - (vaddr & 0xfff)
            if n > end - vaddr:
                n = end - vaddr
            if run_len and run_start + run_len == paddr:
                run_len += n
            else:
                if run_len:
                    out.append((run_start, run_len))
                run_start, run_len = paddr, n
            vaddr += n
        if run_len:
            out.append((run_start, run_len))
        return out

    def run(self, uint64_t deadline):
        """One emu_start from RIP with preemption at `deadline` instructions, without the binding's
        per-call overhead (one call per syscall): (uc_err, reason, fault_vaddr, fault_access,
        fault_error, RIP after); the exit is taken as take_exit() would."""
        cdef uint64_t rip = 0
        cdef int err
        if self.emu_start == NULL:
            raise RuntimeError("NativeVcpu made without uc_emu_start")
        self.st.reg_read(self.st.uc, 41, &rip)            # UC_X86_REG_RIP
        self.st.deadline = deadline
        with nogil:
            err = self.emu_start(self.st.uc, rip, 0, 0, 0)
        self.st.reg_read(self.st.uc, 41, &rip)
        r = (err, self.st.exit_reason, self.st.fault_vaddr, self.st.fault_access, self.st.fault_error, rip)
        self.st.exit_reason = EXIT_NONE
        return r

    def take_exit(self):
        """(reason, fault_vaddr, fault_access, fault_error) of the last run; clears it."""
        r = (self.st.exit_reason, self.st.fault_vaddr, self.st.fault_access, self.st.fault_error)
        self.st.exit_reason = EXIT_NONE
        return r

    def counters(self):
        return {"tlb_fills": self.st.tlb_fills, "block_cache_misses": self.st.bc_misses,
                "backing_violations": self.st.violations}

    def current_block(self):
        """(pc, size in bytes, instructions) of the last block entered."""
        return (self.st.block_pc, self.st.block_size, self.st.block_icount)

    def last_violation(self):
        return (self.st.last_violation_pfn, self.st.last_violation_vaddr)

    def flush_tlb(self):
        """uc_ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE) straight through the engine's function pointer (reclaim
        flushes once per page it unmaps or finds referenced; the binding's ctl() costs microseconds)."""
        if self.st.ctl(self.st.uc, UC_CTL_TLB_FLUSH_W) != 0:
            raise RuntimeError("uc_ctl(UC_CTL_TLB_FLUSH) failed")

    def forget_blocks(self):
        """Drop cached instruction counts (after translated code was flushed)."""
        memset(self.st.bc_pc, 0, (1 << BLOCK_CACHE_BITS) * sizeof(uint64_t))
        memset(self.st.bc_val, 0, (1 << BLOCK_CACHE_BITS) * sizeof(uint32_t))

    def walk(self, uint64_t vaddr, int access):
        """Hardware walk from Python (sets A/D like the CPU): paddr, perms or None, error."""
        cdef uint64_t paddr = 0
        cdef uint32_t perms = 0, error = 0
        if walk(&self.st, vaddr, access, &paddr, &perms, &error) != 0:
            return None, error
        return paddr | (vaddr & 0xfff), perms

    # --- the kernel's anonymous-fault fast path ---
    def fastpath_setup(self, uint64_t mem_map_paddr, uint32_t struct_page_size, uint32_t off_flags,
                       uint32_t off_refcount, uint32_t off_mapcount, uint32_t off_mapping,
                       uint32_t off_index, uint64_t anon_page_flags, uint64_t pgtable_page_flags,
                       int pcp_capacity=256, int log_capacity=512):
        fp = &self.fp
        fp.mem_map_paddr = mem_map_paddr
        fp.struct_page_size = struct_page_size
        fp.off_flags = off_flags
        fp.off_refcount = off_refcount
        fp.off_mapcount = off_mapcount
        fp.off_mapping = off_mapping
        fp.off_index = off_index
        fp.anon_page_flags = anon_page_flags
        fp.pgtable_page_flags = pgtable_page_flags
        fp.pcp = <uint32_t *>calloc(pcp_capacity, sizeof(uint32_t))
        fp.pcp_capacity = pcp_capacity
        fp.new_pfn = <uint32_t *>calloc(log_capacity, sizeof(uint32_t))
        fp.new_vaddr = <uint64_t *>calloc(log_capacity, sizeof(uint64_t))
        fp.new_kind = <uint8_t *>calloc(log_capacity, sizeof(uint8_t))
        fp.new_capacity = log_capacity
        if fp.pcp == NULL or fp.new_pfn == NULL or fp.new_vaddr == NULL or fp.new_kind == NULL:
            raise MemoryError()
        fp.enabled = 1

    property fastpath_enabled:
        def __get__(self): return bool(self.fp.enabled)
        def __set__(self, v): self.fp.enabled = 1 if (v and self.fp.pcp != NULL) else 0

    def set_vmas(self, vmas):
        """vmas: sorted list of (start, end, flags, anon_id) of the current mm."""
        cdef int n = len(vmas), i
        fp = &self.fp
        if n > fp.vma_capacity:
            cap = max(n, 2 * fp.vma_capacity, 16)
            free(fp.vma_start); free(fp.vma_end); free(fp.vma_flags); free(fp.vma_anon_id)
            fp.vma_start = <uint64_t *>calloc(cap, sizeof(uint64_t))
            fp.vma_end = <uint64_t *>calloc(cap, sizeof(uint64_t))
            fp.vma_flags = <uint32_t *>calloc(cap, sizeof(uint32_t))
            fp.vma_anon_id = <uint64_t *>calloc(cap, sizeof(uint64_t))
            fp.vma_capacity = cap
        for i in range(n):
            s, e, f, a = vmas[i]
            fp.vma_start[i] = s
            fp.vma_end[i] = e
            fp.vma_flags[i] = f
            fp.vma_anon_id[i] = a
        fp.nr_vmas = n

    def pcp_room(self):
        return self.fp.pcp_capacity - self.fp.pcp_count

    def pcp_push(self, pfns):
        fp = &self.fp
        for pfn in pfns:
            if fp.pcp_count >= fp.pcp_capacity:
                raise OverflowError("pcp list full")
            fp.pcp[fp.pcp_count] = pfn
            fp.pcp_count += 1

    property pcp_count:
        def __get__(self): return self.fp.pcp_count

    def pcp_pop(self):
        if self.fp.pcp_count == 0:
            raise IndexError("pcp list empty")
        self.fp.pcp_count -= 1
        return self.fp.pcp[self.fp.pcp_count]

    def pcp_take(self, Py_ssize_t n):
        """n pages off the list, in the order pcp_pop gives them."""
        fp = &self.fp
        if n < 0 or n > fp.pcp_count:
            raise IndexError("pcp list holds fewer pages")
        out = [fp.pcp[fp.pcp_count - 1 - i] for i in range(n)]
        fp.pcp_count -= n
        return out

    def pcp_take_all(self):
        fp = &self.fp
        out = [fp.pcp[i] for i in range(fp.pcp_count)]
        fp.pcp_count = 0
        return out

    def drain_new_pages(self):
        """Pages the fast path mapped since the last drain: [(pfn, vaddr, kind)]."""
        fp = &self.fp
        out = [(fp.new_pfn[i], fp.new_vaddr[i], fp.new_kind[i]) for i in range(fp.new_count)]
        fp.new_count = 0
        return out

    def fastpath_counters(self):
        return {"pgfault": self.fp.pgfault, "pgtable_pages": self.fp.pgtable_pages}

    def fastpath_consume_counters(self):
        r = (self.fp.pgfault, self.fp.pgtable_pages)
        self.fp.pgfault = 0
        self.fp.pgtable_pages = 0
        return r
