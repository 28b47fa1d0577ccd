"""The virtio-mmio transport (devices.virtio_mmio), driven through its registers as a guest driver would.

MmioDriver lives here and is imported by the virtio-blk tests.
"""
import pytest

from devices.virtio_device import (ActivationError, STATUS_ACKNOWLEDGE, STATUS_DEVICE_NEEDS_RESET,
                                   STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FAILED, STATUS_FEATURES_OK,
                                   VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_RESET,
                                   VIRTIO_F_VERSION_1, VirtioDevice)
from devices.virtio_mmio import (CONFIG, CONFIG_GENERATION, DEVICE_FEATURES, DEVICE_FEATURES_SEL,
                                 DEVICE_ID_REG, DRIVER_FEATURES, DRIVER_FEATURES_SEL, INTERRUPT_ACK,
                                 INTERRUPT_STATUS, MAGIC_VALUE_REG, QUEUE_DESC_HIGH, QUEUE_DESC_LOW,
                                 QUEUE_DEVICE_HIGH, QUEUE_DEVICE_LOW, QUEUE_DRIVER_HIGH, QUEUE_DRIVER_LOW,
                                 QUEUE_NOTIFY, QUEUE_NUM, QUEUE_NUM_MAX, QUEUE_READY, QUEUE_RESET, QUEUE_SEL,
                                 SHM_BASE_HIGH, SHM_BASE_LOW, SHM_LEN_HIGH, SHM_LEN_LOW, SHM_SEL, STATUS,
                                 VENDOR_ID, VENDOR_ID_REG, VERSION_REG, VirtioMmioTransport)
from devices.virtqueue import VIRTQ_AVAIL_F_NO_INTERRUPT
from test_virtqueue import MockDriver
from vmm.memory import GuestRAM

MiB = 1 << 20
ACK_DRIVER = STATUS_ACKNOWLEDGE | STATUS_DRIVER
UP_TO_FEATURES_OK = ACK_DRIVER | STATUS_FEATURES_OK
ALL_UP = UP_TO_FEATURES_OK | STATUS_DRIVER_OK


class MmioDriver:
    """A guest driver's use of the registers (Linux's virtio_mmio.c, in small)."""

    def __init__(self, transport):
        self.t = transport

    def read(self, offset: int) -> int:
        return self.t.mmio_read(offset, 4)

    def write(self, offset: int, value: int) -> None:
        self.t.mmio_write(offset, 4, value)

    def device_features(self) -> int:
        self.write(DEVICE_FEATURES_SEL, 0)
        low = self.read(DEVICE_FEATURES)
        self.write(DEVICE_FEATURES_SEL, 1)
        return low | self.read(DEVICE_FEATURES) << 32

    def add_status(self, bits: int) -> int:
        self.write(STATUS, self.read(STATUS) | bits)
        return self.read(STATUS)

    def negotiate(self, features=None) -> bool:
        """Reset, ACKNOWLEDGE, DRIVER, write features (default: all offered), FEATURES_OK; True if kept."""
        self.write(STATUS, 0)
        self.add_status(STATUS_ACKNOWLEDGE)
        self.add_status(STATUS_DRIVER)
        features = self.device_features() if features is None else features
        self.write(DRIVER_FEATURES_SEL, 0)
        self.write(DRIVER_FEATURES, features & 0xFFFFFFFF)
        self.write(DRIVER_FEATURES_SEL, 1)
        self.write(DRIVER_FEATURES, features >> 32)
        return bool(self.add_status(STATUS_FEATURES_OK) & STATUS_FEATURES_OK)

    def setup_queue(self, index: int, ring: MockDriver, ready: bool = True) -> None:
        self.write(QUEUE_SEL, index)
        self.write(QUEUE_NUM, ring.size)
        for low, high, addr in ((QUEUE_DESC_LOW, QUEUE_DESC_HIGH, ring.desc_table),
                                (QUEUE_DRIVER_LOW, QUEUE_DRIVER_HIGH, ring.avail_ring),
                                (QUEUE_DEVICE_LOW, QUEUE_DEVICE_HIGH, ring.used_ring)):
            self.write(low, addr & 0xFFFFFFFF)
            self.write(high, addr >> 32)
        if ready:
            self.write(QUEUE_READY, 1)

    def driver_ok(self) -> int:
        return self.add_status(STATUS_DRIVER_OK)

    def bring_up(self, rings: dict, features=None) -> None:
        """The whole initialisation sequence: rings is {queue index: MockDriver}."""
        assert self.negotiate(features)
        for index, ring in rings.items():
            self.setup_queue(index, ring)
        assert self.driver_ok() & STATUS_DRIVER_OK

    def notify(self, index: int = 0) -> None:
        self.write(QUEUE_NOTIFY, index)

    def ack_interrupts(self) -> int:
        pending = self.read(INTERRUPT_STATUS)
        self.write(INTERRUPT_ACK, pending)
        return pending


