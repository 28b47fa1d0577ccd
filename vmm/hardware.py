"""What the guest kernel sees of the machine: memory, ports, MMIO, the vCPU and the clock."""


class Hardware:
    def __init__(self, machine):
        self._machine = machine
        self.ram = machine.ram.view           # guest-physical memory
        self.ram_size = machine.ram.size
        self.cpu = machine.cpu
        self.clock = machine.clock
        self.kernel = None                     # set by the kernel at boot, for the oracle only
        self.trace_sinks = []                  # tracepoint sinks the kernel subscribes when it starts
        # the per-request calls go straight to the machine: no wrapper frame on every MMIO access or IRQ
        self.take_pending_irqs = machine.take_pending_irqs
        self.irq_pending = machine.irq_pending     # the lines raised (one set, never replaced): a look is free
        self.idle = machine.idle
        self.mmio_read = machine.mmio_read
        self.mmio_write = machine.mmio_write

    def populate(self, paddr: int, length: int) -> None:
        """A hint that the kernel is about to write all of [paddr, paddr + length): the host backs it in
        one go instead of a page fault per page. What the guest sees does not change."""
        self._machine.ram.populate([(paddr, length)])

    def port_in(self, port: int) -> int:
        return self._machine.port_in(port)

    def port_out(self, port: int, value: int) -> None:
        self._machine.port_out(port, value)

    def port_out_string(self, port: int, data: bytes) -> None:
        """rep outsb: the same bytes as a loop of port_out, in one exit."""
        self._machine.port_out_string(port, data)

    def take_pending_irqs(self) -> list:
        """Interrupt lines raised since the last call (the kernel acknowledges them all)."""
        return self._machine.take_pending_irqs()

    def arm_timer(self, delay_ns: int) -> None:
        """One timer interrupt (IRQ 0) after delay_ns of virtual time."""
        self._machine.arm_timer(delay_ns, 0)

    def idle(self) -> bool:
        """Wait for the next interrupt: the virtual clock jumps ahead. False if nothing can come."""
        return self._machine.idle()

    def mmio_read(self, addr: int, size: int) -> int:
        return self._machine.mmio_read(addr, size)

    def mmio_write(self, addr: int, size: int, value: int) -> None:
        self._machine.mmio_write(addr, size, value)
