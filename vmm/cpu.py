"""The vCPU: Unicorn x86-64 in long mode with our MMU, clock and exits.

`run()` is the VMM's equivalent of KVM_RUN: it executes guest user code from
the current RIP until something needs the kernel, and says why in a VcpuExit.
Page walks, instruction counting and the syscall trap happen natively in
cython_ext.mmu; Python sees only the exits.
"""
import ctypes
import enum
import functools
import math
import os
import struct
import sys

from unicorn import Uc, UcError, UC_ARCH_X86, UC_HOOK_INSN, UC_HOOK_INTR, UC_MODE_64, UC_PROT_ALL, UC_TLB_VIRTUAL
from unicorn import unicorn_const as ucc
from unicorn import x86_const as x86
from unicorn.unicorn_py3.unicorn import uclib

from cython_ext.mmu import NativeVcpu
from guestos.record import Record

# Where emulation would stop on its own: page 0 is never mapped in user space,
# so reaching it means a jump to a null pointer.
STOP_ADDRESS = 0
CS_ARCH_X86, CS_MODE_64 = 3, 1 << 3       # capstone.CS_ARCH_X86, capstone.CS_MODE_64 (a test holds them equal)

REGS = {name: getattr(x86, "UC_X86_REG_" + name.upper()) for name in (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
    "r12", "r13", "r14", "r15", "rip", "eflags", "fs_base", "gs_base")}
GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
        "r12", "r13", "r14", "r15", "rip", "eflags", "fs_base", "gs_base")

# The machine's paravirtual CPUID leaves (the hypervisor range, as KVM's): 0x40000000 names the
# hypervisor, 0x40000001 reads the virtual clock in ns into EDX:EAX, exact to the instruction (Unicorn
# cannot trap rdtsc: it would return the host's TSC). The vDSO reads time this way.
CPUID_HYPERVISOR_BASE = 0x40000000
CPUID_VIRTUAL_CLOCK = 0x40000001
HYPERVISOR_SIGNATURE = b"BallastVMM\0\0"

ACCESS_NAMES = {ucc.UC_MEM_READ: "read", ucc.UC_MEM_WRITE: "write", ucc.UC_MEM_FETCH: "fetch"}


class ExitReason(enum.IntEnum):
    NONE = 0
    SYSCALL = 1
    PAGE_FAULT = 2
    QUANTUM = 3
    BACKING = 4          # touched a frame the host does not back (balloon violation)
    HALT = 5             # hlt: privileged in user mode
    INVALID_OPCODE = 6   # #UD
    EXCEPTION = 7        # an emulator error without a vector (CPU exceptions are TRAP exits)
    INTERRUPT = 8        # a clock event came due (device completion): interrupts may be pending
    TRAP = 9             # a CPU exception or `int n` (vector in VcpuExit.vector)


_SYSCALL = int(ExitReason.SYSCALL)
_TRAP = int(ExitReason.TRAP)

# The CPU area: a GDT laid out as Linux's (arch/x86/include/asm/segment.h) and a ring-0 trampoline
# that arms the I/O breakpoint and lowers the CPL to 3 with sysretq. Its page sits in the e820-reserved
# hole below 1 MiB and is mapped (at Linux's cpu_entry_area address) only while the trampoline runs
# and for a user-mode descriptor load (Vcpu._loads_descriptor).
CPU_AREA_PADDR = 0x9F000
CPU_AREA_VADDR = 0xFFFFFE0000000000
GDT = (0,
       0x00CF9B000000FFFF,       # 0x08 kernel CS, 32-bit
       0x00AF9B000000FFFF,       # 0x10 __KERNEL_CS
       0x00CF93000000FFFF,       # 0x18 __KERNEL_DS
       0x00CFFB000000FFFF,       # 0x23 __USER32_CS
       0x00CFF3000000FFFF,       # 0x2b __USER_DS
       0x00AFFB000000FFFF)       # 0x33 __USER_CS
