"""CPU exceptions in user mode become signals (arch/x86/kernel/traps.c), and
the report Linux prints for an unhandled fatal signal, with the faulting
instruction disassembled."""
import functools

from ..arch import vcpu_exits as X
from .printk import KERN_ERR
from .signal import SIGNALS


@functools.cache
def _disassembler():
    import capstone                     # only for crash reports
    return capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)


def disassemble_at(k, task, rip: int) -> str:
    """The instruction at rip, read without faulting anything in."""
    code = bytearray()
    for addr in range(rip, rip + 15):
        paddr, _ = k.hw.cpu.walk(addr, "fetch")
        if paddr is None:
            break
        code.append(k.ram[paddr])
    for insn in _disassembler().disasm(bytes(code), rip):
        return f"{insn.mnemonic} {insn.op_str}".strip()
    return "(unreadable)"


def classify(k, task, exit) -> tuple:
    """(signal name, description, rip of the faulting instruction)."""
    reason = exit.reason
    if reason == X.EXIT_INVALID_OPCODE:
        return "SIGILL", "invalid opcode", exit.rip
    if reason == X.EXIT_HALT:
        return "SIGSEGV", "general protection (privileged instruction)", exit.rip - 1
    if reason == X.EXIT_BACKING:
        return "SIGBUS", f"access to a frame the host took back at {exit.address:#x}", exit.rip
    text = disassemble_at(k, task, exit.rip)
    mnemonic = text.split(" ", 1)[0]
    if mnemonic in ("div", "idiv"):
        return "SIGFPE", "divide error", exit.rip
    if mnemonic in ("int3",):
        return "SIGTRAP", "breakpoint", exit.rip
    if mnemonic in ("ud2", "ud1", "ud0"):
        return "SIGILL", "invalid opcode", exit.rip
    return "SIGSEGV", "general protection", exit.rip


def report_fatal(k, task, signame: str, what: str, rip: int) -> None:
    """show_signal_msg(): one line on the console with the instruction at rip."""
    regs = k.hw.cpu.regs()
    k.printk(KERN_ERR, f"{task.comm}[{task.pid}]: {what} ip {rip:016x} sp {regs['rsp']:016x} "
                       f"in {task.exe_path}: {signame}: {disassemble_at(k, task, rip)}")


def do_trap(k, task, exit) -> None:
    from .signal import has_handler, siginfo
    signame, what, rip = classify(k, task, exit)
    sig = SIGNALS[signame]
    if has_handler(task, sig):
        k.force_sig(task, sig, siginfo(sig, 0, addr=rip))
        return
    k.last_fatal = (signame, what, rip, disassemble_at(k, task, rip))
    report_fatal(k, task, signame, what, rip)
    k.force_sig(task, SIGNALS[signame])