class DummyDevice(VirtioDevice):
    """Two queues, eight bytes of config, and a record of what the transport asked."""
    device_id = 42
    queue_max_sizes = [16, 8]

    def __init__(self, refuse=False):
        super().__init__()
        self.config = bytearray(b"\x11\x22\x33\x44\x55\x66\x77\x88")
        self.activations, self.resets, self.notified, self.queue_resets, self.config_writes = [], 0, [], [], []
        self.refuse = refuse

    def device_features(self) -> int:
        return 1 << 3 | 1 << 5

    def config_space(self) -> bytes:
        return bytes(self.config)

    def write_config(self, offset, size, value):
        self.config_writes.append((offset, size, value))

    def activate(self, transport, queues, mem):
        if self.refuse:
            raise ActivationError("no")
        self.activations.append((transport, queues, mem))

    def reset(self):
        super().reset()
        self.resets += 1

    def reset_queue(self, queue_index):
        self.queue_resets.append(queue_index)

    def notify(self, queue_index):
        self.notified.append(queue_index)


@pytest.fixture
def mem():
    ram = GuestRAM(16 * MiB)
    yield ram
    ram.close()


@pytest.fixture
def irqs():
    return []


@pytest.fixture
def dev():
    return DummyDevice()


@pytest.fixture
def t(dev, mem, irqs):
    return VirtioMmioTransport(dev, mem, lambda: irqs.append(1))


@pytest.fixture
def d(t):
    return MmioDriver(t)


@pytest.fixture
def rings(mem):
    return {0: MockDriver(mem, size=16, base=0x10000), 1: MockDriver(mem, size=8, base=0x20000, heap=0x200000)}


OFFERED = (1 << 3) | (1 << 5) | (1 << VIRTIO_F_INDIRECT_DESC) | (1 << VIRTIO_F_EVENT_IDX) \
    | (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_F_RING_RESET)


# --- identity and access sizes ---

def test_identity_registers(d):
    assert d.read(MAGIC_VALUE_REG) == 0x74726976
    assert d.read(VERSION_REG) == 2
    assert d.read(DEVICE_ID_REG) == 42
    assert d.read(VENDOR_ID_REG) == VENDOR_ID


@pytest.mark.parametrize("size", [1, 2, 8])
def test_registers_take_only_32_bit_accesses(t, d, size):
    assert t.mmio_read(MAGIC_VALUE_REG, size) == 0
    t.mmio_write(QUEUE_SEL, size, 1)
    assert d.read(QUEUE_NUM_MAX) == 16        # still queue 0
    assert t.counters.ignored_accesses == 2


def test_unaligned_register_access_is_ignored(t, d):
    assert t.mmio_read(MAGIC_VALUE_REG + 1, 4) == 0
    t.mmio_write(QUEUE_SEL + 2, 4, 1)
    assert d.read(QUEUE_NUM_MAX) == 16


