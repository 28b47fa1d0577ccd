"""CPU exceptions in user mode become signals (arch/x86/kernel/traps.c), and
the report Linux prints for an unhandled fatal signal, with the faulting
instruction disassembled.

The vCPU runs user code at CPL 3, so the hardware raises the exceptions itself:
#GP for privileged instructions, #UD, #DE, #BP, #DB (TF single-step), #SS. An
`int n` reaches us with its vector and RIP after the instruction; only
`int $0x80` (the 32-bit system call) and `int3`/`int $3` have a gate user mode
may use, every other vector is a #GP on the `int` itself."""
import functools

from ..arch import vcpu_exits as X
from .printk import KERN_ERR
from .signal import SIGNALS



@functools.cache
def _disassemblers():
    """(plain, detailed) capstone decoders, made when a trap first needs one (capstone's binding takes
    ~30 ms to import: a run without traps does not pay it)."""
    import capstone
    plain = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    detailed = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    detailed.detail = True
    return plain, detailed

# arch/x86/include/asm/trapnr.h
X86_TRAP_DE, X86_TRAP_DB, X86_TRAP_BP, X86_TRAP_OF, X86_TRAP_UD = 0, 1, 3, 4, 6
X86_TRAP_SS, X86_TRAP_GP, X86_TRAP_PF, X86_TRAP_MF, X86_TRAP_AC, X86_TRAP_XF = 12, 13, 14, 16, 17, 19
IA32_SYSCALL_VECTOR = 0x80
# include/uapi/asm-generic/siginfo.h
SI_KERNEL = 0x80
ILL_ILLOPN = 2
FPE_INTDIV, FPE_FLTDIV, FPE_FLTOVF, FPE_FLTUND, FPE_FLTRES, FPE_FLTINV = 1, 3, 4, 5, 6, 7
TRAP_BRKPT, TRAP_TRACE = 1, 2
BUS_ADRALN = 1
# instructions a user program may not run that this CPU reports as something else
ICEBP = b"\xf1"                         # int1: Unicorn decodes no such instruction
SYSENTER = b"\x0f\x34"                  # #GP in QEMU's model; an AMD CPU (our CPUID) raises #UD in long mode
# #UD in Unicorn, #GP at CPL 3 on a CPU: vmcall and vmmcall (a hypervisor answers CPL 3 with #GP),
# rdpmc with CR4.PCE clear (QEMU leaves rdpmc unimplemented)
GP_NOT_UD = (b"\x0f\x01\xc1", b"\x0f\x01\xd9", b"\x0f\x33")
# stack-segment references: a non-canonical address through them is #SS, not #GP
_STACK_MNEMONICS = ("push", "pop", "call", "ret", "leave", "enter")


def read_code(k, rip: int, length: int = 15) -> bytes:
    """The bytes at rip the CPU would fetch, read without faulting anything in."""
    code = bytearray()
    for addr in range(rip, rip + length):
        paddr, _ = k.hw.cpu.walk(addr & 0xFFFFFFFFFFFFFFFF, "fetch")
        if paddr is None:
            break
        code.append(k.ram[paddr])
    return bytes(code)


def disassemble_at(k, task, rip: int) -> str:
    """The instruction at rip, read without faulting anything in."""
    for insn in _disassemblers()[0].disasm(read_code(k, rip), rip):
        return f"{insn.mnemonic} {insn.op_str}".strip()
    return "(unreadable)"


def is_canonical(addr: int) -> bool:
    return (addr >> 47) in (0, 0x1FFFF)


def noncanonical_vector(k, rip: int) -> int:
    """A memory access to a non-canonical address faults before paging: #SS when it goes
    through the stack segment (push, pop, call, ret, or RSP/RBP as the base), else #GP."""
    from capstone import x86_const as cs_x86
    insn = next(_disassemblers()[1].disasm(read_code(k, rip), rip, 1), None)
    if insn is None:
        return X86_TRAP_GP
    if insn.mnemonic.startswith(_STACK_MNEMONICS):
        return X86_TRAP_SS
    for op in insn.operands:
        if op.type == cs_x86.X86_OP_MEM and op.mem.base in (cs_x86.X86_REG_RSP, cs_x86.X86_REG_RBP,
                                                             cs_x86.X86_REG_ESP, cs_x86.X86_REG_EBP):
            return X86_TRAP_SS
    return X86_TRAP_GP


def _software_int(k, rip: int, vector: int) -> bool:
    """Did `int $vector` (cd NN) just run? Exceptions leave RIP on the faulting instruction;
    an `int n` leaves it after the two bytes."""
    return read_code(k, rip - 2, 2) == bytes((0xCD, vector))


def classify(k, task, exit) -> tuple:
    """(signal name, si_code, si_addr, description, rip of the faulting instruction, trap number,
    error code) as Linux's handlers choose them."""
    reason = exit.reason
    rip = exit.rip
    error_code = 0
    if reason == X.EXIT_BACKING:
        return "SIGBUS", 0, exit.address, f"access to a frame the host took back at {exit.address:#x}", rip, \
            X86_TRAP_PF, exit.error_code
    if reason == X.EXIT_HALT:                       # hlt at CPL 0: a vCPU that never entered user mode
        return "SIGSEGV", SI_KERNEL, 0, "general protection (privileged instruction)", rip - 1, X86_TRAP_GP, 0
    if reason == X.EXIT_INVALID_OPCODE:
        vector = X86_TRAP_UD
    elif reason == X.EXIT_TRAP:
        vector = exit.vector
        # int3/int $3, int $4 (#OF, a trap) and int $0x80 have gates user mode may use
        if vector not in (X86_TRAP_BP, X86_TRAP_OF, IA32_SYSCALL_VECTOR) and \
                (vector >= 32 or _software_int(k, rip, vector)):
            # a gate user mode may not use: #GP on the int, the error code naming the IDT entry
            vector, rip, error_code = X86_TRAP_GP, rip - 2, vector << 3 | 2
    else:                                           # an emulator error with no vector
        vector = X86_TRAP_GP
    return _signal_for(k, vector, rip, error_code)


