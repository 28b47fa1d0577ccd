"""16550 UARTs (drivers/tty/serial/8250): the console on ttyS0, polled for output, and ttyS1
with receive interrupts, the line a host-side agent channel uses (as qemu-ga uses a serial port)."""

UART_RX = 0
UART_TX = 0
UART_IER = 1
UART_LSR = 5
UART_LSR_DR = 0x01
UART_LSR_THRE = 0x20
UART_IER_RDI = 0x01


class Serial8250Console:
    def __init__(self, hw, base: int = 0x3F8):
        self.hw = hw
        self.base = base
        self.bytes_written = 0

    def write(self, data: bytes) -> int:
        # Wait for THRE, then send the run with one string-out (rep outsb) instead of a
        # port write per byte: the same bytes reach the UART.
        if data:
            while not self.hw.port_in(self.base + UART_LSR) & UART_LSR_THRE:
                pass
            self.hw.port_out_string(self.base + UART_TX, data)
            self.bytes_written += len(data)
        return len(data)


class Serial8250Port(Serial8250Console):
    """A UART whose received bytes arrive by interrupt into a buffer that readers drain."""

    def __init__(self, hw, base: int, irq: int, request_irq):
        super().__init__(hw, base)
        self.irq = irq
        self.rx_buf = bytearray()
        request_irq(irq, self.serial8250_interrupt)
        hw.port_out(base + UART_IER, UART_IER_RDI)

    def serial8250_interrupt(self) -> None:
        """serial8250_rx_chars(): take every byte the UART holds."""
        while self.hw.port_in(self.base + UART_LSR) & UART_LSR_DR:
            self.rx_buf.append(self.hw.port_in(self.base + UART_RX))

    def read(self, length: int) -> bytes:
        data = bytes(self.rx_buf[:length])
        del self.rx_buf[:length]
        return data
