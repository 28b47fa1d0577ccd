"""The hardware page walker (cython_ext.mmu) on page tables built by hand, and a bare vCPU running code."""
import pytest

from vmm.clock import VirtualClock
from vmm.cpu import ExitReason, Vcpu
from vmm.memory import GuestRAM

P, RW, US, PWT, PCD, A, D, PS = 1, 2, 4, 8, 16, 32, 64, 128
NX = 1 << 63
PF_PROT, PF_WRITE, PF_USER, PF_RSVD, PF_INSTR = 1, 2, 4, 8, 16
UC_PROT_READ, UC_PROT_WRITE, UC_PROT_EXEC = 1, 2, 4
TABLE = P | RW | US

# guest-physical layout of the hand-built tables
PML4, PDPT, PD, PT = 0x10000, 0x11000, 0x12000, 0x13000
CODE_VA, CODE_PA = 0x400000, 0x100000          # PD[2] -> PT[0]
DATA_VA, DATA_PA = 0x401000, 0x101000          # PT[1]: writable, NX
RO_VA, RO_PA = 0x402000, 0x102000              # PT[2]: read-only, NX
SUP_VA, SUP_PA = 0x403000, 0x103000            # PT[3]: supervisor only
HOLE_VA = 0x404000                             # PT[4]: not present
STACK_VA, STACK_PA = 0x405000, 0x105000        # PT[5]: writable, NX
BIG_VA, BIG_PA = 0x600000, 0x200000            # PD[3]: a 2 MiB page


class Machine:
    def __init__(self):
        self.ram = GuestRAM(16 << 20)
        self.cpu = Vcpu(self.ram, VirtualClock())
        self.q = self.ram.view.cast("Q")

    def set(self, paddr, value):
        self.q[paddr >> 3] = value

    def get(self, paddr):
        return self.q[paddr >> 3]


@pytest.fixture
def m():
    m = Machine()
    m.set(PML4, PDPT | TABLE)
    m.set(PDPT, PD | TABLE)
    m.set(PD + 2 * 8, PT | TABLE)
    m.set(PD + 3 * 8, BIG_PA | P | RW | US | PS | NX)
    m.set(PT + 0 * 8, CODE_PA | P | US)
    m.set(PT + 1 * 8, DATA_PA | P | RW | US | NX)
    m.set(PT + 2 * 8, RO_PA | P | US | NX)
    m.set(PT + 3 * 8, SUP_PA | P | RW | NX)
    m.set(PT + 5 * 8, STACK_PA | P | RW | US | NX)
    m.cpu.cr3 = PML4
    yield m
    m.cpu.close()


def test_4k_translation(m):
    paddr, perms = m.cpu.walk(DATA_VA + 0x123, "read")
    assert paddr == DATA_PA + 0x123
    assert perms & UC_PROT_READ and not perms & UC_PROT_EXEC
    assert m.cpu.walk(CODE_VA + 0xFFF, "fetch")[0] == CODE_PA + 0xFFF


def test_2m_page(m):
    paddr, perms = m.cpu.walk(BIG_VA + 0x154321, "read")
    assert paddr == BIG_PA + 0x154321
    assert m.get(PD + 3 * 8) & A and not m.get(PD + 3 * 8) & D
    paddr, perms = m.cpu.walk(BIG_VA + 0x1FFFFF, "write")
    assert paddr == BIG_PA + 0x1FFFFF
    assert perms & UC_PROT_WRITE
    assert m.get(PD + 3 * 8) & D


def test_not_present(m):
    paddr, error = m.cpu.walk(HOLE_VA, "read")
    assert paddr is None
    assert not error & PF_PROT and error & PF_USER and not error & PF_WRITE
    paddr, error = m.cpu.walk(HOLE_VA, "write")
    assert paddr is None and error == PF_USER | PF_WRITE
    # a missing table higher up is just as not-present
    paddr, error = m.cpu.walk(0x40000000, "fetch")
    assert paddr is None and error == PF_USER | PF_INSTR


def test_supervisor_page_is_a_protection_fault(m):
    paddr, error = m.cpu.walk(SUP_VA, "read")
    assert paddr is None and error & PF_PROT and error & PF_USER
    paddr, error = m.cpu.walk(SUP_VA, "write")
    assert paddr is None and error == PF_PROT | PF_WRITE | PF_USER
    # the user bit must be set at every level
    m.set(PDPT, PD | P | RW)
    paddr, error = m.cpu.walk(DATA_VA, "read")
    assert paddr is None and error & PF_PROT


