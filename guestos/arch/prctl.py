"""arch_prctl (arch/x86/kernel/process_64.c)."""
from ..kernel.errno import EINVAL, EPERM, SyscallError

ARCH_SET_GS, ARCH_SET_FS, ARCH_GET_FS, ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004
TASK_SIZE = 0x7FFFFFFFF000


def sys_arch_prctl(k, task, code, addr, *_):
    cpu = k.hw.cpu
    if code in (ARCH_SET_FS, ARCH_SET_GS):
        if addr >= TASK_SIZE:
            raise SyscallError(EPERM)
        cpu.set_reg("fs_base" if code == ARCH_SET_FS else "gs_base", addr)
        return 0
    if code in (ARCH_GET_FS, ARCH_GET_GS):
        value = cpu.reg("fs_base" if code == ARCH_GET_FS else "gs_base")
        k.mm.copy_to_user(task, addr, value.to_bytes(8, "little"))
        return 0
    raise SyscallError(EINVAL)
