"""virtio-mmio transport, version 2 (virtio 1.2, 4.2), modelled on Firecracker's MmioTransport.

The transport owns the register file, the feature windows and the device status machine. It activates the
device once on DRIVER_OK and resets it on Status=0. Registers are 32-bit, aligned and little-endian: any other
access reads 0 and is ignored on write (the device configuration space at 0x100+ also takes 8- and 16-bit
accesses). Writes that the current state does not allow are ignored, counted and logged at debug level (a
guest must not be able to flood the host's log).
"""

from devices.counters import Counters
from devices.devlog import get_logger
from devices.virtio_device import (ActivationError, STATUS_ACKNOWLEDGE, STATUS_DEVICE_NEEDS_RESET,
                                   STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FAILED, STATUS_FEATURES_OK,
                                   VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_RESET,
                                   VIRTIO_F_VERSION_1)
from devices.virtqueue import QueueError, SplitQueue

log = get_logger(__name__)

MAGIC_VALUE = 0x74726976            # "virt"
MMIO_VERSION = 2
VENDOR_ID = 0x5453_4C42             # "BLST": ours (QEMU uses "QEMU", Firecracker 0)

# Register offsets.
MAGIC_VALUE_REG = 0x000
VERSION_REG = 0x004
DEVICE_ID_REG = 0x008
VENDOR_ID_REG = 0x00C
DEVICE_FEATURES = 0x010
DEVICE_FEATURES_SEL = 0x014
DRIVER_FEATURES = 0x020
DRIVER_FEATURES_SEL = 0x024
QUEUE_SEL = 0x030
QUEUE_NUM_MAX = 0x034
QUEUE_NUM = 0x038
QUEUE_READY = 0x044
QUEUE_NOTIFY = 0x050
INTERRUPT_STATUS = 0x060
INTERRUPT_ACK = 0x064
STATUS = 0x070
QUEUE_DESC_LOW = 0x080
QUEUE_DESC_HIGH = 0x084
QUEUE_DRIVER_LOW = 0x090
QUEUE_DRIVER_HIGH = 0x094
QUEUE_DEVICE_LOW = 0x0A0
QUEUE_DEVICE_HIGH = 0x0A4
SHM_SEL = 0x0AC
SHM_LEN_LOW = 0x0B0
SHM_LEN_HIGH = 0x0B4
SHM_BASE_LOW = 0x0B8
SHM_BASE_HIGH = 0x0BC
QUEUE_RESET = 0x0C0
CONFIG_GENERATION = 0x0FC
CONFIG = 0x100

INTERRUPT_USED_BUFFER = 0x1
INTERRUPT_CONFIG_CHANGE = 0x2

TRANSPORT_FEATURES = (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_F_INDIRECT_DESC) | (1 << VIRTIO_F_EVENT_IDX) \
    | (1 << VIRTIO_F_RING_RESET)

# The initialisation steps in the only order a driver may take them (virtio 1.2, 3.1.1).
STATUS_STEPS = (STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_FEATURES_OK, STATUS_DRIVER_OK)
STATUS_PROGRESS = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK

_QUEUE_ADDRESS_REGS = {
    QUEUE_DESC_LOW: ("desc_table", 0), QUEUE_DESC_HIGH: ("desc_table", 32),
    QUEUE_DRIVER_LOW: ("avail_ring", 0), QUEUE_DRIVER_HIGH: ("avail_ring", 32),
    QUEUE_DEVICE_LOW: ("used_ring", 0), QUEUE_DEVICE_HIGH: ("used_ring", 32),
}


class TransportCounters(Counters):
    """What the virtio-mmio transport saw: notifications, interrupts and accesses it ignored."""
    notifications: int = 0              # QueueNotify writes passed to the device
    ignored_notifications: int = 0      # before activation, for a missing queue, or while NEEDS_RESET
    interrupts: int = 0                 # raise_irq calls (used buffer and config change)
    suppressed_interrupts: int = 0      # used buffers the driver asked not to be interrupted for
    config_interrupts: int = 0
    ignored_accesses: int = 0           # bad sizes, unknown registers, writes the state does not allow
    resets: int = 0
    activations: int = 0