def test_write_to_read_only(m):
    assert m.cpu.walk(RO_VA, "read")[0] == RO_PA
    paddr, error = m.cpu.walk(RO_VA, "write")
    assert paddr is None
    assert error & PF_PROT and error & PF_WRITE
    assert not m.get(PT + 2 * 8) & D
    # read-only at a higher level wins over a writable leaf
    m.set(PD + 2 * 8, PT | P | US)
    paddr, error = m.cpu.walk(DATA_VA, "write")
    assert paddr is None and error & PF_PROT and error & PF_WRITE


def test_fetch_from_nx(m):
    paddr, error = m.cpu.walk(DATA_VA, "fetch")
    assert paddr is None
    assert error & PF_INSTR and error & PF_PROT
    paddr, perms = m.cpu.walk(CODE_VA, "fetch")
    assert paddr == CODE_PA and perms & UC_PROT_EXEC


def test_non_canonical_and_kernel_half(m):
    paddr, error = m.cpu.walk(0xFFFF_8000_0000_0000, "read")
    assert paddr is None and error & PF_PROT


def test_table_outside_ram_is_a_reserved_fault(m):
    m.set(PT + 6 * 8, (64 << 20) | P | RW | US)    # a frame beyond the 16 MiB of RAM is fine to name
    m.set(PD + 4 * 8, (1 << 40) | TABLE)           # but a table there cannot be read
    paddr, error = m.cpu.walk(0x800000, "read")
    assert paddr is None and error & PF_RSVD


def test_accessed_on_every_level_and_dirty_only_on_write(m):
    for addr in (PML4, PDPT, PD + 2 * 8, PT + 1 * 8):
        assert not m.get(addr) & A
    paddr, perms = m.cpu.walk(DATA_VA, "read")
    assert paddr == DATA_PA
    for addr in (PML4, PDPT, PD + 2 * 8, PT + 1 * 8):
        assert m.get(addr) & A, hex(addr)
    assert not m.get(PT + 1 * 8) & D
    assert not perms & UC_PROT_WRITE              # clean: the first write must come back to set D
    m.cpu.walk(DATA_VA, "fetch")                  # a faulting fetch does not dirty anything
    assert not m.get(PT + 1 * 8) & D
    paddr, perms = m.cpu.walk(DATA_VA, "write")
    assert paddr == DATA_PA
    assert m.get(PT + 1 * 8) & D
    assert perms & UC_PROT_WRITE
    # D is only ever set on the leaf
    for addr in (PML4, PDPT, PD + 2 * 8):
        assert not m.get(addr) & D
    # once dirty, even a read walk grants write
    assert m.cpu.walk(DATA_VA, "read")[1] & UC_PROT_WRITE
    # the PTE's other bits are untouched
    assert m.get(PT + 1 * 8) == DATA_PA | P | RW | US | NX | A | D


def test_read_only_page_never_grants_write(m):
    m.set(PT + 2 * 8, RO_PA | P | US | NX | D)     # dirty but read-only
    paddr, perms = m.cpu.walk(RO_VA, "read")
    assert paddr == RO_PA and not perms & UC_PROT_WRITE


# --- running code through the tables -------------------------------------------------

MOV_RAX_60_SYSCALL = bytes.fromhex("48c7c03c000000" "0f05")            # mov rax, 60; syscall
MOV_RAX_IMM = bytes.fromhex("48c7c0")                                   # mov rax, imm32
MOV_PTR_RAX_AL = bytes.fromhex("8800")                                  # mov [rax], al


def load_code(m, code: bytes):
    m.ram.write(CODE_PA, code)
    m.cpu.flush_code()
    m.cpu.set_reg("rip", CODE_VA)
    m.cpu.set_reg("rsp", STACK_VA + 0x1000)


def test_syscall_exit(m):
    load_code(m, MOV_RAX_60_SYSCALL)
    exit = m.cpu.run()
    assert exit.reason == ExitReason.SYSCALL
    assert m.cpu.reg("rip") == CODE_VA + len(MOV_RAX_60_SYSCALL)
    assert exit.rip == CODE_VA + len(MOV_RAX_60_SYSCALL)
    assert m.cpu.syscall_args()[0] == 60
    assert m.cpu.icount == 2


