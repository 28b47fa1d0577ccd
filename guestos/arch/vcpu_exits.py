"""Why the vCPU returned to the kernel: the hardware interface's exit reasons
(the numbers of vmm.cpu.ExitReason, as a uapi header would carry them)."""
EXIT_SYSCALL = 1
EXIT_PAGE_FAULT = 2
EXIT_QUANTUM = 3
EXIT_BACKING = 4
EXIT_HALT = 5
EXIT_INVALID_OPCODE = 6
EXIT_EXCEPTION = 7
EXIT_INTERRUPT = 8           # a device event came due: interrupts may be pending
EXIT_TRAP = 9                # a CPU exception or `int n`: exit.vector says which
