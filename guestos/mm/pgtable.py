"""x86-64 page-table entries (arch/x86/include/asm/pgtable_types.h)."""

_PAGE_PRESENT = 1 << 0
_PAGE_RW = 1 << 1
_PAGE_USER = 1 << 2
_PAGE_PWT = 1 << 3
_PAGE_PCD = 1 << 4
_PAGE_ACCESSED = 1 << 5
_PAGE_DIRTY = 1 << 6
_PAGE_PSE = 1 << 7
_PAGE_NX = 1 << 63
PTE_PFN_MASK = 0x000FFFFFFFFFF000

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PTRS_PER_TABLE = 512
LEVEL_SHIFTS = (39, 30, 21, 12)     # pgd, pud, pmd, pte

# the table entry above a page table: everything allowed, the leaf decides
_PAGE_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER

# #PF error code
PF_PROT = 1 << 0
PF_WRITE = 1 << 1
PF_USER = 1 << 2
PF_RSVD = 1 << 3
PF_INSTR = 1 << 4


def pte_pfn(pte: int) -> int:
    return (pte & PTE_PFN_MASK) >> PAGE_SHIFT


def mk_pte(pfn: int, writable: bool, executable: bool) -> int:
    pte = (pfn << PAGE_SHIFT) | _PAGE_PRESENT | _PAGE_USER
    if writable:
        pte |= _PAGE_RW
    if not executable:
        pte |= _PAGE_NX
    return pte


def page_align(n: int) -> int:
    return (n + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


def page_start(n: int) -> int:
    return n & ~(PAGE_SIZE - 1)
