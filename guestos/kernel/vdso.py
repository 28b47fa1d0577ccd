"""The vDSO and the legacy vsyscall page (arch/x86/entry/vdso/vma.c, arch/x86/entry/vsyscall/).

Every process gets the vDSO image (firmware/src/vdso, built into firmware/bin/vdso.so: part of
the kernel image, as Linux links vdso-image-64 into the kernel) mapped read-only and executable,
with the [vvar] page just below it, and its address in AT_SYSINFO_EHDR. The pages are one copy
in the page cache shared by every process, as Linux's. How the vDSO reads time is explained in
firmware/src/vdso/vdso.c: a CPUID leaf of the machine gives the virtual clock, [vvar] what turns
it into each clock.

The vsyscall page at 0xffffffffff600000 is Linux 6.1's default, `vsyscall=xonly`: nothing is
mapped there; executing one of its three entries faults, and the fault handler does the call and
returns to the caller (emulate_vsyscall); reading the page is a segfault."""
import struct
from importlib.resources import files

from ..fs.ramfs import Inode
from ..mm.mmap import VM_EXEC, VM_READ, VMA
from .errno import SyscallError
from .sys import REALTIME_EPOCH_NS, sys_gettimeofday, sys_time

FIRMWARE_PACKAGE = "ballast_firmware"   # firmware/, installed as a package: found in a checkout and in a wheel
VVAR_START = 0x7FFFF7FFC000          # [vvar], then [vdso]: just under the largest stack
VDSO_START = VVAR_START + 4096
# struct vvar_data in vdso.c: seq, clock_mode, realtime_offset_ns, tz_minuteswest, tz_dsttime
VVAR_LAYOUT = struct.Struct("<IIqii")
VCLOCK_VIRTUAL = 1
VDSO_INO, VVAR_INO = 0x7FFF0001, 0x7FFF0002   # page-cache owners of the two images (not in any directory)                   # clock_mode: the virtual clock's CPUID leaf is there

VSYSCALL_ADDR = 0xFFFFFFFFFF600000
VSYSCALL_GETTIMEOFDAY, VSYSCALL_TIME, VSYSCALL_GETCPU = 0x000, 0x400, 0x800


def vdso_image() -> bytes | None:
    """firmware/bin/vdso.so, from the installed firmware package; None when it is not built."""
    try:
        image = (files(FIRMWARE_PACKAGE) / "bin" / "vdso.so").read_bytes()
    except (OSError, ModuleNotFoundError):
        return None
    return image if image[:4] == b"\x7fELF" else None


class Vdso:
    """The image and the vvar page, made once at boot."""

    def __init__(self, k, image: bytes):
        self.k = k
        self.size = (len(image) + 4095) & ~4095
        self.image = Inode(k, VDSO_INO, "[vdso]", 0o100555)
        self.image.write_initial(image)
        self.vvar = Inode(k, VVAR_INO, "[vvar]", 0o100444)
        self.vvar.write_initial(VVAR_LAYOUT.pack(0, VCLOCK_VIRTUAL, REALTIME_EPOCH_NS, 0, 0).ljust(4096, b"\0"))

    @classmethod
    def load(cls, k):
        """None when the image is not built (the kernel then runs without a vDSO)."""
        image = vdso_image()
        return None if image is None else cls(k, image)

    def map(self, mm) -> int:
        """arch_setup_additional_pages(): [vvar] and [vdso] in a new mm; returns AT_SYSINFO_EHDR."""
        mm.insert(VMA(VVAR_START, VVAR_START + 4096, VM_READ, self.vvar, 0, mm.new_anon_id(), "[vvar]"))
        mm.insert(VMA(VDSO_START, VDSO_START + self.size, VM_READ | VM_EXEC, self.image, 0, mm.new_anon_id(),
                      "[vdso]"))
        return VDSO_START


def emulate_vsyscall(k, task, address: int) -> bool:
    """A fetch fault in the vsyscall page: do the entry's call and return to the caller, as
    Linux's emulate_vsyscall. False when it is not an entry (the caller then signals SIGSEGV)."""
    cpu = k.hw.cpu
    entry = address - VSYSCALL_ADDR
    if entry not in (VSYSCALL_GETTIMEOFDAY, VSYSCALL_TIME, VSYSCALL_GETCPU) or cpu.reg("rip") != address:
        return False
    rsp = cpu.reg("rsp")
    try:
        ret_addr = struct.unpack("<Q", k.mm.copy_from_user(task, rsp, 8))[0]
        rdi, rsi = cpu.reg("rdi"), cpu.reg("rsi")
        k.charge(k.costs.syscall_ns)
        if entry == VSYSCALL_GETTIMEOFDAY:
            ret = sys_gettimeofday(k, task, rdi, rsi)
        elif entry == VSYSCALL_TIME:
            ret = sys_time(k, task, rdi)
        else:                                           # getcpu(cpu, node, cache): one CPU, node 0
            for ptr in (rdi, rsi):
                if ptr:
                    k.mm.copy_to_user(task, ptr, bytes(4))
            ret = 0
    except SyscallError as e:
        ret = -e.errno
    except Exception:                                   # a bad pointer: Linux sends SIGSEGV
        return False
    cpu.set_reg("rax", ret)
    cpu.set_reg("rip", ret_addr)
    cpu.set_reg("rsp", rsp + 8)
    return True
