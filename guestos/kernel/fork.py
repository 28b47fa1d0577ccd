"""Process creation: clone, fork and vfork (kernel/fork.c), with copy-on-write address spaces."""
from ..mm.mmap import MM, VM_SHARED, VM_WRITE, VMA
from ..mm.mm_types import PAGE_MAPPING_ANON
from ..mm.pgtable import _PAGE_PRESENT, _PAGE_RW, pte_pfn
import struct

from ..fs.proc import max_threads
from .errno import E2BIG, EAGAIN, EINVAL, SyscallError
from .sched import Task

CSIGNAL = 0x000000FF
CLONE_VM = 0x00000100
CLONE_FS = 0x00000200
CLONE_FILES = 0x00000400
CLONE_SIGHAND = 0x00000800
CLONE_VFORK = 0x00004000
CLONE_PARENT = 0x00008000
CLONE_THREAD = 0x00010000
CLONE_SYSVSEM = 0x00040000
CLONE_SETTLS = 0x00080000
CLONE_PARENT_SETTID = 0x00100000
CLONE_CHILD_CLEARTID = 0x00200000
CLONE_CHILD_SETTID = 0x01000000


def dup_mmap(k, old: MM) -> MM:
    """A copy of old for a child: same VMAs; private writable pages shared read-only
    in both until one of them writes (copy_page_range with COW)."""
    mm = MM(pgd=k.mm.pgd_alloc())
    k.live_mms.append(mm)
    mm.start_brk, mm.brk, mm.start_stack = old.start_brk, old.brk, old.start_stack
    q = k.mm.q
    mem_map = k.mem_map
    wrprotected = False
    for vma in old.vmas:
        mm.vmas.append(VMA(vma.vm_start, vma.vm_end, vma.vm_flags, vma.vm_file, vma.vm_pgoff,
                           vma.anon_id, vma.name))
        cow = vma.vm_flags & VM_WRITE and not vma.vm_flags & VM_SHARED
        addr = vma.vm_start
        while addr < vma.vm_end:
            table_end = min(vma.vm_end, (addr | ((1 << 21) - 1)) + 1)
            src = k.mm.pte_offset(old, addr)
            if src is not None:
                for i in range((table_end - addr) >> 12):
                    pte = q[src + i]
                    if not pte & _PAGE_PRESENT:
                        if pte:                              # swapped out: the child shares the slot
                            q[k.mm.pte_alloc(mm, addr + (i << 12))] = pte
                            k.swap.swap_duplicate(pte >> 12)
                        continue
                    if cow and pte & _PAGE_RW:
                        pte &= ~_PAGE_RW
                        q[src + i] = pte
                        wrprotected = True
                    dst = k.mm.pte_alloc(mm, addr + (i << 12))
                    q[dst] = pte
                    pfn = pte_pfn(pte)
                    mem_map.set_refcount(pfn, mem_map.refcount(pfn) + 1)
                    mem_map.set_mapcount(pfn, mem_map.mapcount(pfn) + 1)
                    if mem_map.mapping(pfn) & PAGE_MAPPING_ANON:
                        mm.rss_anon += 1
                    else:
                        mm.rss_file += 1
            addr = table_end
    if wrprotected:
        k.flush_tlb()
    return mm


def copy_process(k, parent: Task, flags: int, newsp: int, tls: int, exit_signal: int = None) -> Task:
    """A new task: a process (its own mm, a copy) or, with CLONE_THREAD, a thread of the caller's
    process (same tgid, mm, files, signal handlers and shared pending set). Linux's flag checks."""
    if flags & CLONE_THREAD and not flags & CLONE_SIGHAND:
        raise SyscallError(EINVAL)                 # threads share signal handlers
    if flags & CLONE_SIGHAND and not flags & CLONE_VM:
        raise SyscallError(EINVAL)                 # shared handlers live in a shared mm
    if exit_signal is None:
        exit_signal = flags & CSIGNAL
    if exit_signal > 64:
        raise SyscallError(EINVAL)                 # not a valid exit signal
    if len(k.tasks) >= max_threads(k):
        raise SyscallError(EAGAIN)                 # threads-max: kernel stacks would fill an eighth of RAM
    k.lru_add_drain()
    thread = bool(flags & CLONE_THREAD)
    leader = parent.group_leader
    real_parent = leader.parent if thread or flags & CLONE_PARENT else parent
    if thread:
        exit_signal = -1                           # a thread is reaped by itself, never waited for
    elif flags & CLONE_PARENT:
        exit_signal = leader.exit_signal
    child = Task(pid=k.alloc_pid(), comm=parent.comm, exe_path=parent.exe_path, parent=real_parent,
                 sigactions=parent.sigactions if flags & CLONE_SIGHAND else dict(parent.sigactions),
                 sigmask=parent.sigmask, cwd=parent.cwd,
                 cwd_ino=parent.cwd_ino, start_time_ns=k.hw.clock.now_ns(), cmdline=parent.cmdline,
                 environ=parent.environ, exit_signal=exit_signal, rlimits=parent.rlimits,
                 pgid=parent.pgid, sid=parent.sid, umask=parent.umask, nice=parent.nice, groups=parent.groups,
                 tgid=parent.tgid if thread else 0, group_leader=leader if thread else None,
                 signal=parent.signal if thread else None)
    if flags & CLONE_FS:
        child.fs = parent.fs                       # one working directory and umask
    if not flags & CLONE_VM or flags & CLONE_VFORK:         # a thread starts without the alternate stack
        child.sas_ss_sp, child.sas_ss_size, child.sas_ss_flags = \
            parent.sas_ss_sp, parent.sas_ss_size, parent.sas_ss_flags
    if not flags & CLONE_VM:                       # rseq_fork(): a copy keeps the registration
        child.rseq, child.rseq_len, child.rseq_sig = parent.rseq, parent.rseq_len, parent.rseq_sig
    if flags & CLONE_VM:
        child.mm = parent.mm
        parent.mm.users += 1
    else:
        child.mm = dup_mmap(k, parent.mm)
    if flags & CLONE_FILES:
        child.files = parent.files
        parent.files.users += 1
    else:
        child.files = parent.files.copy()
    cpu = k.hw.cpu
    child.context = cpu.save_context()
    child.regs = {"rax": 0}
    if newsp:
        child.regs["rsp"] = newsp
    if flags & CLONE_SETTLS:
        child.regs["fs_base"] = tls
    if not thread and real_parent is not None:
        real_parent.children.append(child)
    k.tasks[child.pid] = child
    return child


