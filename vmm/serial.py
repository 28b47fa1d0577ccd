"""A 16550-style UART at the PC's COM ports: a polled console on COM1, and on COM2 a line with
receive interrupts that carries the host's requests to the guest agent."""

COM1 = 0x3F8
COM2 = 0x2F8

# register offsets (DLAB = 0)
THR = RBR = 0
IER = 1
IIR = FCR = 2
LCR = 3
MCR = 4
LSR = 5
MSR = 6
SCR = 7

LSR_DR = 0x01      # data ready
LSR_THRE = 0x20    # transmit holding register empty
LSR_TEMT = 0x40    # transmitter empty
LCR_DLAB = 0x80
IER_RDI = 0x01     # interrupt when received data is available
IIR_NO_INT = 0x01
IIR_RDI = 0x04


class Serial16550:
    def __init__(self, sink, base: int = COM1, interrupt=None):
        self.base = base
        self.sink = sink            # callable(bytes)
        self.interrupt = interrupt  # raises the UART's interrupt line
        self.regs = bytearray(8)
        self.divisor = 1
        self.rx = bytearray()
        self.transmitted = 0

    def owns(self, port: int) -> bool:
        return self.base <= port < self.base + 8

    def port_out(self, port: int, value: int) -> None:
        reg = port - self.base
        value &= 0xFF
        dlab = self.regs[LCR] & LCR_DLAB
        if reg == THR and dlab:
            self.divisor = (self.divisor & 0xFF00) | value
        elif reg == IER and dlab:
            self.divisor = (self.divisor & 0x00FF) | (value << 8)
        elif reg == THR:
            self.transmitted += 1
            self.sink(bytes((value,)))
        elif reg in (IER, LCR, MCR, SCR):
            self.regs[reg] = value
            if reg == IER:
                self._maybe_interrupt()
        # FCR, LSR, MSR writes: FIFOs always on and empty

    def port_in(self, port: int) -> int:
        reg = port - self.base
        dlab = self.regs[LCR] & LCR_DLAB
        if reg == RBR and dlab:
            return self.divisor & 0xFF
        if reg == IER and dlab:
            return self.divisor >> 8
        if reg == RBR:
            return self.rx.pop(0) if self.rx else 0
        if reg == LSR:
            return LSR_THRE | LSR_TEMT | (LSR_DR if self.rx else 0)
        if reg == IIR:
            return IIR_RDI if self.rx and self.regs[IER] & IER_RDI else IIR_NO_INT
        return self.regs[reg]

    def write_bytes(self, data: bytes) -> None:
        """A driver's fast path: the bytes of a THR loop, in one call."""
        self.transmitted += len(data)
        self.sink(bytes(data))

    def receive(self, data: bytes) -> None:
        """Bytes arriving on the line (from the host side)."""
        self.rx += data
        self._maybe_interrupt()

    def _maybe_interrupt(self) -> None:
        if self.rx and self.regs[IER] & IER_RDI and self.interrupt is not None:
            self.interrupt()