def _signal_for(k, vector: int, rip: int, error_code: int) -> tuple:
    """What Linux's handler for `vector` sends (arch/x86/kernel/traps.c)."""
    code = read_code(k, rip, 3)
    if vector == X86_TRAP_UD and code.startswith(GP_NOT_UD):
        vector = X86_TRAP_GP
    elif vector == X86_TRAP_GP and code.startswith(SYSENTER):
        vector = X86_TRAP_UD
    if vector == X86_TRAP_UD and code.startswith(ICEBP):     # int1: a #DB trap without DR6 bits
        return "SIGTRAP", TRAP_BRKPT, rip + 1, "trace trap", rip + 1, X86_TRAP_DB, 0
    if vector == X86_TRAP_UD:                       # exc_invalid_op
        return "SIGILL", ILL_ILLOPN, rip, "invalid opcode", rip, vector, error_code
    if vector == X86_TRAP_DE:                       # exc_divide_error
        return "SIGFPE", FPE_INTDIV, rip, "divide error", rip, vector, error_code
    if vector == X86_TRAP_BP:                       # do_int3_user: force_sig(SIGTRAP)
        return "SIGTRAP", SI_KERNEL, 0, "int3", rip, vector, error_code
    if vector == X86_TRAP_DB:                       # exc_debug_user: single-step
        return "SIGTRAP", TRAP_TRACE, rip, "trace trap", rip, vector, error_code
    if vector == X86_TRAP_OF:                       # exc_overflow
        return "SIGSEGV", SI_KERNEL, 0, "overflow", rip, vector, error_code
    if vector == X86_TRAP_SS:                       # exc_stack_segment
        return "SIGBUS", SI_KERNEL, 0, "stack segment", rip, vector, error_code
    if vector == X86_TRAP_AC:
        return "SIGBUS", BUS_ADRALN, 0, "alignment check", rip, vector, error_code
    if vector in (X86_TRAP_MF, X86_TRAP_XF):       # math_error()
        return "SIGFPE", fpu_exception_code(k, vector), rip, "floating point exception", rip, vector, 0
    return "SIGSEGV", SI_KERNEL, 0, "general protection", rip, vector, error_code


def fpu_exception_code(k, trap_nr: int) -> int:
    """fpu__exception_code(): the unmasked exception, most important first. 0 (a trap with nothing
    unmasked, e.g. ES loaded by fldenv) is where Linux sends nothing and the task traps again
    forever; we still send SIGFPE, so that such a loop cannot hold the vCPU without retiring anything."""
    cwd, swd, mxcsr = k.hw.cpu.fpu_exception_state()
    err = swd & ~cwd if trap_nr == X86_TRAP_MF else ~(mxcsr >> 7) & mxcsr
    for bits, code in ((0x001, FPE_FLTINV), (0x004, FPE_FLTDIV), (0x008, FPE_FLTOVF), (0x012, FPE_FLTUND),
                       (0x020, FPE_FLTRES)):
        if err & bits:
            return code
    return 0


def report_fatal(k, task, signame: str, what: str, rip: int) -> None:
    """show_signal_msg(): one line on the console with the instruction at rip."""
    regs = k.hw.cpu.regs()
    k.printk(KERN_ERR, f"{task.comm}[{task.pid}]: {what} ip {rip:016x} sp {regs['rsp']:016x} "
                       f"in {task.exe_path}: {signame}: {disassemble_at(k, task, rip)}")


def force_trap_signal(k, task, signame: str, code: int, addr: int, what: str, rip: int, trap_nr: int,
                      error_code: int, cr2: int = 0) -> None:
    """The signal for a fault at rip: to the program's handler (RIP at the instruction, as the
    sigcontext shows it, with the trap number, error code and CR2 Linux keeps in the thread),
    or fatal with Linux's one-line report."""
    from .signal import has_handler, siginfo
    sig = SIGNALS[signame]
    task.trap_nr, task.error_code, task.cr2 = trap_nr, error_code, cr2
    k.hw.cpu.set_reg("rip", rip)
    if has_handler(task, sig):
        k.force_sig(task, sig, siginfo(sig, code, addr=addr))
        return
    k.last_fatal = (signame, what, rip, disassemble_at(k, task, rip))
    report_fatal(k, task, signame, what, rip)
    k.force_sig(task, sig)


def do_trap(k, task, exit) -> None:
    if exit.reason == X.EXIT_TRAP and exit.vector == IA32_SYSCALL_VECTOR:
        k.do_int80_syscall_32(task)
        return
    force_trap_signal(k, task, *classify(k, task, exit))


def do_noncanonical(k, task, exit) -> None:
    """A user access to a non-canonical address: the CPU raises #GP or #SS, not #PF."""
    force_trap_signal(k, task, *_signal_for(k, noncanonical_vector(k, exit.rip), exit.rip, 0))
