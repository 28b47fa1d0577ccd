"""execve of a static ELF: a new mm, its VMAs, and the initial stack (fs/exec.c, fs/binfmt_elf.c)."""

from ..fs.binfmt_elf import ENOEXEC, create_elf_tables, elf_auxv, parse_elf
from ..fs.names import fs_decode, fs_encode
from . import futex
from .errno import E2BIG, ENAMETOOLONG, SyscallError
from ..mm.mmap import MM, STACK_RLIMIT, STACK_TOP, VM_EXEC, VM_GROWSDOWN, VM_READ, VM_WRITE, VMA
from ..mm.pgtable import page_align, page_start
from ..sha256 import sha256

# how much of the stack VMA exists at exec; it grows down on faults up to RLIMIT_STACK
INITIAL_STACK = 128 << 10


def load_elf_binary(k, task, inode, argv: list, envp: list) -> None:
    """Replace task's address space with the program in inode (a ramfs file)."""
    data = inode.read(0, inode.size)
    image = parse_elf(data)                      # raises ENOEXEC with a one-line reason
    de_thread(k, task)                           # the point of no return: the other threads go
    if task.mm is not None:
        futex.mm_release(k, task)                # exec_mm_release(): robust list, clear_child_tid
    old_mm = task.mm
    mm = MM(pgd=k.mm.pgd_alloc())
    k.live_mms.append(mm)
    for seg in image.segments:
        flags = (VM_READ if seg.prot_read else 0) | (VM_WRITE if seg.prot_write else 0) | \
                (VM_EXEC if seg.prot_exec else 0)
        start = page_start(seg.vaddr)
        file_end = page_align(seg.vaddr + seg.filesz)
        mem_end = page_align(seg.vaddr + seg.memsz)
        if seg.filesz:
            mm.insert(VMA(start, file_end, flags, inode, (seg.offset - (seg.vaddr - start)) >> 12,
                          mm.new_anon_id(), inode.path))
        if mem_end > file_end:
            mm.insert(VMA(file_end, mem_end, flags, None, 0, mm.new_anon_id(), "bss"))
    mm.start_brk = mm.brk = image.brk_start
    stack_vma = VMA(STACK_TOP - INITIAL_STACK, STACK_TOP, VM_READ | VM_WRITE | VM_GROWSDOWN, None, 0,
                    mm.new_anon_id(), "[stack]")
    mm.insert(stack_vma)
    mm.start_stack = STACK_TOP
    sysinfo_ehdr = k.vdso.map(mm) if k.vdso is not None else None
    task.mm = mm
    task.exe_path = inode.path
    task.cmdline = b"".join(a + b"\0" for a in argv)
    task.environ = b"".join(e + b"\0" for e in envp)
    filename = getattr(inode, "filename", inode.path)                     # the path as exec'd
    task.comm = fs_decode(fs_encode(filename).rsplit(b"/", 1)[-1][:15])      # TASK_COMM_LEN bytes
    k.switch_mm(mm)
    if old_mm is not None:
        k.mmput(old_mm)
    # padzero(): the bytes of the last file page past p_filesz belong to .bss. Linux's clear_user
    # fails on a segment that is not writable and the error is ignored: such a page keeps the file's bytes
    for seg in image.segments:
        if seg.memsz > seg.filesz and (seg.vaddr + seg.filesz) & 0xFFF and seg.prot_write:
            end = seg.vaddr + seg.filesz
            k.mm.copy_to_user(task, end, bytes(page_align(end) - end))
    random_bytes = sha256(b"AT_RANDOM" + k.boot_seed + task.pid.to_bytes(4, "little")).digest()[:16]
    rsp, stack = create_elf_tables(STACK_TOP, argv, envp, elf_auxv(image, sysinfo_ehdr=sysinfo_ehdr), random_bytes,
                                   execfn=fs_encode(filename))
    k.mm.copy_to_user(task, rsp, stack)
    regs = {name: 0 for name in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10",
                                 "r11", "r12", "r13", "r14", "r15", "fs_base", "gs_base")}
    regs.update(rip=image.entry, rsp=rsp, eflags=0x202)
    k.hw.cpu.set_regs(regs)
    k.hw.cpu.reset_fpu()
    k.hw.cpu.flush_code()
    task.regs = {}
    if task.files is not None:
        task.files.close_on_exec()
    task.vfork_parent = None                   # a vfork parent may run again
    task.rseq = task.rseq_len = task.rseq_sig = 0           # rseq_execve()
    task.sas_ss_sp = task.sas_ss_size = task.sas_ss_flags = 0    # the alternate stack was in the old mm
    task.did_exec = True
    # flush_signal_handlers(): caught signals go back to SIG_DFL (the handlers were in the old image)
    task.sigactions = {sig: (1, 0, 0, 0) for sig, act in task.sigactions.items() if act[0] == 1}


def de_thread(k, task) -> None:
    """exec in a multithreaded process: every other thread dies (SIGKILL, silently), and a thread
    that is not the leader takes over the leader's pid, parent and place (fs/exec.c de_thread)."""
    from .exit import exit_with_status
    sig = task.signal
    for thread in list(sig.threads):
        if thread is not task and not thread.exited:
            sig.live += 1                         # not the group's death: no SIGCHLD on the way
            exit_with_status(k, thread, 9)
            sig.live -= 1
    leader = task.group_leader
    if leader is task:
        return
    k.tasks.pop(task.pid, None)
    k.tasks.pop(leader.pid, None)
    sig.threads.remove(leader)
    sig.threads.remove(task)
    sig.threads.insert(0, task)
    task.pid = leader.pid                         # exchange_tid(): we become the process
    task.group_leader = task
    task.parent, task.exit_signal, task.children = leader.parent, leader.exit_signal, leader.children + task.children
    for child in task.children:
        child.parent = task
    if task.parent is not None:
        siblings = task.parent.children
        siblings[siblings.index(leader)] = task
    leader.state = "X"
    leader.children = []
    k.tasks[task.pid] = task
    if k.init_task is leader:
        k.init_task = task


MAX_ARG_STRINGS = 0x7FFFFFFF
MAX_ARG_STRLEN = 32 * 4096                     # one argument or environment string
MAX_ARG_BYTES = 2 << 20                        # like _STK_LIM / 4: argv + envp


def _copy_strings(k, task, ptr: int) -> list:
    out, total = [], 0
    while ptr:
        addr = int.from_bytes(k.mm.copy_from_user(task, ptr + 8 * len(out), 8), "little")
        if not addr:
            break
        try:
            s = k.mm.strncpy_from_user(task, addr, MAX_ARG_STRLEN)
        except SyscallError as e:
            raise SyscallError(E2BIG if e.errno == ENAMETOOLONG else e.errno) from None
        total += len(s) + 1
        if total > MAX_ARG_BYTES:
            raise SyscallError(E2BIG)
        out.append(s)
    return out


def sys_execve(k, task, filename, argv, envp, *_):
    path = fs_decode(k.mm.getname(task, filename))
    inode = k.lookup_exec(path, task)
    args = _copy_strings(k, task, argv)
    env = _copy_strings(k, task, envp)
    try:
        load_elf_binary(k, task, inode, args, env)
    except ENOEXEC:
        raise SyscallError(8) from None
    return 0


__all__ = ["load_elf_binary", "ENOEXEC", "STACK_RLIMIT"]
