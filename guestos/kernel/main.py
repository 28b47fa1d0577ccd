"""start_kernel(): boot from the zero page and run init (init/main.c).

The kernel gets one Hardware object: guest-physical memory, ports, the vCPU
and the clock. Everything else it learns from the boot parameters."""
import collections
import dataclasses
import itertools

import cython_ext

from ..arch import vcpu_exits as X
from ..drivers.serial8250 import Serial8250Console, Serial8250Port
from ..drivers.virtio_balloon import DRIVERS as VIRTIO_BALLOON_DRIVERS
from ..drivers.virtio_blk import DRIVERS as VIRTIO_BLK_DRIVERS
from ..drivers.virtio_mmio import virtio_mmio_probe
from ..fs.binfmt_elf import ENOEXEC
from ..fs.blockdev import BlockDeviceFile
from ..fs.buffer import BufferCache
from ..fs.ext2 import Ext2Error, Ext2Fs
from ..fs.proc import SYSCTL_VM_DEFAULTS, meminfo, open_proc, proc_base, proc_readlink
from ..fs.vfs import MappedFile, Vfs
from ..fs.file import ConsoleFile, FdTable, File, TtyFile, generic_file_llseek_size
from ..fs.ramfs import RamFs
from ..mm.memory import ANON_PAGE_FLAGS, PGTABLE_PAGE_FLAGS, FaultError, MemoryManager
from ..mm.mmap import MM
from ..mm.mm_types import (PG_active, OFF_FLAGS, OFF_INDEX, OFF_MAPCOUNT, OFF_MAPPING, OFF_REFCOUNT, PG_reserved,
                           STRUCT_PAGE_SIZE, MemMap)
from ..mm import pagecache_control, reclaim_policy, vmscan
from ..mm.lru import LRU_ACTIVE_ANON, LruLists
from ..mm.page_alloc import PageAllocator, PerCpuPages
from ..sha256 import sha256
from ..mm.swapfile import SwapArea, SwapError
from . import traps
from .bootparam import E820_RAM, ZERO_PAGE_PADDR, parse_boot_params
from .cmdline import ParamError, check_params, check_sysctl_vm, parse_cmdline
from .errno import EACCES, EINTR, EISDIR, ENOENT, ENOSYS, ENXIO, EROFS, SyscallError
from .exec import load_elf_binary
from .printk import KERN_EMERG, KERN_ERR, KERN_INFO, KERN_NOTICE, KERN_WARNING, Printk
from . import exit as kexit
from .sched import TASK_INTERRUPTIBLE, Scheduler, Task, WouldBlock, run_to_completion
from .signal import signal_name
from .syscall_64 import SYSCALL_ENTRIES, SYSCALL_NAMES, syscall_entry
from .syscall_32 import IA32_SYSCALL_NAMES, IA32_TO_X86_64
from .timer import TimerList
from .vdso import VSYSCALL_ADDR, Vdso, emulate_vsyscall

O_ACCMODE, O_RDONLY = 3, 0
LOW_RESERVED = 1 << 20          # the first MiB: zero page, command line, firmware
VMSTAT_ITEMS = ("nr_free_pages", "nr_anon_pages", "nr_mapped", "nr_file_pages", "nr_dirty", "nr_writeback",
                "nr_page_table_pages", "nr_unevictable", "pgpgin", "pgpgout", "pgalloc_normal", "pgfree",
                "pgactivate", "pgdeactivate", "pgfault", "pgmajfault", "pgrefill", "pgsteal_kswapd",
                "pgsteal_direct", "pgscan_kswapd", "pgscan_direct", "kswapd_runs", "allocstall", "pswpin",
                "pswpout", "slabs_scanned", "oom_kill", "nr_vmscan_write", "pgrotated",
                # ours: the page-cache control policies (guestos/mm/pagecache_control.py)
                "unmapped_wakeups", "unmapped_balance_runs", "pgscan_unmapped", "pgsteal_unmapped",
                "balloon_cache_first_calls", "pgscan_cache_first", "pgsteal_cache_first",
                "host_cache_queries", "pgscan_dedup", "pgsteal_dedup")

# wait status to power off with when there is nothing to run (Linux panics here)
PANIC_NO_INIT = 0xFF00


class KernelPanic(Exception):
    pass


