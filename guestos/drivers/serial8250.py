"""The console on a 16550 UART (drivers/tty/serial/8250), polled."""

UART_TX = 0
UART_LSR = 5
UART_LSR_THRE = 0x20


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