def test_write_only_and_unknown_registers_read_zero(d):
    for offset in (DEVICE_FEATURES_SEL, DRIVER_FEATURES, DRIVER_FEATURES_SEL, QUEUE_SEL, QUEUE_NUM, QUEUE_NOTIFY,
                   INTERRUPT_ACK, QUEUE_DESC_LOW, QUEUE_DESC_HIGH, QUEUE_DRIVER_LOW, QUEUE_DEVICE_HIGH, SHM_SEL,
                   0x028, 0x03C, 0x040, 0x0F0):
        assert d.read(offset) == 0


def test_read_only_registers_ignore_writes(t, d):
    for offset in (MAGIC_VALUE_REG, VERSION_REG, DEVICE_ID_REG, VENDOR_ID_REG, DEVICE_FEATURES, QUEUE_NUM_MAX,
                   INTERRUPT_STATUS, CONFIG_GENERATION, SHM_LEN_LOW):
        d.write(offset, 0x1234)
    assert d.read(MAGIC_VALUE_REG) == 0x74726976 and d.read(DEVICE_ID_REG) == 42
    assert d.read(INTERRUPT_STATUS) == 0 and d.read(CONFIG_GENERATION) == 0
    assert t.counters.ignored_accesses == 9


def test_no_shared_memory_regions(d):
    d.write(SHM_SEL, 0)
    assert [d.read(r) for r in (SHM_LEN_LOW, SHM_LEN_HIGH, SHM_BASE_LOW, SHM_BASE_HIGH)] == [0xFFFFFFFF] * 4


# --- features ---

def test_device_feature_windows(d):
    assert d.device_features() == OFFERED
    d.write(DEVICE_FEATURES_SEL, 2)
    assert d.read(DEVICE_FEATURES) == 0


def test_negotiation_accepts_a_subset_with_version_1(t, d, dev):
    wanted = (1 << 3) | (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_F_EVENT_IDX)
    assert d.negotiate(wanted)
    assert t.status == UP_TO_FEATURES_OK
    assert t.driver_features == wanted and dev.acked_features == wanted
    assert all(q.event_idx and not q.indirect_desc for q in t.queues)


def test_features_not_offered_are_refused(t, d, dev):
    assert not d.negotiate(OFFERED | 1 << 7)
    assert d.read(STATUS) == ACK_DRIVER
    assert dev.acked_features == 0


def test_driver_without_version_1_is_refused(d):
    assert not d.negotiate((1 << 3) | (1 << VIRTIO_F_EVENT_IDX))


def test_driver_may_retry_features_after_refusal(d):
    assert not d.negotiate(1 << 3)
    d.write(DRIVER_FEATURES_SEL, 1)
    d.write(DRIVER_FEATURES, 1)               # VERSION_1
    assert d.add_status(STATUS_FEATURES_OK) & STATUS_FEATURES_OK


def test_driver_features_only_between_driver_and_features_ok(t, d):
    d.write(DRIVER_FEATURES_SEL, 1)
    d.write(DRIVER_FEATURES, 1)               # before ACKNOWLEDGE|DRIVER: ignored
    assert t.driver_features == 0
    d.negotiate()
    d.write(DRIVER_FEATURES_SEL, 0)
    d.write(DRIVER_FEATURES, 0)               # after FEATURES_OK: ignored
    assert t.driver_features == OFFERED
    d.write(STATUS, 0)
    d.add_status(ACK_DRIVER)
    d.write(DRIVER_FEATURES_SEL, 2)
    d.write(DRIVER_FEATURES, 0xFF)            # no third window
    assert t.driver_features == 0


# --- status machine ---

