"""virtio-mmio discovery and the transport's driver side (drivers/virtio/virtio_mmio.c).

Devices are found from the command line, `virtio_mmio.device=<size>@<base>:<irq>`,
as Linux finds them without a device tree."""
from ..kernel.printk import KERN_ERR, KERN_INFO
from .virtio_ring import VringVirtqueue

VIRTIO_MMIO_MAGIC_VALUE = 0x000
VIRTIO_MMIO_VERSION = 0x004
VIRTIO_MMIO_DEVICE_ID = 0x008
VIRTIO_MMIO_VENDOR_ID = 0x00C
VIRTIO_MMIO_DEVICE_FEATURES = 0x010
VIRTIO_MMIO_DEVICE_FEATURES_SEL = 0x014
VIRTIO_MMIO_DRIVER_FEATURES = 0x020
VIRTIO_MMIO_DRIVER_FEATURES_SEL = 0x024
VIRTIO_MMIO_QUEUE_SEL = 0x030
VIRTIO_MMIO_QUEUE_NUM_MAX = 0x034
VIRTIO_MMIO_QUEUE_NUM = 0x038
VIRTIO_MMIO_QUEUE_READY = 0x044
VIRTIO_MMIO_QUEUE_NOTIFY = 0x050
VIRTIO_MMIO_INTERRUPT_STATUS = 0x060
VIRTIO_MMIO_INTERRUPT_ACK = 0x064
VIRTIO_MMIO_STATUS = 0x070
VIRTIO_MMIO_QUEUE_DESC_LOW = 0x080
VIRTIO_MMIO_QUEUE_DESC_HIGH = 0x084
VIRTIO_MMIO_QUEUE_AVAIL_LOW = 0x090
VIRTIO_MMIO_QUEUE_AVAIL_HIGH = 0x094
VIRTIO_MMIO_QUEUE_USED_LOW = 0x0A0
VIRTIO_MMIO_QUEUE_USED_HIGH = 0x0A4
VIRTIO_MMIO_CONFIG_GENERATION = 0x0FC
VIRTIO_MMIO_CONFIG = 0x100
VIRTIO_MMIO_INT_VRING = 1
VIRTIO_MMIO_INT_CONFIG = 2
MAGIC = 0x74726976

VIRTIO_CONFIG_S_ACKNOWLEDGE = 1
VIRTIO_CONFIG_S_DRIVER = 2
VIRTIO_CONFIG_S_DRIVER_OK = 4
VIRTIO_CONFIG_S_FEATURES_OK = 8
VIRTIO_CONFIG_S_NEEDS_RESET = 0x40
VIRTIO_CONFIG_S_FAILED = 0x80

VIRTIO_F_INDIRECT_DESC = 28
VIRTIO_F_EVENT_IDX = 29
VIRTIO_F_VERSION_1 = 32

VIRTIO_ID_BLOCK = 2
VIRTIO_ID_BALLOON = 5


