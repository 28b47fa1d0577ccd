"""The 32-bit system call table entered by `int $0x80` (arch/x86/entry/syscalls/syscall_32.tbl).

The calls taken here have no compat layout to convert (integers and byte buffers only), so they
run their x86-64 implementation, as Linux's table points most such entries at the native one.
Every other number returns ENOSYS and is named once in the kernel log."""

IA32_SYSCALL_NAMES = {
    1: "exit", 2: "fork", 3: "read", 4: "write", 5: "open", 6: "close", 7: "waitpid", 11: "execve",
    13: "time", 20: "getpid", 24: "getuid", 27: "alarm", 29: "pause", 37: "kill", 45: "brk",
    54: "ioctl", 64: "getppid", 90: "mmap", 91: "munmap", 122: "uname", 158: "sched_yield",
    174: "rt_sigaction", 175: "rt_sigprocmask", 192: "mmap2", 197: "fstat64", 224: "gettid",
    243: "set_thread_area", 252: "exit_group",
}

# 32-bit number -> the x86-64 number of the same call
IA32_TO_X86_64 = {
    1: 60,       # exit
    3: 0,        # read
    4: 1,        # write
    6: 3,        # close
    20: 39,      # getpid
    24: 102,     # getuid
    29: 34,      # pause
    64: 110,     # getppid
    158: 24,     # sched_yield
    224: 186,    # gettid
    252: 231,    # exit_group
}
