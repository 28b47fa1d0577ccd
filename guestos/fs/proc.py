"""procfs (fs/proc/): /proc/meminfo, vmstat, stat, cpuinfo, loadavg, uptime, mounts, every task's
/proc/PID/{stat,status,statm,cmdline,comm,environ,maps,mounts,exe,cwd,fd/}, /proc/self, and the
/proc/sys/kernel and writable /proc/sys/vm sysctls, in Linux 6.1's formats (fs/proc/array.c,
fs/proc/task_mmu.c, fs/proc/stat.c...), with Linux's names and units."""
import struct
import zlib

from ..kernel.errno import EACCES, EINVAL, EISDIR, ENOENT, SyscallError
from ..mm.mmap import VM_EXEC, VM_READ, VM_SHARED, VM_WRITE
from .file import File
from .names import fs_decode, fs_encode

S_IFREG = 0o100000
O_NOFOLLOW = 0o400000

SYSCTL_VM_DEFAULTS = {
    "swappiness": 60, "min_free_kbytes": 0, "dirty_ratio": 20, "dirty_background_ratio": 10,
    "dirty_expire_centisecs": 3000, "dirty_writeback_centisecs": 500, "vfs_cache_pressure": 100,
    "drop_caches": 0, "overcommit_memory": 0, "page-cluster": 3,
    "min_unmapped_ratio": 1, "max_unmapped_ratio": 16,      # the 2010 series' knobs (v4; NUMA-only in 2.6.35)
    "unmapped_page_control": 0,     # ours: 0 off, 1 the series' v4, 2 the review's shrink_list bias, 3 the June 2010 RFC
    "pagecache_dedup": 0,           # ours: reclaim drops what the host also caches first
}