def test_status_steps_one_at_a_time(t, d, dev, rings):
    assert d.add_status(STATUS_ACKNOWLEDGE) == STATUS_ACKNOWLEDGE
    assert d.add_status(STATUS_DRIVER) == ACK_DRIVER
    d.write(DRIVER_FEATURES_SEL, 1)
    d.write(DRIVER_FEATURES, 1)
    assert d.add_status(STATUS_FEATURES_OK) == UP_TO_FEATURES_OK
    d.setup_queue(0, rings[0])
    assert d.driver_ok() == ALL_UP
    assert t.activated and len(dev.activations) == 1


@pytest.mark.parametrize("value", [STATUS_DRIVER, STATUS_FEATURES_OK, STATUS_DRIVER_OK,
                                   STATUS_ACKNOWLEDGE | STATUS_FEATURES_OK, ACK_DRIVER | STATUS_DRIVER_OK,
                                   0x10, 0x20])
def test_skipping_steps_is_ignored(t, d, value):
    d.write(STATUS, value)
    assert d.read(STATUS) == 0
    assert t.counters.ignored_accesses == 1


def test_several_steps_in_one_write_are_taken_in_order(t, d, dev):
    d.write(STATUS, ACK_DRIVER)
    assert d.read(STATUS) == ACK_DRIVER
    d.write(DRIVER_FEATURES_SEL, 1)
    d.write(DRIVER_FEATURES, 1)
    d.write(STATUS, ALL_UP)
    assert d.read(STATUS) == ALL_UP and t.activated


def test_features_ok_refused_stops_a_combined_write(t, d):
    d.write(STATUS, ACK_DRIVER)
    d.write(STATUS, ALL_UP)                   # no VERSION_1 accepted
    assert d.read(STATUS) == ACK_DRIVER and not t.activated


def test_status_never_moves_backwards(t, d):
    d.negotiate()
    d.write(STATUS, STATUS_ACKNOWLEDGE)
    d.write(STATUS, ACK_DRIVER)
    assert d.read(STATUS) == UP_TO_FEATURES_OK


def test_failed_is_recorded_and_blocks_progress(t, d, dev):
    d.negotiate()
    d.add_status(STATUS_FAILED)
    assert d.read(STATUS) == UP_TO_FEATURES_OK | STATUS_FAILED
    d.write(STATUS, UP_TO_FEATURES_OK | STATUS_FAILED | STATUS_DRIVER_OK)
    d.write(STATUS, ALL_UP)
    assert d.read(STATUS) == UP_TO_FEATURES_OK | STATUS_FAILED and not dev.activations
    d.write(STATUS, 0)
    assert d.read(STATUS) == 0


def test_failed_from_reset_state(d):
    d.write(STATUS, STATUS_FAILED)
    assert d.read(STATUS) == STATUS_FAILED


def test_activation_happens_once(t, d, dev, rings):
    d.bring_up({0: rings[0]})
    d.write(STATUS, ALL_UP)
    d.write(STATUS, ALL_UP | STATUS_DEVICE_NEEDS_RESET)
    assert len(dev.activations) == 1
    transport, queues, mem = dev.activations[0]
    assert transport is t and queues is t.queues and mem is t.mem
    assert t.counters.activations == 1


def test_activation_with_an_invalid_ready_queue_needs_reset(t, d, dev, irqs, mem):
    d.negotiate()
    bad = MockDriver(mem, size=16, base=0x10000)
    d.setup_queue(0, bad)
    d.write(QUEUE_SEL, 0)
    t.queues[0].used_ring = 0x10002           # as if written misaligned
    d.driver_ok()
    assert not t.activated and not dev.activations
    assert d.read(STATUS) == ALL_UP | STATUS_DEVICE_NEEDS_RESET
    assert d.read(INTERRUPT_STATUS) == 2 and irqs == [1]


def test_activation_ignores_queues_that_are_not_ready(t, d, dev, rings):
    d.negotiate()
    d.setup_queue(1, rings[1], ready=False)
    d.write(QUEUE_NUM, 3)                     # nonsense, but the queue is not ready
    d.driver_ok()
    assert t.activated