class VirtioMmioDevice:
    """One probed device: registers, negotiated features, virtqueues, interrupt."""

    def __init__(self, k, base: int, size: int, irq: int):
        self.k, self.base, self.size, self.irq = k, base, size, irq
        self.device_id = 0
        self.features = 0
        self.vqs = []
        self.config_changed = None       # callback of the device driver

    def read(self, off: int) -> int:
        return self.k.hw.mmio_read(self.base + off, 4)

    def write(self, off: int, value: int) -> None:
        self.k.hw.mmio_write(self.base + off, 4, value & 0xFFFFFFFF)

    def read_config(self, off: int, size: int) -> int:
        """A config field, re-read until ConfigGeneration is stable (multi-word fields)."""
        while True:
            gen = self.read(VIRTIO_MMIO_CONFIG_GENERATION)
            value = 0
            for i in range(0, size, 4):
                value |= self.k.hw.mmio_read(self.base + VIRTIO_MMIO_CONFIG + off + i, min(4, size - i)) << (8 * i)
            if self.read(VIRTIO_MMIO_CONFIG_GENERATION) == gen:
                return value

    def write_config(self, off: int, size: int, value: int) -> None:
        self.k.hw.mmio_write(self.base + VIRTIO_MMIO_CONFIG + off, size, value)

    def add_status(self, bits: int) -> None:
        self.write(VIRTIO_MMIO_STATUS, self.read(VIRTIO_MMIO_STATUS) | bits)

    def negotiate(self, wanted: int) -> bool:
        """Features both sides know; FEATURES_OK must stick or the device refused."""
        offered = 0
        for sel in (0, 1):
            self.write(VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel)
            offered |= self.read(VIRTIO_MMIO_DEVICE_FEATURES) << (32 * sel)
        if not offered >> VIRTIO_F_VERSION_1 & 1:
            self.k.printk(KERN_ERR, f"virtio-mmio {self.base:#x}: legacy devices are not supported")
            return False
        self.features = offered & (wanted | 1 << VIRTIO_F_VERSION_1)
        for sel in (0, 1):
            self.write(VIRTIO_MMIO_DRIVER_FEATURES_SEL, sel)
            self.write(VIRTIO_MMIO_DRIVER_FEATURES, self.features >> (32 * sel))
        self.add_status(VIRTIO_CONFIG_S_FEATURES_OK)
        return bool(self.read(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK)

    def has(self, bit: int) -> bool:
        return bool(self.features >> bit & 1)

    def setup_vq(self, index: int, callback, max_num: int = 256):
        self.write(VIRTIO_MMIO_QUEUE_SEL, index)
        if self.read(VIRTIO_MMIO_QUEUE_READY):
            raise RuntimeError("virtqueue already in use")
        num = min(self.read(VIRTIO_MMIO_QUEUE_NUM_MAX), max_num)
        if num == 0:
            return None
        hw, notify_addr = self.k.hw, self.base + VIRTIO_MMIO_QUEUE_NOTIFY
        vq = VringVirtqueue(self.k, index, num, self.has(VIRTIO_F_EVENT_IDX),
                            lambda: hw.mmio_write(notify_addr, 4, index))
        vq.callback = callback
        self.write(VIRTIO_MMIO_QUEUE_NUM, num)
        for reg, paddr in ((VIRTIO_MMIO_QUEUE_DESC_LOW, vq.desc_paddr), (VIRTIO_MMIO_QUEUE_AVAIL_LOW, vq.avail_paddr),
                           (VIRTIO_MMIO_QUEUE_USED_LOW, vq.used_paddr)):
            self.write(reg, paddr)
            self.write(reg + 4, paddr >> 32)
        self.write(VIRTIO_MMIO_QUEUE_READY, 1)
        self.vqs.append(vq)
        return vq

    def vm_interrupt(self) -> None:
        hw, base = self.k.hw, self.base             # read() and write() inline: once per interrupt
        status = hw.mmio_read(base + VIRTIO_MMIO_INTERRUPT_STATUS, 4)
        hw.mmio_write(base + VIRTIO_MMIO_INTERRUPT_ACK, 4, status & 0xFFFFFFFF)
        if status & VIRTIO_MMIO_INT_CONFIG and self.config_changed is not None:
            self.config_changed()
        if status & VIRTIO_MMIO_INT_VRING:
            for vq in self.vqs:
                vq.callback(vq)


def virtio_mmio_probe(k, drivers: dict) -> list:
    """Probe every command-line device; drivers: device id -> probe(k, vdev) returning a driver."""
    found = []
    for size, base, irq in k.params.value("virtio_mmio.device") or ():      # parsed by check_params()
        vdev = VirtioMmioDevice(k, base, size, irq)
        if vdev.read(VIRTIO_MMIO_MAGIC_VALUE) != MAGIC or vdev.read(VIRTIO_MMIO_VERSION) != 2:
            k.printk(KERN_ERR, f"virtio_mmio {base:#x}: no version 2 device")
            continue
        vdev.device_id = vdev.read(VIRTIO_MMIO_DEVICE_ID)
        if vdev.device_id == 0:
            continue
        vdev.write(VIRTIO_MMIO_STATUS, 0)
        vdev.add_status(VIRTIO_CONFIG_S_ACKNOWLEDGE)
        probe = drivers.get(vdev.device_id)
        if probe is None:
            k.printk(KERN_INFO, f"virtio_mmio {base:#x}: no driver for device id {vdev.device_id}")
            continue
        vdev.add_status(VIRTIO_CONFIG_S_DRIVER)
        driver = probe(k, vdev)
        if driver is None:
            vdev.add_status(VIRTIO_CONFIG_S_FAILED)
            continue
        k.request_irq(irq, vdev.vm_interrupt)
        vdev.add_status(VIRTIO_CONFIG_S_DRIVER_OK)
        ready = getattr(driver, "ready", None)      # work that needs a live device (no kicks before DRIVER_OK)
        if ready is not None:
            ready()
        found.append(driver)
    return found