def meminfo(k) -> dict:
    """/proc/meminfo in kB, as meminfo_proc_show() computes it."""
    vm = k.vmstat
    buffers = k.vfs.bcache.nrpages if k.vfs is not None else 0
    nr = k.lru.nr
    inactive_anon, active_anon, inactive_file, active_file, unevictable = nr
    free = k.page_alloc.nr_free_pages
    cached = vm["nr_file_pages"] - buffers
    low = k.page_alloc.zone.watermark[1]
    available = max(0, free - low + inactive_file + active_file // 2)
    pages = {
        "MemTotal": k.totalram_pages, "MemFree": free, "MemAvailable": available, "Buffers": buffers,
        "Cached": cached, "SwapCached": len(k.swap.cache) if k.swap else 0,
        "Active": active_anon + active_file, "Inactive": inactive_anon + inactive_file,
        "Active(anon)": active_anon, "Inactive(anon)": inactive_anon,
        "Active(file)": active_file, "Inactive(file)": inactive_file,
        "Unevictable": unevictable, "Mlocked": 0,
        "SwapTotal": (k.swap.pages - 1) if k.swap else 0, "SwapFree": k.swap.nr_free if k.swap else 0,
        "Dirty": vm["nr_dirty"], "Writeback": vm["nr_writeback"], "AnonPages": vm["nr_anon_pages"],
        "Mapped": vm["nr_mapped"], "Shmem": 0, "PageTables": vm["nr_page_table_pages"],
    }
    return {name: n * 4 for name, n in pages.items()}


# meminfo_proc_show()'s lines in Linux 6.1's order; those our kernel has no counterpart for are 0
# (its own memory is outside guest RAM: no slab, kernel stacks or vmalloc in it)
MEMINFO_ORDER = ("MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapCached", "Active", "Inactive",
                 "Active(anon)", "Inactive(anon)", "Active(file)", "Inactive(file)", "Unevictable", "Mlocked",
                 "SwapTotal", "SwapFree", "Zswap", "Zswapped", "Dirty", "Writeback", "AnonPages", "Mapped",
                 "Shmem", "KReclaimable", "Slab", "SReclaimable", "SUnreclaim", "KernelStack", "PageTables",
                 "NFS_Unstable", "Bounce", "WritebackTmp", "CommitLimit", "Committed_AS", "VmallocTotal",
                 "VmallocUsed", "VmallocChunk", "Percpu", "HardwareCorrupted", "AnonHugePages", "ShmemHugePages",
                 "ShmemPmdMapped", "FileHugePages", "FilePmdMapped", "HugePages_Total", "HugePages_Free",
                 "HugePages_Rsvd", "HugePages_Surp", "Hugepagesize", "Hugetlb", "DirectMap4k", "DirectMap2M",
                 "DirectMap1G")
VMALLOC_TOTAL_KB = 34359738367


def _render_meminfo(k, task) -> str:
    m = meminfo(k)
    extra = {"CommitLimit": m["MemTotal"] // 2 + m["SwapTotal"],        # overcommit_ratio 50
             "Committed_AS": m["AnonPages"], "VmallocTotal": VMALLOC_TOTAL_KB, "Hugepagesize": 2048,
             "DirectMap4k": m["MemTotal"]}
    lines = []
    for name in MEMINFO_ORDER:
        value = m.get(name, extra.get(name, 0))
        if name.startswith("HugePages_"):
            lines.append(f"{name + ':':<16}{value:>8}\n")
        else:
            lines.append(f"{name + ':':<16}{value:>8} kB\n")
    return "".join(lines)


def _render_vmstat(k, task) -> str:
    return "".join(f"{name} {value}\n" for name, value in k.vmstat_snapshot().items())


PAGE_KB = 4
USER_HZ = 100
NS_PER_TICK = 10**9 // USER_HZ
DT_DIR, DT_REG, DT_LNK = 4, 8, 10
S_IFDIR, S_IFLNK = 0o040000, 0o120000
VSYSCALL_LINE = "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0".ljust(73) + "[vsyscall]"
STATE_NAMES = {"R": "R (running)", "S": "S (sleeping)", "D": "D (disk sleep)", "T": "T (stopped)", "Z": "Z (zombie)", "X": "X (dead)"}
RLIM_INFINITY = (1 << 64) - 1
THREAD_SIZE = 16384
EXT2_DEV = "fe:00"                  # the root disk: virtio-blk's dynamic major 254, minor 0


def max_threads(k) -> int:
    """set_max_threads(): an eighth of RAM in kernel stacks."""
    return max(20, k.totalram_pages * 4096 // (THREAD_SIZE * 8))


def _vma_dev_ino(v):
    f = v.vm_file
    if f is None or v.name.startswith("["):
        return "00:00", 0
    inode = getattr(f, "inode", f)
    return (EXT2_DEV if hasattr(inode, "links_count") else "00:00"), getattr(inode, "ino", 0)


def _render_maps(k, task) -> str:
    """show_map_vma(): the header, then the name from column 73 (anonymous lines keep their space)."""
    lines = []
    for v in (task.mm.vmas if task.mm else ()):
        perms = ("r" if v.vm_flags & VM_READ else "-") + ("w" if v.vm_flags & VM_WRITE else "-") + \
                ("x" if v.vm_flags & VM_EXEC else "-") + ("s" if v.vm_flags & VM_SHARED else "p")
        offset = v.vm_pgoff << 12 if v.vm_file is not None and not v.name.startswith("[") else 0
        dev, ino = _vma_dev_ino(v)
        head = f"{v.vm_start:08x}-{v.vm_end:08x} {perms} {offset:08x} {dev} {ino} "
        name = v.name if v.name not in ("bss", "") else ""
        lines.append(head.ljust(73) + name if name else head)
    lines.append(VSYSCALL_LINE)
    return "\n".join(lines) + "\n"


def _mm_stats(task) -> dict:
    """total_vm, exec, data and stack sizes in kB, as task_mem() adds them up."""
    out = dict(size=0, exe=0, lib=0, data=0, stk=0, start_code=0, end_code=0, start_data=0, end_data=0)
    mm = task.mm
    if mm is None:
        return out
    for v in mm.vmas:
        n = (v.vm_end - v.vm_start) >> 10
        out["size"] += n
        if v.vm_flags & VM_EXEC:
            if v.vm_file is not None and not v.name.startswith("["):
                out["exe"] += n
                if not out["start_code"]:
                    out["start_code"], out["end_code"] = v.vm_start, v.vm_end
            else:
                out["lib"] += n
        elif v.name == "[stack]":
            out["stk"] += n
        elif v.vm_flags & VM_WRITE and not v.vm_flags & VM_SHARED:
            out["data"] += n
            if not out["start_data"] and v.vm_file is not None:
                out["start_data"], out["end_data"] = v.vm_start, v.vm_end
    return out


def _state(k, task) -> str:
    return "R" if task is k.scheduler.current or task.state == "R" else task.state


def _sigmasks(task):
    ignored = caught = 0
    for sig, act in task.sigactions.items():
        handler = act[0] if isinstance(act, tuple) else getattr(act, "handler", act)
        if handler == 1:
            ignored |= 1 << (sig - 1)
        elif handler not in (0, None):
            caught |= 1 << (sig - 1)
    pending = 0
    for sig in task.pending:
        pending |= 1 << (sig - 1)
    return pending, task.sigmask, ignored, caught


def _cpu_ns(k, task) -> int:
    """The task's user time: its retired instructions at the cost model's CPI and clock."""
    return int(task.instructions * k.costs.cpi / k.costs.cpu_ghz)


def _ticks(k, task) -> int:
    return _cpu_ns(k, task) // NS_PER_TICK


def _stime_ticks(k, task) -> int:
    """System time: the kernel costs charged while it ran (kernel/sched.py accounts them)."""
    k.scheduler.account()
    return task.stime_ns // NS_PER_TICK


def _all_tasks(k) -> list:
    """User tasks and kernel threads."""
    return list(k.tasks.values()) + [t for t in k.scheduler.kthreads if t.state != "X"]


PF_KTHREAD, PF_FORKNOEXEC, PF_SUPERPRIV = 0x00200000, 0x40, 0x400000


def _pgrp(task) -> int:
    return task.pgid


def _render_pid_stat(k, task) -> str:
    """do_task_stat() (fs/proc/array.c), field for field."""
    mm, st = task.mm, _mm_stats(task)
    pending, blocked, ignored, caught = _sigmasks(task)
    rss = (mm.rss_anon + mm.rss_file) if mm else 0
    state = _state(k, task)
    parent = task.group_leader.parent
    fields = [task.pid, f"({task.comm})", state, parent.tgid if parent else 0, _pgrp(task),
              task.sid, 0, -1, PF_KTHREAD if task.kthread else PF_SUPERPRIV if task.cmdline else PF_FORKNOEXEC,
              task.min_flt, 0, task.maj_flt, 0, _ticks(k, task), _stime_ticks(k, task),
              int(task.cinstructions * k.costs.cpi / k.costs.cpu_ghz) // NS_PER_TICK,
              task.cstime_ns // NS_PER_TICK, 20 + task.nice, task.nice,
              sum(1 for t in task.signal.threads if not t.exited) or 1, 0,
              task.start_time_ns // NS_PER_TICK, st["size"] << 10, rss, RLIM_INFINITY,
              st["start_code"] if mm else 0, st["end_code"] if mm else 0, mm.start_stack if mm else 0, 0, 0,
              pending, blocked, ignored, caught, 0 if state == "R" else 1, 0, 0, 17, 0, 0, 0, 0, 0, 0,
              st["start_data"], st["end_data"], mm.start_brk if mm else 0, 0, 0, 0, 0,
              task.exit_code if task.exited else 0]
    return " ".join(str(f) for f in fields) + "\n"


def _render_statm(k, task) -> str:
    mm, st = task.mm, _mm_stats(task)
    rss = (mm.rss_anon + mm.rss_file) if mm else 0
    return f"{st['size'] // PAGE_KB} {rss} {mm.rss_file if mm else 0} {st['exe'] // PAGE_KB} 0 " \
           f"{(st['data'] + st['stk']) // PAGE_KB} 0\n"


def _render_status(k, task) -> str:
    """proc_pid_status(): Linux 6.1's lines and order."""
    mm, st = task.mm, _mm_stats(task)
    pending, blocked, ignored, caught = _sigmasks(task)
    kb = lambda n: f"{n:8d} kB"                                         # noqa: E731
    anon, file_ = (mm.rss_anon * PAGE_KB, mm.rss_file * PAGE_KB) if mm else (0, 0)
    parent = task.group_leader.parent
    ppid = parent.tgid if parent else 0
    threads = sum(1 for t in task.signal.threads if not t.exited)
    shared = sum(1 << (sig - 1) for sig in task.signal.shared_pending)
    fdsize = 64 if task.files is None or not task.files.fds else max(64, 1 << max(task.files.fds).bit_length())
    lines = [f"Name:\t{task.comm}", "Umask:\t0022", f"State:\t{STATE_NAMES.get(_state(k, task), 'S (sleeping)')}",
             f"Tgid:\t{task.tgid}", "Ngid:\t0", f"Pid:\t{task.pid}", f"PPid:\t{ppid}", "TracerPid:\t0",
             "Uid:\t0\t0\t0\t0", "Gid:\t0\t0\t0\t0", f"FDSize:\t{fdsize}", "Groups:\t ",
             f"NStgid:\t{task.tgid}", f"NSpid:\t{task.pid}", f"NSpgid:\t{_pgrp(task)}",
             f"NSsid:\t{task.sid}"]
    if mm is not None:
        lines += [f"VmPeak:\t{kb(st['size'])}", f"VmSize:\t{kb(st['size'])}", f"VmLck:\t{kb(0)}",
                  f"VmPin:\t{kb(0)}", f"VmHWM:\t{kb(anon + file_)}", f"VmRSS:\t{kb(anon + file_)}",
                  f"RssAnon:\t{kb(anon)}", f"RssFile:\t{kb(file_)}", f"RssShmem:\t{kb(0)}",
                  f"VmData:\t{kb(st['data'])}", f"VmStk:\t{kb(st['stk'])}", f"VmExe:\t{kb(st['exe'])}",
                  f"VmLib:\t{kb(st['lib'])}", f"VmPTE:\t{kb(mm.nr_ptes * PAGE_KB)}", f"VmSwap:\t{kb(0)}",
                  f"HugetlbPages:\t{kb(0)}", "CoreDumping:\t0", "THP_enabled:\t1"]
    lines += [f"Threads:\t{threads}", f"SigQ:\t{len(task.pending)}/{max_threads(k) // 2}",
              f"SigPnd:\t{pending:016x}", f"ShdPnd:\t{shared:016x}", f"SigBlk:\t{blocked:016x}",
              f"SigIgn:\t{ignored:016x}", f"SigCgt:\t{caught:016x}", f"CapInh:\t{0:016x}",
              "CapPrm:\t000001ffffffffff", "CapEff:\t000001ffffffffff", "CapBnd:\t000001ffffffffff",
              f"CapAmb:\t{0:016x}", "NoNewPrivs:\t0", "Seccomp:\t0", "Seccomp_filters:\t0",
              "Speculation_Store_Bypass:\tnot vulnerable", "SpeculationIndirectBranch:\tnot affected",
              "Cpus_allowed:\t1", "Cpus_allowed_list:\t0",
              "Mems_allowed:\t" + ",".join(["00000000"] * 31 + ["00000001"]), "Mems_allowed_list:\t0",
              "voluntary_ctxt_switches:\t0", "nonvoluntary_ctxt_switches:\t0"]
    return "\n".join(lines) + "\n"


def _render_uptime(k, task) -> str:
    """uptime and idle seconds (one CPU: idle is what no task used)."""
    now = k.hw.clock.now_ns()
    idle = k.hw.clock.idle_ns
    return f"{now // 10**9}.{now // 10**7 % 100:02d} {idle // 10**9}.{idle // 10**7 % 100:02d}\n"


def _render_loadavg(k, task) -> str:
    """0.00 0.00 0.00 running/total last_pid. The averages are 0: no calc_load() runs (no tick)."""
    tasks = _all_tasks(k)
    running = sum(1 for t in tasks if _state(k, t) == "R")
    return f"0.00 0.00 0.00 {running}/{len(tasks)} {k.next_pid - 1}\n"


def cpu_times_ns(k) -> tuple:
    """(user, system, idle) ns of the one CPU since boot; their sum is the virtual clock."""
    clock = k.hw.clock
    user = clock.instructions_ns()
    idle = clock.idle_ns
    return user, clock.now_ns() - user - idle, idle


def _render_stat(k, task) -> str:
    """show_stat(): one CPU's times in USER_HZ ticks (user: retired instructions; system: charged
    kernel costs; idle and iowait: the clock's idle jumps, iowait while a task slept in the kernel;
    they add up to the clock), then the counters."""
    user, system, idle = cpu_times_ns(k)
    iowait = k.scheduler.iowait_ns              # the idle time while a task slept inside the kernel
    cpu = f"{user // NS_PER_TICK} 0 {system // NS_PER_TICK} {(idle - iowait) // NS_PER_TICK} " \
          f"{iowait // NS_PER_TICK} 0 0 0 0 0"
    running = sum(1 for t in k.tasks.values() if _state(k, t) == "R")
    blocked = sum(1 for t in k.tasks.values() if _state(k, t) == "D")
    return (f"cpu  {cpu}\ncpu0 {cpu}\nintr 0\nctxt {k.scheduler.nr_switches}\nbtime {BOOT_TIME}\n"
            f"processes {k.next_pid - 1}\nprocs_running {running}\nprocs_blocked {blocked}\n"
            f"softirq 0 0 0 0 0 0 0 0 0 0 0\n")


BOOT_TIME = 1276473600           # the epoch of CLOCK_REALTIME at boot (guestos/kernel/sys.py)


# What the vCPU reports by CPUID (Unicorn's x86-64 model: leaves 0, 1, 7, 0xd, 0x80000001-8), in the
# names and order of Linux's feature words; tests/test_procfs.py checks them against CPUID in a guest.
CPU_VENDOR, CPU_FAMILY, CPU_MODEL, CPU_STEPPING = "GenuineIntel", 6, 60, 4
CPU_MODEL_NAME, CPUID_LEVEL, L2_CACHE_KB = "Intel Core Processor (Haswell)", 13, 512
CPU_FLAGS = ("fpu de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 "
             "syscall nx rdtscp lm nopl cpuid pni pclmulqdq ssse3 cx16 sse4_1 sse4_2 movbe popcnt aes xsave "
             "rdrand hypervisor lahf_lm abm fsgsbase bmi1 smep bmi2 erms xsaveopt")
ADDRESS_SIZES = "40 bits physical, 48 bits virtual"


def _render_cpuinfo(k, task) -> str:
    """show_cpuinfo() for the one vCPU; MHz and bogomips from the cost model's clock."""
    mhz = k.costs.cpu_ghz * 1000
    fields = [("processor", "0"), ("vendor_id", CPU_VENDOR), ("cpu family", CPU_FAMILY), ("model", CPU_MODEL),
              ("model name", CPU_MODEL_NAME), ("stepping", CPU_STEPPING), ("microcode", "0x1"),
              ("cpu MHz", f"{mhz:.3f}"), ("cache size", f"{L2_CACHE_KB} KB"), ("physical id", 0),
              ("siblings", 1), ("core id", 0), ("cpu cores", 1), ("apicid", 0), ("initial apicid", 0),
              ("fpu", "yes"), ("fpu_exception", "yes"), ("cpuid level", CPUID_LEVEL), ("wp", "yes"),
              ("flags", CPU_FLAGS), ("bugs", ""), ("bogomips", f"{mhz * 2:.2f}"), ("clflush size", 64),
              ("cache_alignment", 64), ("address sizes", ADDRESS_SIZES)]
    # seq_printf(m, "%s\t: ...") with the names padded by tabs to two tab stops, as Linux writes them
    return "".join(f"{name}{chr(9) * (2 if len(name) < 8 else 1)}: {value}".rstrip(" ") + "\n"
                   for name, value in fields) + "power management:\n\n"


def _render_mounts(k, task) -> str:
    """show_vfsmnt(): the root (/dev/root, as Linux names the root= device) and /proc."""
    if k.vfs is not None:
        ro = "ro" if getattr(k.vfs.fs, "read_only", False) else "rw"
        root = f"/dev/root / ext2 {ro},relatime 0 0\n"
    else:
        root = "rootfs / rootfs rw 0 0\n"
    return root + "proc /proc proc rw,relatime 0 0\n"


def _render_version(k, task) -> str:
    return "Linux version 6.1.0-ballast (ballast) #1 SMP\n"


FILES = {"meminfo": _render_meminfo, "vmstat": _render_vmstat, "uptime": _render_uptime,
         "stat": _render_stat, "cpuinfo": _render_cpuinfo, "loadavg": _render_loadavg,
         "version": _render_version}
PID_FILES = {"stat": _render_pid_stat, "status": _render_status, "maps": _render_maps, "statm": _render_statm,
             "cmdline": lambda k, t: fs_decode(t.cmdline),
             "environ": lambda k, t: fs_decode(t.environ),
             "comm": lambda k, t: t.comm + "\n", "mounts": _render_mounts}
PID_LINKS = ("exe", "cwd", "fd")       # fd is a directory of links


def sysctl_kernel(k) -> dict:
    """/proc/sys/kernel: the values Linux 6.1 shows on a one-CPU machine of this size."""
    from ..kernel.sys import UTS_NODENAME, UTS_RELEASE, UTS_SYSNAME, UTS_VERSION
    return {"ostype": UTS_SYSNAME.decode(), "osrelease": UTS_RELEASE.decode(), "version": UTS_VERSION.decode(),
            "hostname": UTS_NODENAME.decode(), "domainname": "(none)", "pid_max": "32768",
            "threads-max": str(max_threads(k)), "ngroups_max": "65536", "cap_last_cap": "40",
            "printk": f"{k.printk.console_loglevel}\t4\t1\t7", "panic": "0", "tainted": "0",
            "randomize_va_space": "0", "overflowuid": "65534", "overflowgid": "65534"}


class ProcFile(File):
    """Content made when opened (as seq_file does on the first read)."""
    mode = S_IFREG | 0o444

    def __init__(self, path: str, text: str, on_write=None):
        super().__init__(path)
        self.data = fs_encode(text)                   # names and arguments keep their bytes
        self.on_write = on_write
        if on_write is not None:
            self.mode = S_IFREG | 0o644

    @property
    def size(self) -> int:
        return 0                     # as procfs: st_size 0, read until EOF

    def read(self, task, length: int) -> bytes:
        out = self.data[self.pos:self.pos + length]
        self.pos += len(out)
        return out

    def write(self, task, data: bytes) -> int:
        if self.on_write is None:
            raise SyscallError(EACCES)
        self.on_write(data)
        return len(data)

    def lseek(self, offset: int, whence: int) -> int:
        base = {0: 0, 1: self.pos, 2: len(self.data)}.get(whence)
        if base is None or base + offset < 0:
            raise SyscallError(EINVAL)
        self.pos = base + offset
        return self.pos


def _ino(path: str) -> int:
    return zlib.crc32(fs_encode(path)) & 0x7FFFFFFF | 1


class ProcDir(File):
    """A /proc directory: its entries are made when it is opened."""
    mode = S_IFDIR | 0o555

    def __init__(self, path: str, entries: list):
        super().__init__(path)
        self.entries = entries                  # [(name, d_type)], or a function that lists them
        self.ino = _ino(path)

    @property
    def inode(self):
        return self

    is_dir = True

    def read(self, task, length):
        raise SyscallError(EISDIR)

    def lseek(self, offset, whence):
        if whence != 0 or offset < 0:
            raise SyscallError(EINVAL)
        self.pos = offset
        return offset

    def getdents64(self, k, task, buf: int, count: int) -> int:
        if callable(self.entries):                   # listed when read (fd/ sees the fd reading it)
            self.entries = self.entries()
        entries = [(".", DT_DIR), ("..", DT_DIR)] + self.entries
        out = bytearray()
        while self.pos < len(entries):
            name, dtype = entries[self.pos]
            raw = fs_encode(name)
            reclen = (19 + len(raw) + 1 + 7) & ~7
            if len(out) + reclen > count:
                if not out:
                    raise SyscallError(EINVAL)
                break
            out += struct.pack("<QqHB", _ino(self.name + "/" + name), self.pos + 1, reclen, dtype) + raw
            out += bytes(reclen - 19 - len(raw))
            self.pos += 1
        if out:
            k.mm.copy_to_user(task, buf, bytes(out))
        return len(out)


class ProcLink(File):
    """A symlink opened with O_NOFOLLOW (lstat)."""
    mode = S_IFLNK | 0o777

    def __init__(self, path: str, target: str):
        super().__init__(path)
        self.target = target
        self.ino = _ino(path)
        self.size = len(target)


def _task_for(k, task, name: str):
    if name == "self":
        return task
    if name.isdigit():
        t = k.tasks.get(int(name)) or next((t for t in k.scheduler.kthreads if t.pid == int(name)), None)
        if t is not None and t.state != "X":
            return t
    return None


PIPEFS_FIRST_INO = 4096


def _fd_target(k, f) -> str:
    """What readlink gives for an open file: its path, or pipe:[ino] with a number the pipe keeps."""
    pipe = getattr(f, "pipe", None)
    if pipe is None:
        return f.name
    if getattr(pipe, "ino", None) is None:
        k.pipefs_next_ino = getattr(k, "pipefs_next_ino", PIPEFS_FIRST_INO) + 1
        pipe.ino = k.pipefs_next_ino
    return f"pipe:[{pipe.ino}]"


def proc_readlink(k, task, path: str):
    """The target of a /proc symlink, or None if path is not one."""
    parts = _parts(path)
    if parts == ["self"]:
        return str(task.tgid)
    if parts == ["mounts"]:
        return "self/mounts"
    if len(parts) >= 2:
        t = _task_for(k, task, parts[0])
        if t is None:
            return None
        if parts[1:] == ["exe"] and t.exe_path:
            return t.exe_path
        if parts[1:] == ["cwd"]:
            return t.cwd
        if len(parts) == 3 and parts[1] == "fd" and parts[2].isdigit() and t.files is not None:
            f = t.files.fds.get(int(parts[2]))
            return _fd_target(k, f) if f is not None else None
    return None


def _parts(path: str) -> list:
    parts = []
    for p in path[len("/proc"):].split("/"):
        if p == "..":
            if parts:
                parts.pop()
        elif p not in ("", "."):
            parts.append(p)
    return parts


def proc_base(k, task, dirfd: int):
    """The /proc directory a relative path starts from (the cwd, or an open /proc directory), or None."""
    if dirfd & 0xFFFFFFFF == 0xFFFFFF9C:                    # AT_FDCWD
        return task.cwd if task.cwd == "/proc" or task.cwd.startswith("/proc/") else None
    f = task.files.fds.get(dirfd & 0xFFFFFFFF) if task.files is not None else None
    return f.name if isinstance(f, ProcDir) else None


def open_proc(k, task, path: str, flags: int = 0) -> File:
    parts = _parts(path)
    path = "/proc" + "".join("/" + p for p in parts)
    link = proc_readlink(k, task, path)
    if link is not None:
        if flags & O_NOFOLLOW:
            return ProcLink(path, link)
        if parts == ["self"]:
            return open_proc(k, task, "/proc/" + link, flags)
        if parts == ["mounts"]:
            return open_proc(k, task, "/proc/self/mounts", flags)
        if parts[1:] != ["cwd"]:
            return k.open_path(link, flags, task=task)
    if not parts:
        pids = sorted(t.pid for t in _all_tasks(k) if t.state != "X" and t is t.group_leader)
        names = sorted(list(FILES) + ["mounts", "self", "sys"])
        return ProcDir(path, [(n, DT_DIR if n == "sys" else DT_LNK if n in ("self", "mounts") else DT_REG)
                              for n in names] + [(str(p), DT_DIR) for p in pids])
    rel = "/".join(parts)
    if rel in FILES:
        return ProcFile(path, FILES[rel](k, task))
    if parts[0] == "sys":
        return _open_sys(k, path, parts[1:])
    t = _task_for(k, task, parts[0])
    if t is None:
        raise SyscallError(ENOENT)
    if len(parts) >= 2 and parts[1] == "task":           # /proc/PID/task/TID: the process's threads
        threads = [th for th in t.signal.threads if not th.exited or th is t.group_leader]
        if len(parts) == 2:
            return ProcDir(path, [(str(th.pid), DT_DIR) for th in threads])
        th = next((th for th in threads if str(th.pid) == parts[2]), None)
        if th is None:
            raise SyscallError(ENOENT)
        t, parts = th, [parts[2]] + parts[3:]
    if len(parts) == 1:
        return ProcDir(path, sorted([(n, DT_REG) for n in PID_FILES] + [("exe", DT_LNK), ("cwd", DT_LNK),
                                                                         ("fd", DT_DIR), ("task", DT_DIR)]))
    if len(parts) == 2 and parts[1] in PID_FILES:
        return ProcFile(path, PID_FILES[parts[1]](k, t))
    if parts[1:] == ["fd"]:
        return ProcDir(path, lambda: [(str(fd), DT_LNK) for fd in sorted(t.files.fds if t.files else ())])
    raise SyscallError(ENOENT)


def _open_sys(k, path: str, parts: list) -> File:
    tables = {"vm": {name: str(v) for name, v in k.sysctl_vm.items()}, "kernel": sysctl_kernel(k)}
    if not parts:
        return ProcDir(path, [(n, DT_DIR) for n in sorted(tables)])
    table = tables.get(parts[0])
    if table is None:
        raise SyscallError(ENOENT)
    if len(parts) == 1:
        return ProcDir(path, [(n, DT_REG) for n in sorted(table)])
    name = parts[1]
    if len(parts) != 2 or name not in table:
        raise SyscallError(ENOENT)
    if parts[0] == "vm":
        return ProcFile(path, f"{k.sysctl_vm[name]}\n", lambda data: k.set_sysctl_vm(name, data))
    return ProcFile(path, table[name] + "\n")