def test_activation_refused_by_the_device(mem, irqs):
    t = VirtioMmioTransport(DummyDevice(refuse=True), mem, lambda: irqs.append(1))
    d = MmioDriver(t)
    d.negotiate()
    d.driver_ok()
    assert not t.activated and d.read(STATUS) & STATUS_DEVICE_NEEDS_RESET


def test_reset_clears_everything(t, d, dev, rings, mem):
    d.bring_up(rings)
    t.signal_used(0)
    t.config_changed()
    d.write(QUEUE_SEL, 1)
    d.write(DEVICE_FEATURES_SEL, 1)
    resets_before = dev.resets
    d.write(STATUS, 0)
    assert dev.resets == resets_before + 1
    assert (t.status, t.activated, t.driver_features, t.interrupt_status, t.queue_sel) == (0, False, 0, 0, 0)
    assert t.device_features_sel == 0 and t.driver_features_sel == 0
    for q, max_size in zip(t.queues, (16, 8)):
        assert (q.ready, q.size, q.desc_table, q.avail_ring, q.used_ring, q.next_avail) == \
            (False, max_size, 0, 0, 0, 0)
    assert d.read(CONFIG_GENERATION) == 1     # survives reset
    d.bring_up(rings)                         # and the device comes up again
    assert len(dev.activations) == 2


# --- queue registers ---

def test_queue_num_max_and_missing_queues(d):
    d.write(QUEUE_SEL, 0)
    assert d.read(QUEUE_NUM_MAX) == 16
    d.write(QUEUE_SEL, 1)
    assert d.read(QUEUE_NUM_MAX) == 8
    d.write(QUEUE_SEL, 2)
    assert d.read(QUEUE_NUM_MAX) == 0 and d.read(QUEUE_READY) == 0


def test_queue_setup_with_64_bit_addresses(t, d):
    d.negotiate()
    d.write(QUEUE_SEL, 1)
    d.write(QUEUE_NUM, 4)
    d.write(QUEUE_DESC_LOW, 0x1000)
    d.write(QUEUE_DESC_HIGH, 0x2)
    d.write(QUEUE_DRIVER_LOW, 0x3000)
    d.write(QUEUE_DRIVER_HIGH, 0x4)
    d.write(QUEUE_DEVICE_LOW, 0x5000)
    d.write(QUEUE_DEVICE_HIGH, 0x6)
    d.write(QUEUE_DESC_LOW, 0x7000)           # the low half alone can change
    q = t.queues[1]
    assert (q.size, q.desc_table, q.avail_ring, q.used_ring) == (4, 0x2_0000_7000, 0x4_0000_3000, 0x6_0000_5000)
    d.write(QUEUE_READY, 1)
    assert d.read(QUEUE_READY) == 1 and q.ready
    assert t.queues[0].desc_table == 0


def test_queue_registers_before_features_ok_are_ignored(t, d):
    d.add_status(STATUS_ACKNOWLEDGE)
    d.add_status(STATUS_DRIVER)
    d.write(QUEUE_NUM, 4)
    d.write(QUEUE_DESC_LOW, 0x1000)
    d.write(QUEUE_READY, 1)
    q = t.queues[0]
    assert (q.size, q.desc_table, q.ready) == (16, 0, False)


def test_queue_registers_of_a_ready_queue_are_ignored(t, d, rings):
    d.negotiate()
    d.setup_queue(0, rings[0])
    d.write(QUEUE_NUM, 4)
    d.write(QUEUE_DESC_LOW, 0x9000)
    q = t.queues[0]
    assert (q.size, q.desc_table) == (16, rings[0].desc_table)


def test_queue_registers_after_driver_ok_are_ignored(t, d, rings):
    d.bring_up({0: rings[0]})
    d.write(QUEUE_SEL, 1)
    d.setup_queue(1, rings[1])
    q = t.queues[1]
    assert (q.ready, q.desc_table, q.size) == (False, 0, 8)