KERNEL_CS, USER32_CS, USER_CS, USER_DS = 0x10, 0x23, 0x33, 0x2B
TRAMPOLINE_OFFSET = 0x800
# mov %rax,%dr7 (an I/O breakpoint: how port I/O at CPL 3 is made to fault), then sysretq
TRAMPOLINE = bytes.fromhex("0f 23 f8") + bytes.fromhex("48 0f 07")
TRAMPOLINE_INSNS = 2
DR7_IO_BREAKPOINT_0 = 1 | (2 << 16)      # L0, R/W0 = 10b (I/O), LEN0 = 1 byte; DR0 is set per access
MSR_EFER, MSR_STAR, EFER_SCE = 0xC0000080, 0xC0000081, 1
CR0_NE = 1 << 5
CR4_TSD = 1 << 2              # rdtsc/rdtscp at CPL 3 raise #GP: the VMM answers them (RDTSC exiting)
RDTSC, RDTSCP = b"\x0f\x31", b"\x0f\x01\xf9"
NO_EXCEPTION = b"\xff\xff\xff\xff"          # old_exception = -1
CONTRIBUTORY_EXCEPTIONS = frozenset((0, 8, 10, 11, 12, 13))    # #DE, #DF, #TS, #NP, #SS, #GP


@functools.lru_cache(maxsize=None)
def _old_exception_offset():
    """Where a saved Unicorn context keeps QEMU's env->old_exception (the contributory exception in
    flight), found the only way the binding allows: a scratch CPU divides by zero and the one int
    that went from -1 to 0 (#DE) is it. None if that is not unambiguous (then rdtsc is not trapped)."""
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.ctl_set_tcg_buffer_size(1 << 20)     # one block to translate: not the default 1 GiB (huge pages) code buffer
    uc.mem_map(0x1000, 0x1000)
    uc.mem_write(0x1000, b"\x31\xc9\xf7\xf1")                    # xor ecx, ecx; div ecx
    clean = bytes(uc.context_save())
    uc.hook_add(UC_HOOK_INTR, lambda uc, intno, _: uc.emu_stop())
    try:
        uc.emu_start(0x1000, 0x1004)
    except UcError:
        return None
    after = bytes(uc.context_save())
    found = [i for i in range(0, len(clean) - 3, 4) if clean[i:i + 4] == NO_EXCEPTION and after[i:i + 4] == bytes(4)]
    return found[0] if len(found) == 1 else None


class VcpuExit(Record):
    """Why the vCPU stopped running guest code, and what the kernel needs to handle it. (A plain class:
    a dataclass would compile its methods at every start.)"""
    __slots__ = ("reason", "rip", "page", "access", "error_code", "vector", "detail", "_address", "_cpu")

    def __init__(self, reason: ExitReason, rip: int, page: int = 0, access: str = "", error_code: int = 0,
                 vector: int = 0, detail: str = "", _address: int = None, _cpu=None):
        self.reason = reason
        self.rip = rip
        self.page = page                # the faulting page: all a fault handler needs
        self.access = access            # read, write or fetch
        self.error_code = error_code    # x86 #PF error code
        self.vector = vector            # TRAP: the exception or `int n` vector
        self.detail = detail
        self._address = _address
        self._cpu = _cpu


    @property
    def address(self) -> int:
        """CR2, the exact faulting address: decoded from the instruction when first asked for."""
        if self._address is None:
            self._address = self._cpu._fault_address(self.rip, self.page, self.error_code) \
                if self._cpu is not None else self.page
        return self._address