class VirtioMmioTransport:
    """One virtio-mmio slot: `mmio_read(offset, size)` / `mmio_write(offset, size, value)` from the bus."""

    def __init__(self, device, mem, raise_irq):
        self.device = device
        self.mem = mem
        self.raise_irq = raise_irq
        self.queues = [SplitQueue(n) for n in device.queue_max_sizes]
        self.counters = TransportCounters()
        self.config_generation = 0      # survives reset: a driver comparing generations never sees it go back
        self._reset_registers()

    def _reset_registers(self) -> None:
        self.status = 0
        self.activated = False
        self.device_features_sel = 0
        self.driver_features_sel = 0
        self.driver_features = 0
        self.queue_sel = 0
        self.shm_sel = 0
        self.interrupt_status = 0
        self._queue_was_reset = [False] * len(self.queues)
        for q in self.queues:
            q.reset()

    # --- what the device sees ---
    def offered_features(self) -> int:
        return self.device.device_features() | TRANSPORT_FEATURES

    def signal_used(self, queue_index: int) -> bool:
        """The device put buffers in the used ring: interrupt unless the driver suppressed it."""
        try:
            needed = self.queues[queue_index].needs_notification(self.mem)
        except QueueError as err:
            log.debug("virtio-mmio: queue %d: %s", queue_index, err)
            self.set_needs_reset()
            return False
        if not needed:
            self.counters.suppressed_interrupts += 1
            return False
        self.interrupt_status |= INTERRUPT_USED_BUFFER
        self.counters.interrupts += 1
        self.raise_irq()
        return True

    def config_changed(self) -> None:
        """The device changed its configuration space."""
        self.config_generation = (self.config_generation + 1) & 0xFFFFFFFF
        self._config_interrupt()

    def set_needs_reset(self) -> None:
        """The device hit an error it cannot recover from without a reset."""
        self.status |= STATUS_DEVICE_NEEDS_RESET
        self._config_interrupt()

    def _config_interrupt(self) -> None:
        # Before DRIVER_OK the driver reads config and status itself (virtio 1.2, 2.1.2, 4.2.3).
        if not self.status & STATUS_DRIVER_OK:
            return
        self.interrupt_status |= INTERRUPT_CONFIG_CHANGE
        self.counters.interrupts += 1
        self.counters.config_interrupts += 1
        self.raise_irq()

    def reset(self) -> None:
        """Status 0: reset the device and every register, queue and pending interrupt."""
        self.device.reset()
        self._reset_registers()
        self.counters.resets += 1

    # --- the bus ---
    def mmio_read(self, offset: int, size: int) -> int:
        if offset == INTERRUPT_STATUS and size == 4:       # every interrupt reads it: no register walk
            return self.interrupt_status & 0xFFFFFFFF
        if offset >= CONFIG:
            if size not in (1, 2, 4):
                return self._ignore("config read of size %d", size, value=0)
            return self.device.read_config(offset - CONFIG, size) & ((1 << (8 * size)) - 1)
        if size != 4 or offset % 4:
            return self._ignore("register read %#x of size %d", offset, size, value=0)
        return self._read_register(offset) & 0xFFFFFFFF

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        if size == 4:                                       # the per-request registers first
            if offset == QUEUE_NOTIFY:
                self._notify(value & 0xFFFFFFFF)
                return
            if offset == INTERRUPT_ACK:
                self.interrupt_status &= ~(value & 0xFFFFFFFF)
                return
        if offset >= CONFIG:
            if size not in (1, 2, 4):
                self._ignore("config write of size %d", size)
            elif self.status & STATUS_DRIVER and not self.status & STATUS_FAILED:
                self.device.write_config(offset - CONFIG, size, value & ((1 << (8 * size)) - 1))
            else:
                self._ignore("config write in status %#x", self.status)
            return
        if size != 4 or offset % 4:
            self._ignore("register write %#x of size %d", offset, size)
            return
        self._write_register(offset, value & 0xFFFFFFFF)

    def _ignore(self, fmt: str, *args, value=None):
        self.counters.ignored_accesses += 1
        log.debug("virtio-mmio: ignored " + fmt, *args)
        return value

    def _selected_queue(self):
        return self.queues[self.queue_sel] if self.queue_sel < len(self.queues) else None

    def _read_register(self, offset: int) -> int:
        if offset == MAGIC_VALUE_REG:
            return MAGIC_VALUE
        if offset == VERSION_REG:
            return MMIO_VERSION
        if offset == DEVICE_ID_REG:
            return self.device.device_id
        if offset == VENDOR_ID_REG:
            return VENDOR_ID
        if offset == DEVICE_FEATURES:
            if self.device_features_sel > 1:
                return 0
            return self.offered_features() >> (32 * self.device_features_sel)
        if offset == QUEUE_NUM_MAX:
            q = self._selected_queue()
            return q.max_size if q else 0
        if offset == QUEUE_READY:
            q = self._selected_queue()
            return int(q.ready) if q else 0
        if offset == INTERRUPT_STATUS:
            return self.interrupt_status
        if offset == STATUS:
            return self.status
        if offset in (SHM_LEN_LOW, SHM_LEN_HIGH, SHM_BASE_LOW, SHM_BASE_HIGH):
            return 0xFFFFFFFF           # no shared memory regions: length and base read as -1
        if offset == QUEUE_RESET:
            return 0                    # a queue reset completes at once
        if offset == CONFIG_GENERATION:
            return self.config_generation
        return self._ignore("read of write-only or unknown register %#x", offset, value=0)

    def _write_register(self, offset: int, value: int) -> None:
        if offset == DEVICE_FEATURES_SEL:
            self.device_features_sel = value
        elif offset == DRIVER_FEATURES_SEL:
            self.driver_features_sel = value
        elif offset == DRIVER_FEATURES:
            self._write_driver_features(value)
        elif offset == QUEUE_SEL:
            self.queue_sel = value
        elif offset == QUEUE_NUM:
            q = self._queue_if_configurable()
            if q is not None:
                q.size = value
        elif offset in _QUEUE_ADDRESS_REGS:
            q = self._queue_if_configurable()
            if q is not None:
                field, shift = _QUEUE_ADDRESS_REGS[offset]
                old = getattr(q, field)
                setattr(q, field, (old & ~(0xFFFFFFFF << shift)) | (value << shift))
        elif offset == QUEUE_READY:
            self._write_queue_ready(value)
        elif offset == QUEUE_RESET:
            self._write_queue_reset(value)
        elif offset == QUEUE_NOTIFY:
            self._notify(value)
        elif offset == INTERRUPT_ACK:
            self.interrupt_status &= ~value
        elif offset == STATUS:
            self._write_status(value)
        elif offset == SHM_SEL:
            self.shm_sel = value
        else:
            self._ignore("write to read-only or unknown register %#x", offset)

    # --- features ---
    def _write_driver_features(self, value: int) -> None:
        progress = self.status & (STATUS_PROGRESS | STATUS_FAILED)
        if progress != STATUS_ACKNOWLEDGE | STATUS_DRIVER:
            self._ignore("DriverFeatures write in status %#x", self.status)
        elif self.driver_features_sel > 1:
            self._ignore("DriverFeatures window %d", self.driver_features_sel)
        else:
            shift = 32 * self.driver_features_sel
            self.driver_features = (self.driver_features & ~(0xFFFFFFFF << shift)) | (value << shift)

    def _features_acceptable(self) -> bool:
        if self.driver_features & ~self.offered_features():
            log.debug("virtio-mmio: driver accepted features %#x that were not offered",
                      self.driver_features & ~self.offered_features())
            return False
        if not self.driver_features >> VIRTIO_F_VERSION_1 & 1:
            log.debug("virtio-mmio: driver did not accept VIRTIO_F_VERSION_1 (legacy drivers are not served)")
            return False
        return True

    def _apply_features(self, q: SplitQueue) -> None:
        q.event_idx = bool(self.driver_features >> VIRTIO_F_EVENT_IDX & 1)
        q.indirect_desc = bool(self.driver_features >> VIRTIO_F_INDIRECT_DESC & 1)

    # --- status machine ---
    def _write_status(self, value: int) -> None:
        value &= 0xFF
        if value == 0:
            self.reset()
            return
        old = self.status & STATUS_PROGRESS
        new = value & STATUS_PROGRESS
        if value & STATUS_FAILED:
            if not self.status & STATUS_FAILED:
                self.status |= STATUS_FAILED
                log.debug("virtio-mmio: the driver set FAILED (status %#x)", self.status)
            if new != old:
                self._ignore("status progress %#x together with FAILED", value)
            return
        if self.status & STATUS_FAILED:
            self._ignore("status %#x after FAILED (only a reset helps)", value)
            return
        if value & ~(STATUS_PROGRESS | STATUS_DEVICE_NEEDS_RESET):
            self._ignore("status %#x with undefined bits", value)
            return
        if new == old:
            return
        if new & old != old:
            self._ignore("status %#x clears bits of %#x", value, self.status)
            return
        prefix = 0
        allowed = set()
        for step in STATUS_STEPS:
            prefix |= step
            allowed.add(prefix)
        if new not in allowed:
            self._ignore("status %#x skips a step", value)
            return
        for step in STATUS_STEPS:
            if not new & step or old & step:
                continue
            if step == STATUS_FEATURES_OK:
                if not self._features_acceptable():
                    return                  # FEATURES_OK not kept: the driver reads it back and gives up
                self.status |= STATUS_FEATURES_OK
                self.device.ack_features(self.driver_features)
                for q in self.queues:
                    self._apply_features(q)
            elif step == STATUS_DRIVER_OK:
                self.status |= STATUS_DRIVER_OK
                self._activate()
            else:
                self.status |= step

    def _activate(self) -> None:
        if self.activated:
            return
        for index, q in enumerate(self.queues):
            if q.ready and not q.is_valid(self.mem):
                log.debug("virtio-mmio: queue %d is not valid at DRIVER_OK", index)
                self.set_needs_reset()
                return
        for q in self.queues:
            self._apply_features(q)
        try:
            self.device.activate(self, self.queues, self.mem)
        except ActivationError as err:
            log.debug("virtio-mmio: activation refused: %s", err)
            self.set_needs_reset()
            return
        self.activated = True
        self.counters.activations += 1

    # --- queues ---
    def _queue_if_configurable(self):
        """The selected queue, if the driver may set it up now; otherwise None (and the write is ignored)."""
        q = self._selected_queue()
        if q is None:
            return self._ignore("queue register for missing queue %d", self.queue_sel)
        if q.ready:
            return self._ignore("queue register for ready queue %d", self.queue_sel)
        if self.status & STATUS_FAILED or not self.status & STATUS_FEATURES_OK:
            return self._ignore("queue register in status %#x", self.status)
        if self.status & STATUS_DRIVER_OK and not self._queue_was_reset[self.queue_sel]:
            return self._ignore("queue register after DRIVER_OK for queue %d", self.queue_sel)
        return q

    def _write_queue_ready(self, value: int) -> None:
        q = self._selected_queue()
        if value == 0:
            # The spec lets a driver stop using a queue at any time; the device then leaves it alone.
            if q is not None and q.ready and self.status & STATUS_FEATURES_OK:
                q.ready = False
            return
        q = self._queue_if_configurable()
        if q is None:
            return
        if value != 1:
            self._ignore("QueueReady value %#x", value)
            return
        self._apply_features(q)
        if self.activated:
            # Re-enabling after a queue reset: the device is live, so check the rings now.
            if not q.is_valid(self.mem):
                log.debug("virtio-mmio: queue %d re-enabled with an invalid layout", self.queue_sel)
                self.set_needs_reset()
                return
        q.ready = True
        self._queue_was_reset[self.queue_sel] = False

    def _write_queue_reset(self, value: int) -> None:
        q = self._selected_queue()
        if q is None or value != 1:
            self._ignore("QueueReset %#x for queue %d", value, self.queue_sel)
        elif not self.driver_features >> VIRTIO_F_RING_RESET & 1 or not self.status & STATUS_FEATURES_OK:
            self._ignore("QueueReset without VIRTIO_F_RING_RESET negotiated")
        else:
            q.reset()
            self._queue_was_reset[self.queue_sel] = True
            self.device.reset_queue(self.queue_sel)

    def _notify(self, value: int) -> None:
        if not self.activated or self.status & STATUS_DEVICE_NEEDS_RESET or value >= len(self.queues):
            self.counters.ignored_notifications += 1
            return
        self.counters.notifications += 1
        self.device.notify(value)