def test_queue_registers_for_a_missing_queue_are_ignored(t, d):
    d.negotiate()
    d.write(QUEUE_SEL, 7)
    d.write(QUEUE_NUM, 4)
    d.write(QUEUE_READY, 1)
    d.write(QUEUE_RESET, 1)
    assert t.counters.ignored_accesses == 3


def test_queue_ready_zero_stops_a_queue(t, d, rings):
    d.negotiate()
    d.setup_queue(0, rings[0])
    d.write(QUEUE_READY, 0)
    assert d.read(QUEUE_READY) == 0
    d.write(QUEUE_NUM, 8)                     # configurable again before DRIVER_OK
    assert t.queues[0].size == 8
    d.write(QUEUE_READY, 2)                   # only 1 enables
    assert d.read(QUEUE_READY) == 0


# --- queue reset (VIRTIO_F_RING_RESET) ---

def test_queue_reset_needs_the_feature(t, d, dev, rings):
    d.bring_up(rings, features=OFFERED & ~(1 << VIRTIO_F_RING_RESET))
    d.write(QUEUE_SEL, 0)
    d.write(QUEUE_RESET, 1)
    assert t.queues[0].ready and not dev.queue_resets


def test_queue_reset_and_re_enable(t, d, dev, rings, mem):
    d.bring_up(rings)
    d.write(QUEUE_SEL, 1)
    d.write(QUEUE_RESET, 1)
    assert d.read(QUEUE_RESET) == 0 and d.read(QUEUE_READY) == 0       # reset done at once
    assert dev.queue_resets == [1]
    q = t.queues[1]
    assert (q.size, q.desc_table, q.event_idx) == (8, 0, False)
    d.write(QUEUE_SEL, 0)
    d.write(QUEUE_NUM, 4)                     # queue 0 was not reset: still locked
    assert t.queues[0].size == 16
    moved = MockDriver(mem, size=4, base=0x30000, heap=0x300000)
    d.setup_queue(1, moved)
    assert q.ready and (q.size, q.desc_table) == (4, 0x30000)
    assert q.event_idx and q.indirect_desc   # negotiated features apply again
    d.write(QUEUE_NUM, 2)                     # ready again: locked
    assert q.size == 4
    d.notify(1)
    assert dev.notified == [1]


def test_queue_re_enabled_with_a_bad_layout_needs_reset(t, d, rings):
    d.bring_up(rings)
    d.write(QUEUE_SEL, 1)
    d.write(QUEUE_RESET, 1)
    d.write(QUEUE_NUM, 3)
    d.write(QUEUE_READY, 1)
    assert not t.queues[1].ready and d.read(STATUS) & STATUS_DEVICE_NEEDS_RESET


def test_queue_reset_before_driver_ok(t, d, dev, rings):
    d.negotiate()
    d.setup_queue(0, rings[0])
    d.write(QUEUE_RESET, 1)
    assert not t.queues[0].ready and dev.queue_resets == [0]


# --- notifications and interrupts ---

def test_notify_only_when_activated(t, d, dev, rings):
    d.negotiate()
    d.setup_queue(0, rings[0])
    d.notify(0)
    assert dev.notified == [] and t.counters.ignored_notifications == 1
    d.driver_ok()
    d.notify(0)
    d.notify(1)
    d.notify(2)                               # no such queue
    assert dev.notified == [0, 1]
    assert t.counters.notifications == 2 and t.counters.ignored_notifications == 2


def test_notify_ignored_while_needing_reset(t, d, dev, rings):
    d.bring_up(rings)
    t.set_needs_reset()
    d.notify(0)
    assert dev.notified == []