def store_to(addr: int) -> bytes:
    return MOV_RAX_IMM + addr.to_bytes(4, "little") + MOV_PTR_RAX_AL + MOV_RAX_60_SYSCALL


def test_write_to_unmapped_address_is_a_page_fault_at_the_instruction(m):
    code = store_to(HOLE_VA + 0x10)
    load_code(m, code)
    exit = m.cpu.run()
    assert exit.reason == ExitReason.PAGE_FAULT
    assert exit.access == "write"
    assert exit.error_code == PF_USER | PF_WRITE
    assert exit.address & ~0xFFF == HOLE_VA
    fault_rip = CODE_VA + len(MOV_RAX_IMM) + 4
    assert exit.rip == fault_rip
    assert m.cpu.reg("rip") == fault_rip
    # the kernel maps the page; the instruction is retried and the program goes on
    m.set(PT + 4 * 8, 0x104000 | P | RW | US | NX)
    m.cpu.flush_tlb()
    assert m.cpu.reg("rax") == HOLE_VA + 0x10      # the mov before the fault has retired
    exit = m.cpu.run()
    assert exit.reason == ExitReason.SYSCALL
    assert m.ram.read(0x104010, 1) == bytes([(HOLE_VA + 0x10) & 0xFF])
    assert m.get(PT + 4 * 8) & D


def test_write_to_read_only_page_is_a_protection_fault(m):
    load_code(m, store_to(RO_VA))
    exit = m.cpu.run()
    assert exit.reason == ExitReason.PAGE_FAULT
    assert exit.access == "write"
    assert exit.error_code == PF_USER | PF_WRITE | PF_PROT
    assert exit.rip == CODE_VA + len(MOV_RAX_IMM) + 4


def test_first_write_to_a_clean_page_sets_dirty(m):
    m.cpu.walk(DATA_VA, "read")                     # now in the TLB as clean (read-only)
    assert not m.get(PT + 1 * 8) & D
    load_code(m, store_to(DATA_VA + 8))
    exit = m.cpu.run()
    assert exit.reason == ExitReason.SYSCALL
    assert m.get(PT + 1 * 8) & D


def test_fetch_from_unmapped_code(m):
    m.cpu.set_reg("rip", HOLE_VA)
    exit = m.cpu.run()
    assert exit.reason == ExitReason.PAGE_FAULT
    assert exit.access == "fetch"
    assert exit.error_code & PF_INSTR
    assert exit.rip == HOLE_VA


def test_exact_fault_address_is_reported(m):
    load_code(m, store_to(HOLE_VA + 0x123))
    exit = m.cpu.run()
    assert exit.reason == ExitReason.PAGE_FAULT
    assert exit.address == HOLE_VA + 0x123


def test_icount_counts_retired_instructions_across_a_fault(m):
    load_code(m, store_to(HOLE_VA))
    assert m.cpu.run().reason == ExitReason.PAGE_FAULT
    m.set(PT + 4 * 8, 0x104000 | P | RW | US | NX)
    m.cpu.flush_tlb()
    assert m.cpu.run().reason == ExitReason.SYSCALL
    assert m.cpu.icount == 4                        # mov, mov, mov, syscall


LOOP = b"\x90" * 5 + bytes.fromhex("48ffc1") + bytes.fromhex("eb") + bytes([0x100 - 10])   # 5 nops; inc rcx; jmp


def test_quantum_exit_stops_at_a_block_boundary(m):
    load_code(m, LOOP)
    m.cpu.set_deadline(100)
    exit = m.cpu.run()
    assert exit.reason == ExitReason.QUANTUM
    assert m.cpu.reg("rip") == CODE_VA
    assert m.cpu.icount >= 100


def test_quantum_exit_counts_only_retired_instructions(m):
    load_code(m, LOOP)
    for deadline in (100, 200, 300):
        m.cpu.set_deadline(deadline)
        assert m.cpu.run().reason == ExitReason.QUANTUM
    assert m.cpu.icount == 7 * m.cpu.reg("rcx")     # 7 instructions per iteration, rcx counts them