@functools.cache
def _instruction_counter():
    """count(code, address): how many x86-64 instructions capstone decodes from code, as
    len(disasm_lite(code, address)) would say. Straight through libcapstone when the capstone package
    ships it (its Python binding imports every architecture: ~30 ms for a page fault's question)."""
    import importlib.util
    spec = importlib.util.find_spec("capstone")
    names = {"linux": "libcapstone.so", "darwin": "libcapstone.dylib", "win32": "capstone.dll"}
    lib = None
    for where in (spec.submodule_search_locations or []) if spec is not None else []:
        path = os.path.join(where, "lib", names.get(sys.platform, "libcapstone.so"))
        if os.path.exists(path):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                lib = None
            break
    if lib is None:
        plain = _disassemblers()[0]
        return lambda code, address: sum(1 for _ in plain.disasm_lite(code, address))
    lib.cs_open.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_size_t)]
    lib.cs_open.restype = ctypes.c_int
    lib.cs_disasm.argtypes = [ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64, ctypes.c_size_t,
                              ctypes.POINTER(ctypes.c_void_p)]
    lib.cs_disasm.restype = ctypes.c_size_t
    lib.cs_free.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.cs_free.restype = None
    handle = ctypes.c_size_t()
    if lib.cs_open(CS_ARCH_X86, CS_MODE_64, ctypes.byref(handle)) != 0:
        plain = _disassemblers()[0]
        return lambda code, address: sum(1 for _ in plain.disasm_lite(code, address))

    def count(code: bytes, address: int) -> int:
        insns = ctypes.c_void_p()
        n = lib.cs_disasm(handle.value, code, len(code), address, 0, ctypes.byref(insns))
        if n:
            lib.cs_free(insns, n)
        return n
    return count


@functools.cache
def _disassemblers():
    """(plain, detailed) capstone decoders, made when first needed (reports, CR2, a stopped block)."""
    import capstone
    plain = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    detailed = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    detailed.detail = True
    return plain, detailed


# string instructions address memory through rsi/rdi without a memory operand
_STRING_OPS = ("movs", "stos", "lods", "cmps", "scas")
# instructions that read the GDT in user mode: a supervisor access the page tables do not grant
_DESCRIPTOR_LOADS = ("lsl", "lar", "verr", "verw", "iret", "retf", "ljmp", "lcall", "lss", "lfs", "lgs")
_SEGMENT_REG_NAMES = ("X86_REG_DS", "X86_REG_ES", "X86_REG_SS", "X86_REG_FS", "X86_REG_GS")   # capstone's


def _fn(name):
    return ctypes.cast(getattr(uclib, name), ctypes.c_void_p).value


