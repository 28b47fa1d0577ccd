"""The acceptance test: memhog in a 512 MiB guest, one fault per page, and honest A/D bits."""
import pytest

from ballast_testlib import boot, firmware
from guestos.kernel.main import Kernel
from guestos.mm.pgtable import _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_NX, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER

GUEST_MEM = 512 << 20
PAGES_256M = (256 << 20) // 4096        # 65536


def memhog(size: str, passes: str, **kw):
    chunks = []
    run = boot(firmware("memhog"), [size, passes], mem=GUEST_MEM, name="memhog", console_sink=chunks.append, **kw)
    run.extra["sink"] = b"".join(chunks)
    return run


@pytest.fixture(scope="module")
def runs():
    return {
        "256M 2": memhog("256M", "2"),
        "256M 1": memhog("256M", "1"),
        "4K 1": memhog("4K", "1"),
    }


def test_memhog_256M_two_passes_verifies_every_page(runs):
    run = runs["256M 2"]
    assert run.status == 0 and run.code == 0
    assert run.output == b"memhog: 268435456 bytes, 2 passes, 65536 pages verified\n"
    assert run.extra["sink"] == run.output            # the console sink saw exactly the same bytes
    assert run.last_fatal is None
    assert run.meminfo["MemTotal"] > 500 << 10        # KiB: nearly all of the 512 MiB


def test_second_pass_adds_no_faults(runs):
    assert runs["256M 1"].code == 0
    assert runs["256M 2"].vmstat["pgfault"] == runs["256M 1"].vmstat["pgfault"]


def test_one_fault_per_page_of_the_mapping(runs):
    # 4K maps one page, 256M maps 65536; everything else the program does is the same.
    # Page-table pages are allocated inside those faults, they are not faults themselves.
    extra = runs["256M 1"].vmstat["pgfault"] - runs["4K 1"].vmstat["pgfault"]
    assert extra == PAGES_256M - 1


def test_every_page_is_returned_at_exit(runs):
    base = runs["4K 1"]
    for key in ("256M 1", "256M 2"):
        run = runs[key]
        assert run.vmstat["nr_anon_pages"] == 0
        assert run.vmstat["nr_page_table_pages"] == 0
        # free pages live in the buddy lists or on the per-cpu list
        assert run.vmstat["nr_free_pages"] + run.pcp_count == base.vmstat["nr_free_pages"] + base.pcp_count
        assert run.vmstat["pgalloc_normal"] - run.vmstat["pgfree"] == \
            base.vmstat["pgalloc_normal"] - base.vmstat["pgfree"]


# --- accessed and dirty bits, seen while the process is alive --------------------------

AD_PROGRAM = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TOUCHED 16
#define SPAN 24

int main(void) {
    volatile char *p = mmap(NULL, SPAN * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 3;
    unsigned long sum = 0;
    for (int i = 0; i < TOUCHED; i++) {
        if (i % 2 == 0) p[i * 4096 + 100] = (char)(i + 1);    /* even pages: written */
        else sum += p[i * 4096 + 200];                        /* odd pages: only read */
    }
    printf("%p\n", (void *)p);
    fflush(stdout);
    syscall(SYS_getppid);                                     /* the marker: the test looks now */
    printf("sum=%lu\n", sum);
    return 0;
}
"""
GETPPID = 110


def test_ptes_carry_accessed_and_dirty_bits(compile_c, monkeypatch):
    exe = compile_c(AD_PROGRAM, "adbits", flags=("-static", "-O1"))
    chunks = []
    snapshot = {}
    original = Kernel.do_syscall

    def do_syscall(self, task):
        if self.hw.cpu.syscall_args()[0] == GETPPID and not snapshot:
            base = int(b"".join(chunks).split()[0], 16)
            snapshot["base"] = base
            ptes = []
            for i in range(24):
                slot = self.mm.pte_offset(task.mm, base + i * 4096)
                ptes.append(None if slot is None else self.mm.q[slot])
            snapshot["ptes"] = ptes
            # what the MMU would grant now (a walk only adds A, which every touched page has)
            snapshot["perms"] = [self.hw.cpu.walk(base + i * 4096, "read") for i in range(16)]
        return original(self, task)

    monkeypatch.setattr(Kernel, "do_syscall", do_syscall)
    run = boot(exe.read_bytes(), mem=64 << 20, name="adbits", console_sink=chunks.append)
    assert run.code == 0
    assert run.output.endswith(b"sum=0\n")
    assert "ptes" in snapshot, "the marker syscall was not seen"
    assert snapshot["base"] % 4096 == 0
    ptes = snapshot["ptes"]
    for i in range(16):
        pte = ptes[i]
        assert pte is not None and pte & _PAGE_PRESENT, f"page {i} not mapped"
        assert pte & _PAGE_USER and pte & _PAGE_RW and pte & _PAGE_NX, f"page {i}: {pte:#x}"
        assert pte & _PAGE_ACCESSED, f"page {i} lacks A: {pte:#x}"
        if i % 2 == 0:
            assert pte & _PAGE_DIRTY, f"written page {i} lacks D: {pte:#x}"
        else:
            assert not pte & _PAGE_DIRTY, f"read-only page {i} has D: {pte:#x}"
    for i in range(16, 24):
        assert ptes[i] is None or not ptes[i] & _PAGE_PRESENT, f"untouched page {i} is mapped: {ptes[i]:#x}"
    # a clean page is handed to the TLB without write permission, so the first write sets D
    UC_PROT_WRITE = 2
    for i, (paddr, perms) in enumerate(snapshot["perms"]):
        assert paddr is not None
        assert bool(perms & UC_PROT_WRITE) == (i % 2 == 0), (i, perms)