def test_used_buffer_interrupt_and_ack(t, d, irqs, rings, mem):
    d.bring_up(rings)
    t.queues[0].add_used(mem, 0, 0)
    assert t.signal_used(0)
    assert irqs == [1] and d.read(INTERRUPT_STATUS) == 1
    t.config_changed()
    assert d.read(INTERRUPT_STATUS) == 3 and irqs == [1, 1]
    d.write(INTERRUPT_ACK, 1)
    assert d.read(INTERRUPT_STATUS) == 2
    d.write(INTERRUPT_ACK, 2)
    assert d.read(INTERRUPT_STATUS) == 0
    assert t.counters.interrupts == 2 and t.counters.config_interrupts == 1


def test_used_buffer_interrupt_suppressed_by_the_driver(t, d, irqs, rings, mem):
    d.bring_up(rings, features=OFFERED & ~(1 << VIRTIO_F_EVENT_IDX))
    rings[0].set_avail_flags(VIRTQ_AVAIL_F_NO_INTERRUPT)
    t.queues[0].add_used(mem, 0, 0)
    assert not t.signal_used(0)
    assert irqs == [] and d.read(INTERRUPT_STATUS) == 0
    assert t.counters.suppressed_interrupts == 1


def test_used_buffer_interrupt_with_event_idx(t, d, irqs, rings, mem):
    d.bring_up(rings)
    q = t.queues[0]
    rings[0].set_used_event(2)
    fired = []
    for _ in range(4):
        q.add_used(mem, 0, 0)
        fired.append(t.signal_used(0))
    assert fired == [True, False, True, False]  # first always; then only when used idx passes 2


def test_config_generation_and_config_interrupt(t, d, irqs):
    t.config_changed()                        # before DRIVER_OK: generation moves, no interrupt
    assert d.read(CONFIG_GENERATION) == 1 and irqs == [] and d.read(INTERRUPT_STATUS) == 0
    d.negotiate()
    d.driver_ok()
    t.config_changed()
    assert d.read(CONFIG_GENERATION) == 2 and irqs == [1] and d.read(INTERRUPT_STATUS) == 2


def test_set_needs_reset(t, d, irqs, rings):
    d.bring_up(rings)
    t.set_needs_reset()
    assert d.read(STATUS) == ALL_UP | STATUS_DEVICE_NEEDS_RESET
    assert d.read(INTERRUPT_STATUS) == 2 and irqs == [1]
    d.write(STATUS, 0)
    assert d.read(STATUS) == 0


# --- device configuration space ---

def test_config_reads_of_every_width(t):
    assert t.mmio_read(CONFIG, 1) == 0x11
    assert t.mmio_read(CONFIG + 1, 2) == 0x3322
    assert t.mmio_read(CONFIG + 4, 4) == 0x88776655
    assert t.mmio_read(CONFIG + 6, 4) == 0x8877          # past the end reads 0
    assert t.mmio_read(CONFIG + 0x40, 4) == 0
    assert t.mmio_read(CONFIG, 8) == 0                   # 64-bit: not a virtio-mmio access
    assert t.mmio_read(CONFIG, 3) == 0


def test_config_writes_need_driver_status(t, d, dev):
    t.mmio_write(CONFIG, 1, 5)
    assert dev.config_writes == []
    d.add_status(STATUS_ACKNOWLEDGE)
    d.add_status(STATUS_DRIVER)
    t.mmio_write(CONFIG + 2, 2, 0x12345)
    t.mmio_write(CONFIG + 4, 4, 7)
    t.mmio_write(CONFIG, 8, 7)
    assert dev.config_writes == [(2, 2, 0x2345), (4, 4, 7)]
    d.add_status(STATUS_FAILED)
    t.mmio_write(CONFIG, 1, 5)
    assert len(dev.config_writes) == 2


def test_base_device_defaults():
    base = VirtioDevice()
    assert base.device_features() == 0 and base.read_config(0, 4) == 0 and base.read_config(-1, 1) == 0
    base.write_config(0, 1, 1)
    base.ack_features(5)
    assert base.acked_features == 5
    base.reset()
    assert base.acked_features == 0
    with pytest.raises(NotImplementedError):
        base.activate(None, [], None)