class Kernel:
    def __init__(self, hw):
        self.hw = hw
        self.ram = hw.ram
        self.costs = hw.clock.costs
        self.vmstat = dict.fromkeys(VMSTAT_ITEMS, 0)
        self.console = Serial8250Console(hw)
        self.printk = Printk(hw.clock.now_ns, self.console)
        self.tasks = {}
        self.next_pid = 1
        self.init_task = None
        self.current_syscall_nr = 0
        self.sleep_after_syscall = None
        self.panic_message = None
        self.random_counter = 0
        self.unknown_syscalls = {}
        self.unknown_syscalls_32 = {}
        self.last_fatal = None
        self.tracepoints = None         # guestos/kernel/tracepoint.py: None while nobody traces
        for sink in getattr(hw, "trace_sinks", ()):      # a tracer attached before boot
            from . import tracepoint                       # loaded only when someone traces
            tracepoint.enable(self).subscribe(sink)
        self.pagevec = []               # (mm, pfn, vaddr, kind) waiting for lru_add_drain
        self.current_mm = None
        self.native = getattr(hw.cpu, "native", None)
        self.live_mms = []              # address spaces in use, for the reverse map
        self.swap = None
        self.vfs = None
        MM.anon_ids = itertools.count(1)
        self.irq_handlers = {}          # line -> handler()
        self.usercopy = cython_ext.load("usercopy")
        self.pagecache = cython_ext.load("pagecache")
        self.block_devices = {}         # "vda" -> VirtioBlk
        self.dirty_mappings = {}        # address spaces with dirty pages, in the order they became dirty (b_dirty)
        self.address_spaces = {}        # page->mapping id -> AddressSpace
        self.strace = None              # the system call tracer, when `strace` is on the command line
        self.syscall_blocked = False
        self.in_irq = 0                 # do_IRQ depth: handlers must not sleep
        self.atomic = 0                 # sections no other task may interleave with (a reclaim batch)
        self.writeback_completions = 0  # async writes finished (end_page_writeback): congestion_wait's wake-up
        self.scheduler = None           # made at boot, once there is a task to schedule

    # --- boot ---
    def boot(self) -> None:
        bp = parse_boot_params(self.ram[ZERO_PAGE_PADDR:ZERO_PAGE_PADDR + 4096])
        self.cmdline = bytes(self.ram[bp.cmdline_paddr:bp.cmdline_paddr + bp.cmdline_size]).decode()
        # a value the kernel cannot take stops the boot (the host refuses it before, with the same check)
        try:
            self.params, self.init_args = parse_cmdline(self.cmdline)
            unknown = check_params(self.params, sum(e.size for e in bp.e820 if e.type == E820_RAM))
        except ParamError as e:
            raise KernelPanic(f"command line: {e}") from None
        overrides = {name[5:]: value for name, value in self.params.checked.items() if name.startswith("cost.")}
        if overrides:                   # cost.NAME=: the kernel's own costs, over the machine's model
            self.costs = dataclasses.replace(self.costs, **overrides)
        seed = self.params.value("random.seed")
        self.boot_seed = sha256(str("ballast" if seed is None else seed).encode()).digest()
        if self.params.value("loglevel") is not None:
            self.printk.console_loglevel = self.params.value("loglevel")
        if self.params.value("strace"):
            from .strace import strace_start        # lazily: its decoder tables load only when tracing
            strace_start(self)
        self.printk(KERN_INFO, f"Command line: {self.cmdline}")
        if unknown:
            self.printk(KERN_NOTICE, f"Unknown kernel command line parameters \"{' '.join(unknown)}\", ignored.")
        self.setup_memory(bp)
        self.rootfs = RamFs(self)
        initrd = self.ram[bp.initrd_paddr:bp.initrd_paddr + bp.initrd_size]
        nfiles = self.rootfs.unpack_initramfs(initrd)
        self.free_initrd_mem(bp.initrd_paddr, bp.initrd_size)
        self.printk(KERN_INFO, f"Unpacked initramfs: {nfiles} files")
        self.vdso = Vdso.load(self) if self.params.value("vdso") else None     # vdso=0: none, as Linux
        self.scheduler = Scheduler(self, self.params.value("sched_quantum"))
        self.next_pid = 2               # pid 1 is init's; kernel threads come next, as in Linux
        self.wb_timer_armed = False
        self.wb_wanted = False
        self.flusher = None
        self.timers = TimerList(self)
        self.request_irq(0, self.timers.run_timers)
        self.ttyS1 = Serial8250Port(self.hw, 0x2F8, 3, self.request_irq)
        self.balloon = None
        self.oom_notifiers = []         # register_oom_notifier(): each returns pages it freed
        self.shrinkers = []             # register_shrinker(): vmscan.Shrinker, asked by shrink_slab()
        self.page_alloc.oom_notify = self.out_of_memory_notify
        self.virtio_devices = virtio_mmio_probe(self, {**VIRTIO_BLK_DRIVERS, **VIRTIO_BALLOON_DRIVERS})
        self.vfs = None
        if "root" in self.params:
            self.mount_root(self.params["root"], read_only=self.params.value("ro"))
        self.swap = None
        if "swap" in self.params:
            self.swapon(self.params["swap"])
        self.start_kernel_threads()

    def setup_memory(self, bp) -> None:
        limit = self.params.value("mem")
        ram_ranges = []
        for e in bp.e820:
            if e.type != E820_RAM:
                continue
            start, end = e.addr, e.addr + e.size
            if limit is not None:
                end = min(end, limit)
            if end > start:
                ram_ranges.append((start >> 12, end >> 12))
        max_pfn = max(end for _, end in ram_ranges)
        # mem_map: one struct page per frame, right after the low reserved area
        self.mem_map_paddr = LOW_RESERVED
        self.mem_map = MemMap(self.ram, self.mem_map_paddr, max_pfn)
        # every frame starts reserved; free ranges are handed to the buddy allocator below
        # (written 64 KiB at a time: one 8 MiB pattern for 512 MiB of RAM would cost its own build)
        raw = self.mem_map.raw
        self.hw.populate(self.mem_map_paddr, len(raw))      # all written now: backed in one go, not per fault
        block = (1 << PG_reserved).to_bytes(8, "little").ljust(STRUCT_PAGE_SIZE, b"\0") * 1024
        for at in range(0, len(raw), len(block)):
            chunk = raw[at:at + len(block)]
            chunk[:] = block[:len(chunk)]
        mem_map_end = (self.mem_map_paddr + self.mem_map.size + 4095) >> 12
        initrd_start = bp.initrd_paddr >> 12
        initrd_end = (bp.initrd_paddr + bp.initrd_size + 4095) >> 12
        self.page_alloc = PageAllocator(self.mem_map, 0, max_pfn, self.vmstat)
        self.lru = LruLists(self.mem_map, self.vmstat)
        self.kswapd_wanted = False
        reserved = [(0, mem_map_end), (initrd_start, initrd_end)]
        for start, end in ram_ranges:
            for rs, re_ in sorted(reserved):
                if rs <= start < re_:
                    start = re_
            cuts = sorted([start] + [p for r in reserved for p in r if start < p < end] + [end])
            for a, b in zip(cuts, cuts[1:]):
                if not any(rs <= a < re_ for rs, re_ in reserved) and b > a:
                    self.page_alloc.free_bootmem_range(a, b)
        self.sysctl_vm = dict(SYSCTL_VM_DEFAULTS)
        for key, value in self.params.checked.items():
            if key.startswith("vm."):
                self.sysctl_vm[key[3:]] = value
        self.page_alloc.setup_per_zone_wmarks(self.sysctl_vm["min_free_kbytes"])
        self.sysctl_vm["min_free_kbytes"] = self.page_alloc.min_free_kbytes
        self.totalram_pages = self.page_alloc.totalram_pages
        self.max_pfn = max_pfn
        if self.native is not None:
            self.native.fastpath_setup(self.mem_map_paddr, STRUCT_PAGE_SIZE, OFF_FLAGS, OFF_REFCOUNT,
                                       OFF_MAPCOUNT, OFF_MAPPING, OFF_INDEX, ANON_PAGE_FLAGS,
                                       PGTABLE_PAGE_FLAGS)
            self.native.fastpath_enabled = not self.params.value("nofastfault")
        self.pcp = PerCpuPages(self.page_alloc, self.native)
        self.page_alloc.on_free = self.lru.remove_if_listed
        self.page_alloc.reclaim = self.direct_reclaim
        self.page_alloc.wake_kswapd = self.wakeup_kswapd
        self.page_alloc.congestion_wait = self.congestion_wait
        # the policies start from the command line and can be switched in /proc/sys/vm (no reboot)
        policy = self.params.value("unmapped_page_control")       # a registered policy's name, or None
        if policy is not None:              # else vm.unmapped_page_control= (or its default) stands
            knob, value = reclaim_policy.lookup(policy).sysctl
            self.sysctl_vm[knob] = value
        if self.params.value("pagecache_dedup"):
            self.sysctl_vm["pagecache_dedup"] = 1
        boot_policies = []                  # reclaim_policy=NAME,...: a policy with a knob sets its knob
        for name in self.params.value("reclaim_policy"):
            policy = reclaim_policy.lookup(name)
            if policy.sysctl is None:
                boot_policies.append(name)
            else:
                knob, value = policy.sysctl
                self.sysctl_vm[knob] = value
        self.host_cached, self.host_cached_at = {}, -1      # disk -> bitmap of host-cached pages
        self.host_cached_exhausted_at = None                 # the view in which no duplicate was left
        # the selected reclaim policies, whose hooks reclaim and the allocator call
        self.policies = reclaim_policy.PolicySet(self, boot_policies)
        self.page_alloc.policies = self.policies
        self.mm = MemoryManager(self)
        self.printk(KERN_INFO, f"Memory: {self.totalram_pages * 4}K available, mem_map {self.mem_map.size >> 10}K")

    def mount_root(self, device: str, read_only: bool) -> None:
        """mount_root(): ext2 on a virtio disk becomes /; the initramfs stays for its files."""
        name = device.removeprefix("/dev/")
        blk = self.block_devices.get(name)
        if blk is None:
            raise KernelPanic(f"VFS: Cannot open root device \"{device}\"")
        bcache = BufferCache(self, blk, list(self.block_devices).index(name))
        clock = self.hw.clock
        try:
            fs = Ext2Fs.mount(bcache, read_only=read_only or blk.read_only,
                              now=lambda: 1276473600 + clock.now_ns() / 1e9)
        except Ext2Error as e:
            raise KernelPanic(f"VFS: Unable to mount root fs on {device}: {e}") from None
        self.vfs = Vfs(self, fs, bcache)
        self.printk(KERN_INFO, f"VFS: Mounted root (ext2 filesystem) on device {device}.")

    def swapon(self, device: str) -> None:
        """swapon(2) at boot, for `swap=/dev/vdX` (a disk made with mkswap)."""
        name = device.removeprefix("/dev/")
        blk = self.block_devices.get(name)
        if blk is None:
            raise KernelPanic(f"swapon: no device {device}")
        try:
            self.swap = SwapArea(self, blk, device)
        except SwapError as e:
            raise KernelPanic(f"swapon: {e}") from None
        self.printk(KERN_INFO, f"Adding {(self.swap.pages - 1) * 4}k swap on {device}.")

    def free_initrd_mem(self, paddr: int, size: int) -> None:
        start, end = paddr >> 12, (paddr + size + 4095) >> 12
        if end > start:
            self.page_alloc.free_bootmem_range(start, min(end, self.max_pfn))
            self.totalram_pages = self.page_alloc.totalram_pages
            self.page_alloc.setup_per_zone_wmarks(self.params.value("vm.min_free_kbytes") or 0)
            self.sysctl_vm["min_free_kbytes"] = self.page_alloc.min_free_kbytes

    # --- memory glue ---
    def charge(self, ns: int) -> None:
        self.hw.clock.charge(ns)

    def charge_reclaim(self, isolated: int, freed: int, rotated: int) -> None:
        vmscan.charge_reclaim(self, isolated, freed, rotated)

    def flush_tlb(self) -> None:
        self.hw.cpu.flush_tlb()

    def switch_mm(self, mm) -> None:
        if mm is self.current_mm:
            return
        self.current_mm = mm
        self.hw.cpu.cr3 = mm.pgd << 12
        self.mm_changed(mm)

    def mm_changed(self, mm) -> None:
        """Keep the native fault path's VMA mirror in step with the current mm."""
        if self.native is not None and mm is self.current_mm:
            self.native.set_vmas(mm.native_vmas())

    def lru_cache_add(self, mm, pfn: int, vaddr: int, kind: int) -> None:
        self.pagevec.append((mm, pfn, vaddr, kind))

    def lru_add_drain(self) -> None:
        """Account the pages mapped since the last drain, natively or here."""
        native = self.native
        if native is not None:
            new = native.drain_new_pages()
            if new:
                faults, _ = native.fastpath_consume_counters()
                self.vmstat["pgfault"] += faults
                self.vmstat["pgalloc_normal"] += len(new)
                self.charge(faults * self.costs.page_fault_ns + len(new) * self.costs.page_zero_ns)
                task = self.scheduler.current
                task.min_flt += faults
                mm = self.current_mm
                self.pagevec.extend((mm, pfn, vaddr, kind) for pfn, vaddr, kind in new)
        if not self.pagevec:
            return
        vmstat = self.vmstat
        anon = []
        for mm, pfn, vaddr, kind in self.pagevec:
            if kind == 0:
                mm.rss_anon += 1
                anon.append(pfn)
            else:
                vmstat["nr_page_table_pages"] += 1
                mm.nr_ptes += 1
        vmstat["nr_anon_pages"] += len(anon)
        self.lru.add_batch(anon, LRU_ACTIVE_ANON, 1 << PG_active)   # new anonymous pages start active
        self.pagevec.clear()

    def exit_mmap(self, mm) -> None:
        self.lru_add_drain()
        if mm in self.live_mms:
            self.live_mms.remove(mm)
        for vma in list(mm.vmas):
            self.mm.zap_page_range(mm, vma.vm_start, vma.vm_end)
        mm.vmas.clear()
        self.mm.free_pgtables(mm)

    # --- files ---
    def fds_of(self, task) -> FdTable:
        return task.files

    def base_ino(self, task, dirfd: int) -> int:
        """The directory a relative path starts from: the cwd, or an open directory."""
        dirfd = ((dirfd & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000      # an int in a 64-bit register
        if task is None or dirfd == -100:
            return task.cwd_ino if task is not None else 2
        f = self.fds_of(task).get(dirfd)
        if f.name == "/proc" or f.name.startswith("/proc/"):
            raise SyscallError(ENOENT)                 # an open /proc directory: not on ext2
        inode = getattr(f, "inode", None)
        if inode is None or not getattr(inode, "is_dir", False):
            raise SyscallError(20)                    # ENOTDIR
        return inode.ino

    def open_path(self, path: str, flags: int = 0, mode: int = 0o666, task=None, dirfd: int = -100) -> File:
        if path.startswith("/dev/") and self.vfs is not None:       # a node on the disk comes first
            try:
                f = self.vfs.open(path, flags & ~0o100, mode, 2)
            except SyscallError:
                f = None
            if f is not None and f.mode & 0o170000 != 0o060000:    # block devices: by name below
                return f
        if path.startswith("/dev/vd") and path[5:] in self.block_devices:
            blk = self.block_devices[path[5:]]
            writable = flags & O_ACCMODE != O_RDONLY
            if writable and blk.read_only:
                raise SyscallError(EROFS)
            return BlockDeviceFile(self, blk, list(self.block_devices).index(path[5:]), writable)
        if path == "/dev/tty":
            raise SyscallError(ENXIO)                # no task has a controlling terminal (tty_open_current_tty)
        if path in ("/dev/console", "/dev/ttyS0"):
            return ConsoleFile(self.console)
        if path == "/dev/ttyS1":
            return TtyFile(self.ttyS1, path, 65)
        if path == "/dev/null":
            return NullFile()
        if path == "/dev/zero":
            return ZeroFile()
        if task is not None and not path.startswith("/"):
            proc_dir = proc_base(self, task, dirfd)
            if proc_dir is not None:
                path = proc_dir + "/" + path                # relative to a directory in /proc
        if path == "/proc" or path.startswith("/proc/"):
            return open_proc(self, task or self.scheduler.current, path, flags)
        if self.vfs is not None:
            return self.vfs.open(path, flags, mode, self.base_ino(task, dirfd))
        inode = self.rootfs.lookup(path)
        if inode is None:
            raise SyscallError(ENOENT)
        return InodeFile(inode)

    def open_chrdev(self, rdev: int, flags: int) -> File:
        """chrdev_open(): the driver of a character device node, by its number (glibc's dev_t)."""
        major = ((rdev >> 8) & 0xFFF) | ((rdev >> 32) & 0xFFFFF000)
        minor = (rdev & 0xFF) | ((rdev >> 12) & 0xFFFFFF00)
        if (major, minor) == (1, 3):
            return NullFile()
        if (major, minor) == (1, 5):
            return ZeroFile()
        if (major, minor) == (5, 0):                         # /dev/tty: no controlling terminal here
            raise SyscallError(ENXIO)
        if (major, minor) in ((5, 1), (4, 64)):               # /dev/console, /dev/ttyS0
            return ConsoleFile(self.console)
        if (major, minor) == (4, 65):
            return TtyFile(self.ttyS1, "/dev/ttyS1", 65)
        raise SyscallError(ENXIO)                            # no driver for it here
    def readlink(self, path: str, task=None, dirfd: int = -100) -> bytes:
        """readlink(2) of anything but /proc/self/exe: a symlink on the root file system; the initramfs
        has none (EINVAL for what it holds)."""
        if self.vfs is not None:
            return self.vfs.readlink(path, self.base_ino(task, dirfd))
        raise SyscallError(ENOENT if self.rootfs.lookup(path) is None else 22)     # EINVAL

    def file_for_mmap(self, f, vm_flags: int):
        """(vm_file, name) for mapping an open file; do_mmap's order: EACCES when its open mode forbids
        it, then ENODEV when it cannot be mapped at all."""
        from ..mm.mmap import VM_SHARED, VM_WRITE
        if vm_flags & VM_SHARED and vm_flags & VM_WRITE and not getattr(f, "writable", False):
            raise SyscallError(EACCES)
        if getattr(f, "readable", True) is False:
            raise SyscallError(EACCES)
        inode = getattr(f, "inode", None)
        if inode is None or getattr(inode, "is_dir", False):
            raise SyscallError(19)                               # ENODEV: not mappable
        if hasattr(f, "vfs"):
            return MappedFile(f.vfs, inode, f.name, getattr(f, "ra", None)), f.name
        return inode, f.name                                     # a ramfs file

    def set_page_dirty_pfn(self, pfn: int) -> None:
        mapping = self.address_spaces.get(self.mem_map.mapping(pfn))
        index = self.mem_map.index(pfn)
        if mapping is not None and mapping.pages.get(index) == pfn:
            mapping.set_page_dirty(index)

    def set_sysctl_vm(self, name: str, data: bytes) -> None:
        """A write to /proc/sys/vm/NAME."""
        try:
            value = int(data.split()[0])
        except (ValueError, IndexError):
            raise SyscallError(22) from None
        try:
            check_sysctl_vm(name, value, self.max_pfn << 12)      # the boot option's range
        except ParamError:
            raise SyscallError(22) from None
        self.sysctl_vm[name] = value
        self.policies.refresh()                                   # a knob may select a policy
        if name == "min_free_kbytes":
            self.page_alloc.setup_per_zone_wmarks(value)
        elif name == "drop_caches" and value & 1:
            self.drop_pagecache()

    def drop_pagecache(self) -> int:
        """echo 1 > /proc/sys/vm/drop_caches: every clean, unmapped page-cache page."""
        return sum(mapping.invalidate_mapping_pages() for mapping in list(self.address_spaces.values()))

    def panic(self, message: str) -> None:
        """panic(): say why on the console; the machine then powers off."""
        self.panic_message = message
        self.printk(KERN_EMERG, f"Kernel panic - not syncing: {message}")

    # --- kswapd ---
    def wakeup_kswapd(self, order: int = 0, reason: str = "low-watermark") -> None:
        """wakeup_kswapd(): from the allocator below the low watermark (or the series' trigger)."""
        if self.tracepoints is not None and not self.kswapd_wanted:       # kswapd was asleep
            zone = self.page_alloc.zone
            self.tracepoints.emit("mm_vmscan_wakeup_kswapd", nid=0, zid=0, order=order, reason=reason,
                                  nr_free_pages=zone.nr_free_pages, watermark_low=zone.watermark[1])
        self.kswapd_wanted = True

    def kswapd(self):
        """kswapd's loop (mm/vmscan.c), a kernel thread: asleep until woken at the low watermark, then
        dropping pages the host also caches, and balance_pgdat's priority loop (where the 2010 series' pass
        runs), yielding the CPU after every SWAP_CLUSTER_MAX batch."""
        while True:
            yield lambda: self.kswapd_wanted
            self.kswapd_wanted = False
            steal = self.kswapd_pgsteal()                   # for mm_vmscan_kswapd_sleep
            tp = self.tracepoints
            if tp is not None:
                zone = self.page_alloc.zone
                tp.emit("mm_vmscan_kswapd_wake", nid=0, order=0, nr_free_pages=zone.nr_free_pages,
                        watermark_min=zone.watermark[0], watermark_low=zone.watermark[1],
                        watermark_high=zone.watermark[2])
            zone = self.page_alloc.zone
            yield from self.policies.kswapd_passes()             # the selected policies' own passes
            yield from vmscan.balance_pgdat_steps(self)
            tp = self.tracepoints
            if tp is not None:
                tp.emit("mm_vmscan_kswapd_sleep", nid=0, nr_free_pages=zone.nr_free_pages,
                        watermark_high=zone.watermark[2],
                        nr_reclaimed=self.kswapd_pgsteal() - steal)

    def kswapd_pgsteal(self) -> int:
        """Pages kswapd has freed since boot, by every pass (for mm_vmscan_kswapd_sleep)."""
        v = self.vmstat
        return v["pgsteal_kswapd"] + v["pgsteal_dedup"] + v["pgsteal_unmapped"]

    def direct_reclaim(self, nr_to_reclaim: int, gfp: int = 0, order: int = 0) -> int:
        """The allocator's direct reclaim (try_to_free_pages), after the selected policies' passes
        (dedup: duplicated pages first when the guest knows them)."""
        freed = self.policies.direct_reclaim_pass(nr_to_reclaim)
        if freed < nr_to_reclaim:
            freed += vmscan.try_to_free_pages(self, nr_to_reclaim - freed)     # its trace: direct_reclaim_*
        return freed

    @property
    def unmapped_policy(self) -> str:
        """vm.unmapped_page_control 0-3: none, v4-2011-01, shrink_list, rfc-2010-06 (mm/pagecache_control.py)."""
        return pagecache_control.unmapped_policy(self)

    @property
    def pagecache_dedup(self) -> bool:
        return bool(self.sysctl_vm["pagecache_dedup"])

    def out_of_memory_notify(self) -> int:
        """out_of_memory()'s notifier chain: pages freed by whoever could (a balloon that may
        deflate). Nothing freed: the OOM killer's turn."""
        return sum(notify() for notify in self.oom_notifiers)

    def start_kernel_threads(self) -> None:
        """kswapd0 always, the flusher when there is a disk (the balloon driver starts its own)."""
        self.kswapd_task = self.scheduler.kthread_run(self.kswapd(), "kswapd0")
        self.flusher = None
        if self.block_devices:
            self.flusher = self.scheduler.kthread_run(self.bdi_writeback_task(), "flush-254:0")

    # --- writeback (mm/page-writeback.c, fs/fs-writeback.c) ---
    def mark_mapping_dirty(self, mapping) -> None:
        """__mark_inode_dirty(): remember when, and make sure the flusher will come by."""
        if mapping.dirtied_when is None:
            mapping.dirtied_when = self.hw.clock.now_ns()
        self.dirty_mappings.setdefault(mapping)
        if not self.wb_timer_armed:
            self.wb_timer_armed = True
            self.timers.add_timer(self.sysctl_vm["dirty_writeback_centisecs"] * 10_000_000, self.wakeup_flusher)

    def wakeup_flusher(self) -> None:
        """The writeback timer: the flusher thread's turn (inline when there is no flusher)."""
        self.wb_timer_armed = False
        self.wb_wanted = True
        if self.flusher is None:
            run_to_completion(self, self.wb_kupdate())

    def bdi_writeback_task(self):
        """The flusher thread (flush-MAJOR:MINOR, fs/fs-writeback.c): asleep until the writeback
        timer, then wb_kupdate's pass."""
        while True:
            yield lambda: self.wb_wanted
            yield from self.wb_kupdate()

    def wb_kupdate(self):
        """The flusher's periodic pass: write back what has been dirty too long, one inode (a
        writeback chunk) between preemption points."""
        self.wb_wanted = False
        expire = self.sysctl_vm["dirty_expire_centisecs"] * 10_000_000
        now = self.hw.clock.now_ns()
        # files' pages before the file system's metadata (the buffer cache): writing a file's pages may
        # allocate its blocks here, which Linux's ext2 did at write() time, so the metadata written in
        # the same pass holds them
        for mapping in sorted(self.dirty_mappings, key=lambda m: (m.unevictable_metadata, m.dirtied_when or 0)):
            if mapping in self.dirty_mappings and mapping.dirtied_when is not None \
                    and now - mapping.dirtied_when >= expire:
                mapping.writeback()
                yield
        if self.dirty_mappings and not self.wb_timer_armed:
            self.wb_timer_armed = True
            self.timers.add_timer(self.sysctl_vm["dirty_writeback_centisecs"] * 10_000_000, self.wakeup_flusher)

    def balance_dirty_pages(self, mapping) -> None:
        """A writer that pushed dirty memory over vm.dirty_ratio writes back itself."""
        dirtyable = self.page_alloc.nr_free_pages + self.vmstat["nr_file_pages"]
        if self.vmstat["nr_dirty"] * 100 > self.sysctl_vm["dirty_ratio"] * dirtyable:
            mapping.writeback()
            for other in list(self.dirty_mappings):
                if self.vmstat["nr_dirty"] * 100 <= self.sysctl_vm["dirty_background_ratio"] * dirtyable:
                    break
                other.writeback()

    def sync_all(self) -> None:
        if self.vfs is not None:
            self.vfs.sync()
        for blk in self.block_devices.values():
            blk.flush()

    # --- processes ---
    def find_task(self, pid: int):
        return self.tasks.get(pid)

    def run_init(self) -> int:
        """Start init (rdinit= from the initramfs, else init= or /init) and run until nothing is
        left; returns its wait status."""
        path = self.params.get("init", "/init")
        rdinit = self.params.get("rdinit")
        try:
            if isinstance(rdinit, str) and self.rootfs.lookup(rdinit) is not None:
                path, inode = rdinit, self.rootfs.lookup(rdinit)
            else:
                inode = self.lookup_exec(path) if isinstance(path, str) else None
        except SyscallError:
            inode = None
        if inode is None:
            self.panic(f"Requested init {path} failed (error -2).")
            return PANIC_NO_INIT
        task = Task(pid=1, comm=path.rsplit("/", 1)[-1][:15])
        self.tasks[task.pid] = task
        self.init_task = task
        task.files = FdTable()
        for fd in range(3):
            task.files.install(ConsoleFile(self.console))
        self.scheduler.current = task
        try:
            argv = [path.encode()] + [a.encode() for a in self.init_args]
            envp = [b"HOME=/", b"TERM=linux", b"PATH=/sbin:/bin:/usr/sbin:/usr/bin"]
            load_elf_binary(self, task, inode, argv, envp)
        except ENOEXEC as e:
            self.panic(f"Requested init {path} failed (error -8): {e}")
            self.last_fatal = ("ENOEXEC", str(e), 0, "")
            return PANIC_NO_INIT
        except SyscallError as e:           # reading the program failed (a damaged disk: EIO, EUCLEAN)
            detail = f": {e}" if isinstance(e, Ext2Error) else ""
            self.panic(f"Requested init {path} failed (error -{e.errno}){detail}")
            return PANIC_NO_INIT
        self.scheduler.wake_up_new_task(task)
        self.scheduler.run()
        # init is gone: write everything back before the machine powers off (a clean poweroff)
        self.sync_all()
        return kexit.group_exit_status(self.init_task)

    def do_exit(self, task, code: int, signaled: bool = False) -> None:
        """A thread exits; a fatal signal (signaled) ends its whole process."""
        if signaled:
            self.do_group_exit(task, code, signaled)
            return
        was_alive = not task.exited
        kexit.do_exit(self, task, code, signaled)
        if self.strace is not None and was_alive:
            self.strace.exited(task, task.exit_code)          # +++ exited with N +++

    def do_group_exit(self, task, code: int, signaled: bool = False) -> None:
        was_alive = not task.exited
        kexit.do_group_exit(self, task, code, signaled)
        if self.strace is not None and was_alive:
            self.strace.exited(task, task.exit_code)

    def alloc_pid(self) -> int:
        pid = self.next_pid
        self.next_pid += 1
        return pid

    def mmput(self, mm) -> None:
        """Drop a task's reference to an address space; the last one tears it down."""
        mm.users -= 1
        if mm.users == 0:
            if mm is self.current_mm:
                self.lru_add_drain()
                self.current_mm = None
            self.exit_mmap(mm)

    def write_task_memory(self, task, addr: int, data: bytes) -> None:
        """copy_to_user into another task's address space (its page tables, briefly)."""
        current = self.current_mm
        self.switch_mm(task.mm)
        try:
            self.mm.copy_to_user(task, addr, data)
        finally:
            if current is not None:
                self.switch_mm(current)

    def lookup_exec(self, path: str, task=None):
        given = path                                # bprm->filename: comm and AT_EXECFN (/proc/self/exe: "exe")
        if path.startswith("/proc/"):               # /proc/self/exe (busybox runs its applets so)
            path = proc_readlink(self, task or self.scheduler.current, path) or path
        if self.vfs is not None:
            ino = self.vfs.resolve(path, task.cwd_ino if task is not None else 2)
            real = self.vfs.real_path(path, task.cwd if task is not None else "/")
            inode = MappedFile(self.vfs, self.vfs.fs.iget(ino), real)     # /proc/PID/exe, maps: the file
            inode.filename = given                                        # comm, AT_EXECFN: as exec'd
            self.vfs.names.setdefault(ino, real)
        else:
            inode = self.rootfs.lookup(path)
            if inode is None:
                raise SyscallError(ENOENT)
        if inode.is_dir:
            raise SyscallError(EACCES)
        return inode

    def itimer_tick(self, task) -> None:
        from .itimer import itimer_tick
        itimer_tick(self, task)

    def deadlock(self, sleeping) -> None:
        """Every task sleeps and nothing can wake them: Linux would hang; we end them."""
        self.printk(KERN_ERR, "all tasks are asleep and nothing can wake them: killing " +
                    ", ".join(f"{t.comm}[{t.pid}]" for t in sleeping))
        self.last_fatal = ("SIGKILL", "every task was asleep and nothing could wake them", 0, "")
        for t in list(sleeping):
            self.do_exit(t, 9, signaled=True)

    def force_sig(self, task, sig: int, info: bytes = None) -> None:
        """force_sig_info(): to a handler if there is one and it is not blocked; else it kills."""
        from .signal import core_dumped, has_handler, send_signal
        if has_handler(task, sig):
            send_signal(self, task, sig, info)
            return
        send_signal(self, task, sig)
        if not task.exited:                    # a blocked or ignored fatal signal still kills
            self.do_exit(task, sig | core_dumped(task, sig), signaled=True)

    def do_signal(self, task) -> None:
        from .signal import do_signal
        do_signal(self, task)

    # --- interrupts and waiting ---
    def request_irq(self, line: int, handler) -> None:
        self.irq_handlers[line] = handler

    def do_IRQ(self) -> None:
        if not self.hw.irq_pending:                 # most calls find no line raised
            return
        lines = self.hw.take_pending_irqs()
        self.in_irq += 1
        try:
            for line in lines:
                handler = self.irq_handlers.get(line)
                if handler is None:
                    self.printk(KERN_WARNING, f"irq {line}: nobody cared")
                else:
                    handler()
        finally:
            self.in_irq -= 1

    def wait_event(self, condition) -> None:
        """Sleep until condition() holds. A task waiting inside the kernel (a system call, a fault,
        reclaim, a kernel thread's work) sleeps uninterruptibly on its kernel stack while other tasks
        run; with no task to sleep (boot, an interrupt handler, the scheduler's own work) or inside
        a section that must not be interleaved (k.atomic), the CPU idles and virtual time jumps to
        the next event."""
        self.mem_map.native_rmap.tlb_batch_sync(self)     # a reclaim batch's TLB flush before others may run
        self.do_IRQ()                               # what already arrived comes first
        if condition():
            return
        scheduler = self.scheduler
        if scheduler is not None and not self.in_irq and not self.atomic and scheduler.in_task_context():
            scheduler.io_schedule(condition)
            return
        while not condition():
            if not self.hw.idle():
                raise KernelPanic("waiting for an event that can never come")
            self.do_IRQ()

    def wait_event_timeout(self, condition, timeout_ns: int) -> bool:
        """wait_event_timeout(): as wait_event, but also woken timeout_ns from now (a timer wakes
        the idle CPU then); True if condition() held."""
        deadline = self.hw.clock.now_ns() + timeout_ns
        self.timers.add_timer(timeout_ns, _wakeup_nobody)
        self.wait_event(lambda: condition() or self.hw.clock.now_ns() >= deadline)
        return condition()

    def congestion_wait(self, timeout_ns: int) -> None:
        """congestion_wait(BLK_RW_ASYNC, timeout) (mm/backing-dev.c, 2.6.35): the task naps
        uninterruptibly (io_schedule_timeout) until an asynchronous write completes
        (clear_bdi_congested wakes the waiters at each freed request) or the timeout passes."""
        completions = self.writeback_completions
        self.wait_event_timeout(lambda: self.writeback_completions != completions, timeout_ns)

    def save_syscall_state(self) -> tuple:
        """What the kernel keeps of the call in progress, for a task about to sleep in it."""
        state = (self.current_syscall_nr, self.sleep_after_syscall, self.syscall_blocked,
                 self.strace.in_call if self.strace is not None else None)
        self.sleep_after_syscall = None
        return state

    def restore_syscall_state(self, state: tuple) -> None:
        self.current_syscall_nr, self.sleep_after_syscall, self.syscall_blocked, in_call = state
        if self.strace is not None:
            self.strace.in_call = in_call

    # --- entry points from the run loop ---
    def do_syscall(self, task) -> None:
        cpu = self.hw.cpu
        nr, a0, a1, a2, a3, a4, a5 = cpu.syscall_args()
        nr &= 0xFFFFFFFF                 # do_syscall_64(regs, int nr): the upper half of rax is ignored
        self.current_syscall_nr = nr
        self.hw.clock.charge(self.costs.syscall_ns)
        task.restart = None                          # a call that slept runs again from here
        task.woken_by_signal = False
        entry = SYSCALL_ENTRIES.get(nr) or syscall_entry(nr)      # made at the call's first use
        if entry is None:
            if nr not in self.unknown_syscalls:
                name = SYSCALL_NAMES.get(nr)
                self.printk(KERN_INFO, f"{task.comm}[{task.pid}]: unknown system call {nr}"
                                       + (f" ({name})" if name else ""))
            self.unknown_syscalls[nr] = self.unknown_syscalls.get(nr, 0) + 1
            ret = -ENOSYS
        else:
            try:
                # each register as its SYSCALL_DEFINE type (int, pid_t, off_t, size_t, pointer...)
                ret = entry(self, task, a0, a1, a2, a3, a4, a5)
            except SyscallError as e:
                ret = -e.errno
            except WouldBlock as e:
                self.scheduler.sleep_on(task, e.ready, e.restart, e.expires, e.interrupted)
                self.syscall_blocked = True           # for strace: the call runs again later
                return
            except FaultError as e:
                if e.signal == "SIGKILL":
                    self.oom_kill(task)
                    return
                ret = -14 if e.signal != "ENAMETOOLONG" else -36     # EFAULT, ENAMETOOLONG
        if task.exited:
            return
        task.restart_block = task.interrupted = None
        if task.saved_sigmask is not None and ret != -EINTR:
            task.sigmask, task.saved_sigmask = task.saved_sigmask, None     # restore_saved_sigmask()
        cpu.set_reg("rax", ret)
        if self.sleep_after_syscall is not None:
            ready, self.sleep_after_syscall = self.sleep_after_syscall, None
            self.scheduler.sleep_after_return(task, ready)

    def do_int80_syscall_32(self, task) -> None:
        """`int $0x80`: Linux's 32-bit system call table (arch/x86/entry/common.c): eax the number,
        ebx, ecx, edx, esi, edi, ebp the arguments, every other register preserved. The calls we
        take share their 64-bit implementation, as most of Linux's compat table does."""
        cpu = self.hw.cpu
        regs = cpu.regs()
        nr = regs["rax"] & 0xFFFFFFFF
        nr64 = IA32_TO_X86_64.get(nr)
        if nr64 is None:
            if nr not in self.unknown_syscalls_32:
                self.printk(KERN_INFO, f"{task.comm}[{task.pid}]: unknown 32-bit system call {nr} "
                                       f"({IA32_SYSCALL_NAMES.get(nr, '?')})")
            self.unknown_syscalls_32[nr] = self.unknown_syscalls_32.get(nr, 0) + 1
            self.hw.clock.charge(self.costs.syscall_ns)
            cpu.set_reg("rax", -ENOSYS)
            return
        abi64 = ("rdi", "rsi", "rdx", "r10", "r8", "r9")
        cpu.set_regs({"rax": nr64, **{r64: regs[r32] & 0xFFFFFFFF for r64, r32 in
                                      zip(abi64, ("rbx", "rcx", "rdx", "rsi", "rdi", "rbp"))}})
        self.do_syscall(task)
        cpu.set_regs({r: regs[r] for r in abi64})
        if task.state == TASK_INTERRUPTIBLE and cpu.reg("rip") == regs["rip"] - 2:
            cpu.set_reg("rax", nr)                  # it sleeps to run `int $0x80` again: the 32-bit number
        self.current_syscall_nr = nr

    def do_page_fault(self, task, exit) -> None:
        if exit.page == VSYSCALL_ADDR and exit.access == "fetch" and emulate_vsyscall(self, task, exit.address):
            return
        if not traps.is_canonical(exit.page):
            traps.do_noncanonical(self, task, exit)
            return
        try:
            self.mm.handle_mm_fault(task, exit.page, exit.error_code)
        except FaultError as e:
            if e.signal == "SIGKILL":
                self.oom_kill(task)
                return
            from .signal import SIGNALS, has_handler, siginfo
            sig = SIGNALS[e.signal]
            # set_signal_archinfo(): user accesses to kernel addresses always look like protection faults
            task.trap_nr, task.cr2 = traps.X86_TRAP_PF, exit.address
            task.error_code = exit.error_code | 0x4 | (0x1 if exit.address >= 1 << 47 else 0)
            if has_handler(task, sig):                 # the program catches it: no report
                self.force_sig(task, sig, siginfo(sig, e.code, addr=exit.address))
                return
            what = f"segfault at {exit.address:x} ({exit.access}, error {exit.error_code:x})"
            if e.signal == "SIGBUS":
                what = f"bus error at {exit.address:x} ({exit.access})"
            insn = traps.disassemble_at(self, task, exit.rip)
            self.last_fatal = (e.signal, what, exit.rip, insn)
            traps.report_fatal(self, task, e.signal, what, exit.rip)
            self.force_sig(task, sig)

    def do_trap(self, task, exit) -> None:
        traps.do_trap(self, task, exit)

    def oom_kill(self, task) -> None:
        if self.tracepoints is not None:
            mm = getattr(task, "mm", None)
            self.tracepoints.emit("mark_victim", victim=task.tgid, victim_comm=task.comm,
                                  rss_pages=mm.rss_anon if mm is not None else 0)
        self.printk(KERN_ERR, f"Out of memory: Killed process {task.tgid} ({task.comm})")
        self.vmstat["oom_kill"] = self.vmstat.get("oom_kill", 0) + 1
        self.last_fatal = ("SIGKILL", "out of memory", 0, "")
        self.do_exit(task, 9, signaled=True)

    # --- what /proc/meminfo will say ---
    def meminfo(self) -> dict:
        """What /proc/meminfo says, in kB."""
        return meminfo(self)

    def vmstat_snapshot(self) -> dict:
        out = dict(self.vmstat)
        out["nr_free_pages"] = self.page_alloc.nr_free_pages
        return out


def _wakeup_nobody() -> None:
    """A sleeper's timeout: the interrupt itself is the point (the sleeper looks at the clock)."""


class NullFile(File):
    mode = 0o020666
    rdev = (1 << 8) | 3

    def __init__(self):
        super().__init__("/dev/null")

    def read(self, task, length):
        return b""

    def write(self, task, data):
        return len(data)


class ZeroFile(File):
    mode = 0o020666
    rdev = (1 << 8) | 5

    def __init__(self):
        super().__init__("/dev/zero")

    def read(self, task, length):
        return bytes(min(length, 1 << 20))

    def write(self, task, data):
        return len(data)


class InodeFile(File):
    def __init__(self, inode):
        super().__init__(inode.path)
        self.inode = inode
        self.mode = inode.mode
        self.ino = inode.ino
        self.size = inode.size

    def read(self, task, length):
        if self.inode.is_dir:
            raise SyscallError(EISDIR)
        data = self.inode.read(self.pos, length)
        self.pos += len(data)
        return data

    def write(self, task, data):
        raise SyscallError(EACCES)

    def read_user(self, k, task, buf, count, pos):
        """A short count when the buffer runs into a hole; the caller moves the position."""
        if self.inode.is_dir:
            raise SyscallError(EISDIR)
        data = self.inode.read(pos, count)
        return k.mm.copy_to_user_partial(task, buf, data) if data else 0

    def lseek(self, offset, whence):
        self.pos = generic_file_llseek_size(self.pos, offset, whence, self.inode.size)
        return self.pos

    def splice_read(self, k, task, pos, count):
        return self.inode.read(pos, count)


def start_kernel(hw) -> int:
    """Boot, run init to its end and return init's wait status."""
    kernel = Kernel(hw)
    hw.kernel = kernel                 # for the oracle: read-only inspection from the host
    try:
        kernel.boot()
        return kernel.run_init()
    except KernelPanic as e:
        kernel.panic(str(e))
        return PANIC_NO_INIT


__all__ = ["start_kernel", "Kernel", "X", "signal_name"]