class Vcpu:
    def __init__(self, ram, clock):
        self.ram = ram
        self.clock = clock
        uc = Uc(UC_ARCH_X86, UC_MODE_64)
        uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
        uc.mem_map_ptr(0, ram.size, UC_PROT_ALL, ram.ptr)
        self.uc = uc
        self.native = NativeVcpu(uc._uch.value, ram.ptr, ram.size, ram.backed,
                                 _fn("uc_hook_add"), _fn("uc_emu_stop"), _fn("uc_ctl"),
                                 _fn("uc_reg_read"), _fn("uc_reg_write"), _fn("uc_emu_start"))
        self.exits = 0
        # every touch of a frame the host does not back comes out here first (second-stage fault)
        self.native.stop_on_violation = True
        self.on_backing_violation = None  # callable(pfn, vaddr, rip, access) -> True to resume
        self._deadline = (1 << 64) - 1
        self._retired_cache = {}          # (cr3, block pc, size, rip) -> instructions retired before rip
        self.user_mode = False            # CPL 3: entered once through the trampoline, kept by every exit
        self.debugger = None              # a gdb stub (vmm.gdbstub): sees each run and exit first
        self._cpuid_hook = uc.hook_add(UC_HOOK_INSN, self._hook_cpuid, None, 1, 0, x86.UC_X86_INS_CPUID)

    # --- registers ---
    def reg(self, name: str) -> int:
        return self.native.read_reg(REGS[name])

    def set_reg(self, name: str, value: int) -> None:
        self.native.write_reg(REGS[name], value & 0xFFFFFFFFFFFFFFFF)

    def regs(self) -> dict:
        return dict(zip(GPRS, self.uc.reg_read_batch([REGS[n] for n in GPRS])))

    def set_regs(self, values: dict) -> None:
        self.uc.reg_write_batch([(REGS[n], v & 0xFFFFFFFFFFFFFFFF) for n, v in values.items()])

    def save_context(self):
        """Every register, x87/SSE state included, of the task leaving the CPU."""
        return self.uc.context_save()

    def restore_context(self, context) -> None:
        self.uc.context_restore(context)
        self.user_mode = self.native.read_reg(x86.UC_X86_REG_CS) & 3 == 3

    def enter_user_mode(self) -> None:
        """Lower the CPL to 3 as Linux returns to user space: sysretq from a ring-0 trampoline
        (STAR and EFER.SCE set up, CS/SS from STAR as Linux's). RIP, RFLAGS, RCX and R11 are the
        user's afterwards; no user instruction runs and the trampoline does not count."""
        self.ram.write(CPU_AREA_PADDR, b"".join(d.to_bytes(8, "little") for d in GDT).ljust(TRAMPOLINE_OFFSET, b"\0")
                       + TRAMPOLINE)
        uc = self.uc
        uc.reg_write(x86.UC_X86_REG_GDTR, (0, CPU_AREA_VADDR, len(GDT) * 8 - 1, 0))
        uc.msr_write(MSR_STAR, (USER32_CS << 48) | (KERNEL_CS << 32))
        uc.msr_write(MSR_EFER, uc.msr_read(MSR_EFER) | EFER_SCE)
        uc.reg_write(x86.UC_X86_REG_CR0, uc.reg_read(x86.UC_X86_REG_CR0) | CR0_NE)   # x87 errors raise #MF
        # Unicorn cannot hook rdtsc, and the host's TSC would make runs differ (the Go runtime seeds
        # and paces with it): with CR4.TSD a user rdtsc traps and run() returns the virtual TSC
        if _old_exception_offset() is not None:
            uc.reg_write(x86.UC_X86_REG_CR4, uc.reg_read(x86.UC_X86_REG_CR4) | CR4_TSD)
        saved = {name: self.reg(name) for name in ("rip", "eflags", "rcx", "r11", "rax")}
        self.set_regs({"rcx": saved["rip"], "r11": saved["eflags"], "rax": DR7_IO_BREAKPOINT_0,
                       "rip": CPU_AREA_VADDR + TRAMPOLINE_OFFSET})
        native = self.native
        native.cpu_area_paddr = CPU_AREA_PADDR
        native.cpu_area_open = 1 << 20
        icount = native.icount
        try:
            native.run(icount + TRAMPOLINE_INSNS)           # stop before the user's first block
        finally:
            native.cpu_area_open = 0
            self.flush_tlb()                                # no CPU-area translation outlives the trampoline
        native.icount = icount
        cs = native.read_reg(x86.UC_X86_REG_CS)
        # it stops before the user's first block, or when fetching it faults (demand paging: run() retries)
        if cs != USER_CS or self.reg("rip") != saved["rip"]:
            raise RuntimeError(f"entering user mode failed: cs {cs:#x}, rip {self.reg('rip'):#x}")
        self.set_regs({"rcx": saved["rcx"], "r11": saved["r11"], "rax": saved["rax"], "eflags": saved["eflags"]})
        self.user_mode = True

    def reset_fpu(self) -> None:
        """The x87 and SSE state a new program starts with (fninit, MXCSR default)."""
        self.uc.reg_write(x86.UC_X86_REG_FPCW, 0x37F)
        self.uc.reg_write(x86.UC_X86_REG_MXCSR, 0x1F80)

    def fpu_exception_state(self) -> tuple:
        """(x87 control word, x87 status word, MXCSR): what decides an FPU exception's si_code."""
        uc = self.uc
        return (uc.reg_read(x86.UC_X86_REG_FPCW), uc.reg_read(x86.UC_X86_REG_FPSW), uc.reg_read(x86.UC_X86_REG_MXCSR))

    def syscall_args(self):
        """(nr, a0..a5) as the x86-64 syscall ABI passes them."""
        return self.native.syscall_args()

    def user_segments(self, vaddr: int, length: int, write: bool):
        """[(paddr, len)] behind a user range, or None if a page is not mapped for that access."""
        return self.native.user_segments(vaddr, length, write)

    # --- MMU ---
    @property
    def cr3(self) -> int:
        return self.native.cr3

    @cr3.setter
    def cr3(self, value: int) -> None:
        self.native.cr3 = value
        self.flush_tlb()

    def flush_tlb(self) -> None:
        self.native.flush_tlb()                     # uc_ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE), natively

    def flush_code(self, start: int = None, end: int = None) -> None:
        """Drop translated blocks (host writes do not invalidate them)."""
        if start is None:
            self.uc.ctl_flush_tb()
        else:
            self.uc.ctl_remove_cache(start, end)
        self.native.forget_blocks()
        self._retired_cache.clear()

    def walk(self, vaddr: int, access: str):
        kind = {"read": ucc.UC_MEM_READ, "write": ucc.UC_MEM_WRITE, "fetch": ucc.UC_MEM_FETCH}[access]
        return self.native.walk(vaddr, kind)

    def _hook_cpuid(self, uc, _) -> int:
        """The paravirtual leaves; any other leaf runs as the CPU runs it (return 0)."""
        leaf = uc.reg_read(x86.UC_X86_REG_RAX) & 0xFFFFFFFF
        if leaf == CPUID_VIRTUAL_CLOCK:
            ns = self.clock_ns_at(uc.reg_read(x86.UC_X86_REG_RIP))
            values = (ns & 0xFFFFFFFF, 0, 0, ns >> 32 & 0xFFFFFFFF)
        elif leaf == CPUID_HYPERVISOR_BASE:
            values = (CPUID_VIRTUAL_CLOCK,) + struct.unpack("<III", HYPERVISOR_SIGNATURE)
        else:
            return 0
        for reg, value in zip((x86.UC_X86_REG_RAX, x86.UC_X86_REG_RBX, x86.UC_X86_REG_RCX, x86.UC_X86_REG_RDX),
                              values):
            uc.reg_write(reg, value)
        return 1

    def clock_ns_at(self, rip: int) -> int:
        """The virtual clock as an instruction at rip in the running block sees it: the block was
        counted whole on entry, so take back what has not retired yet."""
        pc, size, counted = self.native.current_block()
        retired = counted
        if pc <= rip < pc + size:
            key = (self.native.cr3, pc, size, rip)
            retired = self._retired_cache.get(key)
            if retired is None:
                retired = _instruction_counter()(self.read_code(pc, rip - pc), pc)
                self._retired_cache[key] = retired
        clock = self.clock
        instructions = self.native.icount - counted + retired
        return int(instructions * clock.costs.cpi / clock.costs.cpu_ghz) + clock.charged_ns

    # --- clock and preemption ---
    @property
    def icount(self) -> int:
        return self.native.icount

    def set_deadline(self, icount: int) -> None:
        """Preempt (a QUANTUM exit) once icount instructions have retired."""
        self._deadline = icount

    # --- run ---
    def run(self) -> VcpuExit:
        if not self.user_mode:
            self.enter_user_mode()
        while True:
            debugger = self.debugger
            if debugger is not None:
                debugger.before_run(self)
            exit = self._run_once()
            if debugger is not None and debugger.after_exit(self, exit):
                continue
            if exit.reason == ExitReason.PAGE_FAULT and exit.page == CPU_AREA_VADDR and self._loads_descriptor(exit):
                exit = self._run_once()
            if exit.reason == ExitReason.TRAP and exit.vector == 13 and self._emulate_rdtsc(exit.rip):
                continue
            if exit.reason != ExitReason.BACKING or self.on_backing_violation is None or \
                    not self.on_backing_violation(self._violation_pfn(),
                                                  exit.page, exit.rip, exit.access):
                return exit

    def _emulate_rdtsc(self, rip: int) -> bool:
        """A user rdtsc/rdtscp trapped (CR4.TSD): the TSC of the virtual clock at cpu_ghz, TSC_AUX
        (cpu 0) in rcx for rdtscp, as a hypervisor with RDTSC exiting answers. False: another #GP."""
        code = self.read_code(rip, 3)
        size = 2 if code[:2] == RDTSC else 3 if code == RDTSCP else 0
        if not size:
            return False
        clock = self.clock
        clock.charge(clock.costs.vm_exit_ns)
        tsc = int(clock.now_ns() * clock.costs.cpu_ghz)
        regs = {"rax": tsc & 0xFFFFFFFF, "rdx": tsc >> 32 & 0xFFFFFFFF, "rip": rip + size}
        if size == 3:
            regs["rcx"] = 0
        self.set_regs(regs)
        return True

    def _clear_exception_in_flight(self) -> None:
        """Unicorn's exception hook replaces QEMU's delivery of the exception, which is what clears
        env->old_exception: left set, the next contributory exception (#DE, #TS..#GP) would come as a
        double fault and the one after would halt the CPU. A context round trip with it reset clears it."""
        offset = _old_exception_offset()
        if offset is None:
            return
        context = self.uc.context_save()
        ctypes.memmove(ctypes.cast(context._context, ctypes.c_void_p).value + offset, NO_EXCEPTION, 4)
        self.uc.context_restore(context)

    def _violation_pfn(self) -> int:
        return self.native.last_violation()[0]

    def instruction_at(self, rip: int) -> str:
        """The instruction at rip, disassembled (for reports)."""
        for _, _, mnemonic, op_str in _disassemblers()[0].disasm_lite(self.read_code(rip, 15), rip, 1):
            return f"{mnemonic} {op_str}".strip()
        return "(unreadable)"

    def _run_once(self) -> VcpuExit:
        self.exits += 1
        clock = self.clock
        native = self.native
        # preempt when the clock reaches its next event (a device completion) or at the quantum
        events = clock._events
        deadline = self._deadline
        if events:
            wait_ns = events[0][0] - clock.now_ns()
            costs = clock.costs
            at = native.icount + max(1, math.ceil((wait_ns if wait_ns > 0 else 0) * costs.cpu_ghz / costs.cpi))
            if at < deadline:
                deadline = at
        status, reason, address, access, error_code, rip = native.run(deadline)
        error = status if status != ucc.UC_ERR_OK else None
        clock.instructions = native.icount
        events = clock._events
        if events and events[0][0] <= clock.now_ns():
            clock.run_due()
        if reason == _SYSCALL:
            return VcpuExit(ExitReason.SYSCALL, rip)
        if reason == _TRAP:
            if native.trap_rip:                  # a fault reported after the instruction moved RIP on
                rip = native.trap_rip
                native.write_reg(x86.UC_X86_REG_RIP, rip)
            elif native.io_trap:                 # port I/O: RIP is past it; the fault is on the instruction
                rip = self._instruction_ending_at(rip)
                self.set_regs({"rip": rip, **dict(zip(("rax", "rcx", "rsi", "rdi"), native.io_saved_regs()))})
            self._uncount_unretired(rip)
            if native.trap_vector in CONTRIBUTORY_EXCEPTIONS:
                self._clear_exception_in_flight()
            return VcpuExit(ExitReason.TRAP, rip, vector=native.trap_vector)
        if reason == ExitReason.PAGE_FAULT or reason == ExitReason.BACKING:
            self._uncount_unretired(rip)
            return VcpuExit(ExitReason(reason), rip, address & ~0xFFF, ACCESS_NAMES.get(access, "?"), error_code,
                            _cpu=self)
        if error is not None:
            self._uncount_unretired(rip)
        if error == ucc.UC_ERR_INSN_INVALID:
            return VcpuExit(ExitReason.INVALID_OPCODE, rip)
        if error is not None:
            return VcpuExit(ExitReason.EXCEPTION, rip, detail=UcError(error).__str__())
        if reason == ExitReason.QUANTUM:
            if self.native.icount < self._deadline:
                return VcpuExit(ExitReason.INTERRUPT, rip)
            return VcpuExit(ExitReason.QUANTUM, rip)
        if rip == STOP_ADDRESS:
            # a jump to page 0: a fetch fault, as the hardware would raise
            return VcpuExit(ExitReason.PAGE_FAULT, rip, 0, "fetch", 0x4 | 0x10, _address=0)
        return VcpuExit(ExitReason.HALT, rip)

    # --- precise exits ---
    def read_code(self, vaddr: int, length: int) -> bytes:
        """Instruction bytes at vaddr as the CPU would fetch them (stops at an unmapped page)."""
        out = bytearray()
        while length > 0:
            paddr, _ = self.native.walk(vaddr, ucc.UC_MEM_FETCH)
            if paddr is None:
                break
            n = min(length, 4096 - (vaddr & 0xFFF))
            out += self.ram.view[paddr:paddr + n]
            vaddr += n
            length -= n
        return bytes(out)

    def _uncount_unretired(self, rip: int) -> None:
        """A block counted on entry stopped at rip: take back what did not retire there."""
        pc, size, counted = self.native.current_block()
        if not pc <= rip < pc + size:
            return
        key = (self.native.cr3, pc, size, rip)
        retired = self._retired_cache.get(key)
        if retired is None:
            retired = _instruction_counter()(self.read_code(pc, rip - pc), pc)
            self._retired_cache[key] = retired
        if retired < counted:
            self.native.icount -= counted - retired
            self.clock.instructions = self.native.icount

    def _loads_descriptor(self, exit) -> bool:
        """A user instruction reading the GDT (mov to a segment register, lsl, iretq...): the CPU
        does that as a supervisor, so the CPU area is mapped for that one fill. True to run again."""
        from capstone import x86_const as cs_x86
        insn = next(_disassemblers()[1].disasm(self.read_code(exit.rip, 15), exit.rip, 1), None)
        if insn is None or exit.access != "read":
            return False
        segment_regs = {getattr(cs_x86, name) for name in _SEGMENT_REG_NAMES}
        loads = insn.mnemonic.startswith(_DESCRIPTOR_LOADS) or (insn.mnemonic in ("mov", "pop") and any(
            op.type == cs_x86.X86_OP_REG and op.reg in segment_regs for op in insn.operands[:1]))
        if loads:
            self.native.cpu_area_open = 1
        return loads

    def _instruction_ending_at(self, rip: int) -> int:
        """The start of the instruction of the current block that ends at rip."""
        pc, size, _ = self.native.current_block()
        for address, length, _, _ in _disassemblers()[0].disasm_lite(self.read_code(pc, max(rip - pc, 0)), pc):
            if address + length == rip:
                return address
        return rip

    def _fault_address(self, rip: int, page: int, error_code: int) -> int:
        """CR2: Unicorn tells the TLB fill only the page; the instruction tells the byte."""
        page &= ~0xFFF
        if error_code & 0x10:                       # PF_INSTR
            return rip if rip & ~0xFFF == page else page
        from capstone import x86_const as cs_x86
        insn = next(_disassemblers()[1].disasm(self.read_code(rip, 15), rip, 1), None)
        if insn is None:
            return page
        candidates = []
        for op in insn.operands:
            if op.type != cs_x86.X86_OP_MEM:
                continue
            addr = op.mem.disp
            if op.mem.base == cs_x86.X86_REG_RIP:
                addr += rip + insn.size
            elif op.mem.base:
                addr += self._cs_reg(insn, op.mem.base)
            if op.mem.index:
                addr += self._cs_reg(insn, op.mem.index) * op.mem.scale
            if op.mem.segment in (cs_x86.X86_REG_FS, cs_x86.X86_REG_GS):
                addr += self.reg("fs_base" if op.mem.segment == cs_x86.X86_REG_FS else "gs_base")
            candidates.append((addr & 0xFFFFFFFFFFFFFFFF, op.size))
        if insn.mnemonic.startswith(_STRING_OPS):
            candidates += [(self.reg("rdi"), 8), (self.reg("rsi"), 8)]
        if insn.mnemonic.startswith(("push", "call")):
            candidates.append((self.reg("rsp") - 8, 8))
        if insn.mnemonic.startswith(("pop", "ret", "leave")):
            candidates.append((self.reg("rsp"), 8))
        for addr, size in candidates:
            if addr & ~0xFFF == page:
                return addr
            if addr < page < addr + max(size, 1):
                return page          # an access straddling into the faulting page
        return page

    def _cs_reg(self, insn, reg_id: int) -> int:
        return self.uc.reg_read(getattr(x86, "UC_X86_REG_" + insn.reg_name(reg_id).upper()))

    def close(self) -> None:
        self.uc = None
        self.native = None