def kernel_clone(k, task, flags, newsp, parent_tid, child_tid, tls, exit_signal=None):
    child = copy_process(k, task, flags, newsp, tls, exit_signal)
    if flags & CLONE_PARENT_SETTID and parent_tid:
        k.mm.copy_to_user(task, parent_tid, child.pid.to_bytes(4, "little"))
    if flags & CLONE_CHILD_SETTID and child_tid:
        # the child's memory: with CLONE_VM it is ours, otherwise a COW copy of ours
        k.write_task_memory(child, child_tid, child.pid.to_bytes(4, "little"))
    if flags & CLONE_CHILD_CLEARTID:
        child.clear_child_tid = child_tid
    k.scheduler.wake_up_new_task(child)
    if flags & CLONE_VFORK:
        # the parent sleeps, its call done, until the child execs or exits (wait_for_vfork_done)
        child.vfork_parent = task
        k.sleep_after_syscall = lambda: child.vfork_parent is None
    return child.pid


def sys_clone(k, task, flags, newsp, parent_tid, child_tid, tls, *_):
    return kernel_clone(k, task, flags, newsp, parent_tid, child_tid, tls)


# struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
# set_tid, set_tid_size, cgroup (all __u64)
CLONE_ARGS_SIZE_VER0 = 64
CLONE_ARGS_SIZE_VER2 = 88
CLONE_PIDFD = 0x00001000
CLONE_NEWTIME = 0x00000080
CLONE_INTO_CGROUP = 1 << 33
CLONE_CLEAR_SIGHAND = 1 << 32
PAGE_SIZE = 4096


def sys_clone3(k, task, uargs, size, *_):
    """clone3 (kernel/fork.c copy_clone_args_from_user, clone3_args_valid): what glibc 2.34+ tries
    first for pthread_create. The child starts on stack + stack_size."""
    if size > PAGE_SIZE:
        raise SyscallError(E2BIG)
    if size < CLONE_ARGS_SIZE_VER0:
        raise SyscallError(EINVAL)
    raw = k.mm.copy_from_user(task, uargs, size)
    if any(raw[CLONE_ARGS_SIZE_VER2:]):
        raise SyscallError(E2BIG)                  # a newer struct with fields we do not know
    raw = raw[:CLONE_ARGS_SIZE_VER2].ljust(CLONE_ARGS_SIZE_VER2, b"\0")
    (flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
     set_tid_size, cgroup) = struct.unpack("<11Q", raw)
    if exit_signal & ~CSIGNAL or exit_signal > 64:
        raise SyscallError(EINVAL)
    if flags & ~(0xFFFFFFFF | CLONE_CLEAR_SIGHAND | CLONE_INTO_CGROUP) or \
            flags & (CLONE_THREAD | CLONE_PARENT) and exit_signal or \
            flags & CSIGNAL or bool(stack) != bool(stack_size) or set_tid or set_tid_size:
        raise SyscallError(EINVAL)
    if flags & (CLONE_PIDFD | CLONE_NEWTIME | CLONE_INTO_CGROUP | CLONE_CLEAR_SIGHAND):
        raise SyscallError(EINVAL)                 # (pidfds, time namespaces, cgroups: not modelled)
    return kernel_clone(k, task, flags, stack + stack_size if stack else 0, parent_tid, child_tid, tls,
                        exit_signal)


def sys_fork(k, task, *_):
    return sys_clone(k, task, 17, 0, 0, 0, 0)              # SIGCHLD


def sys_vfork(k, task, *_):
    return sys_clone(k, task, CLONE_VM | CLONE_VFORK | 17, 0, 0, 0, 0)


