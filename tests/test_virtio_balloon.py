"""virtio-balloon (devices.virtio_balloon) driven as a guest driver would: registers, rings in guest RAM."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.virtio_balloon import (ALL_FEATURES, CONFIG, PFN, QUEUE_SIZE, STAT, STAT_NAMES,
                                    VIRTIO_BALLOON_F_DEFLATE_ON_OOM, VIRTIO_BALLOON_F_FREE_PAGE_HINT,
                                    VIRTIO_BALLOON_F_MUST_TELL_HOST, VIRTIO_BALLOON_F_PAGE_POISON,
                                    VIRTIO_BALLOON_F_REPORTING, VIRTIO_BALLOON_F_STATS_VQ, VirtioBalloon,
                                    queue_roles)
from devices.layouts import VirtioBalloonConfig
from devices.virtio_device import STATUS_DEVICE_NEEDS_RESET, VIRTIO_F_EVENT_IDX, VIRTIO_F_VERSION_1
from devices.virtio_mmio import CONFIG as CONFIG_BASE
from devices.virtio_mmio import CONFIG_GENERATION, INTERRUPT_STATUS, QUEUE_NUM_MAX, QUEUE_SEL, STATUS
from devices.virtio_mmio import TRANSPORT_FEATURES, VirtioMmioTransport
from devices.virtqueue import VIRTQ_DESC_F_NEXT
from test_virtio_mmio import MmioDriver
from test_virtqueue import MockDriver
from vmm.clock import VirtualClock
from vmm.memory import PAGE_SIZE, GuestRAM

MiB = 1 << 20
RAM = 16 * MiB
FIRST = 0x400                   # balloon pages start at 4 MiB, clear of rings and buffers
INT_USED, INT_CONFIG = 1, 2


def bit(*bits) -> int:
    return sum(1 << b for b in bits)


class Bed:
    """A VirtioBalloon behind a transport, and a driver that brought it up with its rings."""

    def __init__(self, mem, offered=ALL_FEATURES, accept=None, bring_up=True, **kwargs):
        self.mem = mem
        self.clock = VirtualClock()
        self.dev = VirtioBalloon(mem, self.clock, features=offered, **kwargs)
        self.irqs = []
        self.t = VirtioMmioTransport(self.dev, mem, lambda: self.irqs.append(1))
        self.d = MmioDriver(self.t)
        accept = offered if accept is None else accept
        self.features = accept | (TRANSPORT_FEATURES & ~bit(VIRTIO_F_EVENT_IDX))
        self.roles = queue_roles(accept)
        self.rings = {role: MockDriver(mem, size=16, base=0x10000 + 0x4000 * i, heap=0x100000 + 0x40000 * i)
                      for i, role in enumerate(self.roles)}
        if bring_up:
            self.d.bring_up({i: self.rings[role] for i, role in enumerate(self.roles)}, self.features)

    def index(self, role) -> int:
        return self.roles.index(role)

    def send(self, role, buffers) -> list:
        """Chain buffers [(bytes or (addr, len), is_write)] on a queue, notify, return its new used elements."""
        ring = self.rings[role]
        chain = []
        for data, is_write in buffers:
            if isinstance(data, tuple):
                chain.append((data[0], data[1], is_write))
            else:
                chain.append((ring.alloc(data), len(data), is_write))
        ring.add_chain(chain)
        self.d.notify(self.index(role))
        return ring.take_used()

    def pfns(self, role, pfns):
        return self.send(role, [(b"".join(PFN.pack(p) for p in pfns), False)])

    def cfg(self, offset) -> int:
        return self.t.mmio_read(CONFIG_BASE + offset, 4)


@pytest.fixture
def mem():
    ram = GuestRAM(RAM)
    yield ram
    ram.close()


def fill(mem, pfn, count=1, byte=0xAB):
    mem.write(pfn * PAGE_SIZE, bytes([byte]) * (count * PAGE_SIZE))


def page(mem, pfn) -> bytes:
    return mem.read(pfn * PAGE_SIZE, PAGE_SIZE)


ZERO = bytes(PAGE_SIZE)


# --- layouts, features and queues ---

def test_layouts_match_declarations():
    assert VirtioBalloonConfig.build(dict(num_pages=1, actual=2, free_page_hint_cmd_id=3, poison_val=4)) \
        == CONFIG.pack(1, 2, 3, 4)
    assert STAT.size == 10 and PFN.size == 4
    assert len(STAT_NAMES) == 16 and STAT_NAMES[4] == "free-memory" and STAT_NAMES[15] == "direct-reclaims"


def test_device_id_features_and_queue_count(mem):
    b = Bed(mem, bring_up=False)
    assert b.d.read(0x008) == 5
    offered = b.d.device_features()
    assert offered & 0x3F == 0x3F and offered >> VIRTIO_F_VERSION_1 & 1
    assert len(b.t.queues) == 5 and all(q.max_size == QUEUE_SIZE for q in b.t.queues)
    small = Bed(mem, offered=bit(VIRTIO_BALLOON_F_STATS_VQ), bring_up=False)
    assert small.d.device_features() & 0xFFFFFF == bit(VIRTIO_BALLOON_F_STATS_VQ)
    assert len(small.t.queues) == 3
    small.d.write(QUEUE_SEL, 3)
    assert small.d.read(QUEUE_NUM_MAX) == 0
    with pytest.raises(ValueError):
        VirtioBalloon(mem, VirtualClock(), features=1 << 6)


@pytest.mark.parametrize("accept, roles", [
    (0, ["inflate", "deflate"]),
    (bit(VIRTIO_BALLOON_F_STATS_VQ), ["inflate", "deflate", "stats"]),
    (bit(VIRTIO_BALLOON_F_REPORTING), ["inflate", "deflate", "reporting"]),
    (bit(VIRTIO_BALLOON_F_FREE_PAGE_HINT, VIRTIO_BALLOON_F_REPORTING),
     ["inflate", "deflate", "free_page", "reporting"]),
    (bit(VIRTIO_BALLOON_F_STATS_VQ, VIRTIO_BALLOON_F_REPORTING), ["inflate", "deflate", "stats", "reporting"]),
    (ALL_FEATURES, ["inflate", "deflate", "stats", "free_page", "reporting"]),
])
def test_queue_mapping_follows_negotiated_features(mem, accept, roles):
    b = Bed(mem, accept=accept)              # offered everything, the driver took a subset
    assert b.roles == roles
    assert {role: index for role, (index, _) in b.dev.queues.items()} == {r: i for i, r in enumerate(roles)}
    # the last negotiated queue really is the one the device serves for its role
    if "reporting" in roles:
        fill(mem, FIRST, 1)
        assert len(b.send("reporting", [((FIRST * PAGE_SIZE, PAGE_SIZE), True)])) == 1
        assert b.dev.counters.reported_pages == 1
    # a notify for a queue index past the negotiated ones is ignored quietly
    b.d.notify(len(roles))
    assert not b.t.status & STATUS_DEVICE_NEEDS_RESET


# --- inflate and deflate ---

def test_inflate_discards_frames_and_deflate_reads_zero(mem):
    b = Bed(mem)
    pfns = list(range(FIRST, FIRST + 8)) + [FIRST + 100]
    for p in pfns:
        fill(mem, p)
    used = b.pfns("inflate", pfns)
    assert len(used) == 1 and used[0][1] == 0
    assert b.dev.inflated == set(pfns) and b.dev.counters.inflated_pages == 9
    assert all(mem.backed[p] == 0 for p in pfns) and mem.backed[FIRST + 8] == 1
    assert sum(1 for x in mem.backed if not x) == 9
    assert page(mem, FIRST) == ZERO                 # MADV_DONTNEED really dropped the contents
    b.t.mmio_write(CONFIG_BASE + 4, 4, 9)            # the driver reports its balloon
    assert b.dev.actual_pages == 9
    used = b.pfns("deflate", pfns[:4])
    assert len(used) == 1
    assert b.dev.inflated == set(pfns[4:]) and b.dev.counters.deflated_pages == 4
    assert all(mem.backed[p] == 1 for p in pfns[:4]) and all(mem.backed[p] == 0 for p in pfns[4:])
    assert all(page(mem, p) == ZERO for p in pfns[:4])


def test_deflated_page_reads_zero_even_if_guest_wrote_it(mem):
    b = Bed(mem)
    b.pfns("inflate", [FIRST])
    fill(mem, FIRST, byte=0x5A)                     # a driver breaking the rules
    b.pfns("deflate", [FIRST])
    assert page(mem, FIRST) == ZERO and mem.backed[FIRST] == 1


def test_inflate_really_returns_memory_to_the_host(mem):
    from vmm.memory import process_rss_bytes
    b = Bed(mem)
    count = 1024                                     # 4 MiB
    fill(mem, FIRST, count)
    before = process_rss_bytes()
    for start in range(FIRST, FIRST + count, 256):   # Linux's batches of 256
        b.pfns("inflate", range(start, start + 256))
    assert before - process_rss_bytes() >= 3 * MiB
    assert b.dev.counters.inflated_pages == count


def test_deflate_with_page_poison(mem):
    b = Bed(mem, poison_val=0xAA55AA55)
    assert b.cfg(12) == 0xAA55AA55
    b.t.mmio_write(CONFIG_BASE + 12, 4, 0xDEADBEEF)  # the driver tells us its poison
    assert b.cfg(12) == 0xDEADBEEF
    b.pfns("inflate", [FIRST, FIRST + 1])
    b.pfns("deflate", [FIRST, FIRST + 1])
    assert page(mem, FIRST) == PFN.pack(0xDEADBEEF) * (PAGE_SIZE // 4) == page(mem, FIRST + 1)


def test_poison_val_read_only_without_page_poison(mem):
    b = Bed(mem, accept=ALL_FEATURES & ~bit(VIRTIO_BALLOON_F_PAGE_POISON), poison_val=0x11111111)
    b.t.mmio_write(CONFIG_BASE + 12, 4, 0xDEADBEEF)
    assert b.cfg(12) == 0x11111111
    b.pfns("inflate", [FIRST])
    b.pfns("deflate", [FIRST])
    assert page(mem, FIRST) == ZERO                 # no poison without the feature


def test_must_tell_host_and_deflate_on_oom_change_nothing_for_the_device(mem):
    b = Bed(mem, accept=bit(VIRTIO_BALLOON_F_MUST_TELL_HOST, VIRTIO_BALLOON_F_DEFLATE_ON_OOM))
    assert b.roles == ["inflate", "deflate"]
    assert len(b.pfns("inflate", [FIRST])) == 1 and len(b.pfns("deflate", [FIRST])) == 1
    assert not b.dev.inflated


def test_out_of_ram_pfns_and_unknown_deflates_are_ignored(mem):
    b = Bed(mem)
    fill(mem, FIRST + 1)
    nr = RAM // PAGE_SIZE
    used = b.pfns("inflate", [FIRST, nr, 0xFFFFFFFF])
    assert len(used) == 1 and b.dev.inflated == {FIRST} and b.dev.counters.ignored_pfns == 2
    used = b.pfns("deflate", [FIRST + 1, nr + 5])     # FIRST + 1 was never inflated: keep its data
    assert len(used) == 1 and b.dev.counters.ignored_pfns == 4
    assert page(mem, FIRST + 1) == bytes([0xAB]) * PAGE_SIZE and b.dev.counters.deflated_pages == 0


def test_inflating_twice_counts_once(mem):
    b = Bed(mem)
    b.pfns("inflate", [FIRST, FIRST])
    b.pfns("inflate", [FIRST])
    assert b.dev.counters.inflated_pages == 1 and b.dev.inflated == {FIRST}
    assert b.dev.counters.repeated_pfns == 2


def test_each_kind_of_bad_input_is_logged_once(mem, caplog):
    b = Bed(mem)
    nr = RAM // PAGE_SIZE
    with caplog.at_level("WARNING", logger="devices.virtio_balloon"):
        for _ in range(3):
            b.pfns("inflate", [nr + 1, FIRST])
            b.pfns("deflate", [FIRST + 7])
    assert b.dev.counters.ignored_pfns == 6
    messages = [r.getMessage() for r in caplog.records]
    assert sorted(messages) == sorted(set(messages)) and len(messages) == 3   # outside RAM, repeat, not in balloon


# --- malformed buffers: processed as far as they make sense, used, counted ---

def test_pfn_array_with_trailing_bytes(mem):
    b = Bed(mem)
    used = b.send("inflate", [(PFN.pack(FIRST) + PFN.pack(FIRST + 1) + b"\x01\x02", False)])
    assert len(used) == 1 and b.dev.inflated == {FIRST, FIRST + 1}
    assert b.dev.counters.malformed == 1 and not b.t.status & STATUS_DEVICE_NEEDS_RESET


def test_device_writable_descriptor_on_inflateq_is_ignored(mem):
    b = Bed(mem)
    target = FIRST + 10
    fill(mem, target, byte=0x77)
    used = b.send("inflate", [(PFN.pack(FIRST), False), (PFN.pack(target), True)])
    assert len(used) == 1 and used[0][1] == 0
    assert b.dev.inflated == {FIRST} and b.dev.counters.malformed == 1
    assert page(mem, target) == bytes([0x77]) * PAGE_SIZE
    only_writable = b.send("deflate", [(PFN.pack(FIRST), True)])
    assert len(only_writable) == 1 and b.dev.inflated == {FIRST}
    assert not b.t.status & STATUS_DEVICE_NEEDS_RESET


def test_broken_ring_sets_needs_reset(mem):
    b = Bed(mem)
    ring = b.rings["inflate"]
    addr = ring.alloc(PFN.pack(FIRST))
    ring.write_desc(0, addr, 4, VIRTQ_DESC_F_NEXT, 0)     # a descriptor chaining to itself
    ring.publish(0)
    b.d.notify(0)                                         # no exception escapes
    assert b.t.status & STATUS_DEVICE_NEEDS_RESET and b.dev.broken and b.dev.counters.broken == 1
    b.pfns("inflate", [FIRST + 1])                        # nothing more is served until reset
    assert FIRST + 1 not in b.dev.inflated


def test_descriptor_outside_ram_sets_needs_reset(mem):
    b = Bed(mem)
    ring = b.rings["deflate"]
    ring.write_desc(0, RAM - 2, 4)
    ring.publish(0)
    b.d.notify(1)
    assert b.t.status & STATUS_DEVICE_NEEDS_RESET


def test_reset_backs_every_inflated_page(mem):
    b = Bed(mem)
    b.pfns("inflate", range(FIRST, FIRST + 4))
    b.t.mmio_write(CONFIG_BASE + 4, 4, 4)
    b.d.write(STATUS, 0)
    assert not b.dev.inflated and all(mem.backed) and b.dev.actual_pages == 0
    assert page(mem, FIRST) == ZERO


# --- the target, both ways ---

def test_set_target_pages_raises_config_change(mem):
    b = Bed(mem)
    b.d.ack_interrupts()
    b.dev.set_target_pages(1000)
    assert b.cfg(0) == 1000 and b.dev.target_pages == 1000
    assert b.d.read(INTERRUPT_STATUS) & INT_CONFIG and b.t.counters.config_interrupts == 1
    assert b.d.read(CONFIG_GENERATION) == 1
    with pytest.raises(ValueError):
        b.dev.set_target_pages(RAM // PAGE_SIZE + 1)
    with pytest.raises(ValueError):
        b.dev.set_target_pages(-1)


def test_set_guest_size_is_qemus_view(mem):
    b = Bed(mem)
    b.d.ack_interrupts()
    b.dev.set_guest_size(12 * MiB)
    assert b.cfg(0) == (4 * MiB) // PAGE_SIZE == 1024
    assert b.d.read(INTERRUPT_STATUS) & INT_CONFIG
    b.dev.set_guest_size(64 * MiB)                   # more than RAM: no balloon
    assert b.cfg(0) == 0 and b.t.counters.config_interrupts == 2
    with pytest.raises(ValueError):
        b.dev.set_guest_size(0)


def test_target_before_activation_needs_no_transport(mem):
    dev = VirtioBalloon(mem, VirtualClock())
    dev.set_target_pages(7)                          # no transport yet: no exception
    b = Bed(mem, bring_up=False)
    b.dev.set_target_pages(5)
    assert b.cfg(0) == 5 and not b.irqs
    b.d.bring_up({0: b.rings["inflate"], 1: b.rings["deflate"]}, b.features)
    assert b.cfg(0) == 5


# --- statistics ---

def stats_buffer(**values) -> bytes:
    return b"".join(STAT.pack(STAT_NAMES.index(name.replace("_", "-")), v) for name, v in values.items())


def test_stats_parsed_and_requested_again(mem):
    b = Bed(mem)
    ring = b.rings["stats"]
    buf = ring.alloc(length=10 * 16)
    mem.write(buf, stats_buffer(free_memory=100 * MiB, total_memory=RAM, disk_caches=5 * MiB, oom_kills=0))
    ring.add_chain([(buf, 4 * 10, False)])
    b.d.notify(2)
    assert ring.take_used() == []                   # the device holds the buffer
    assert b.dev.latest_stats == {"free-memory": 100 * MiB, "total-memory": RAM, "disk-caches": 5 * MiB,
                                  "oom-kills": 0}
    assert b.dev.counters.stats_updates == 1
    b.d.ack_interrupts()
    assert b.dev.request_stats() is True
    assert len(ring.take_used()) == 1 and b.d.read(INTERRUPT_STATUS) & INT_USED
    assert b.dev.request_stats() is False           # nothing held until the driver refills
    # the driver refills its one buffer and re-queues it
    mem.write(buf, stats_buffer(free_memory=50 * MiB, swap_in=3, direct_reclaims=9))
    ring.add_chain([(buf, 3 * 10, False)])
    b.d.notify(2)
    assert b.dev.latest_stats == {"free-memory": 50 * MiB, "swap-in": 3, "direct-reclaims": 9}
    assert b.dev.counters.stats_updates == 2


def test_all_sixteen_stat_tags_and_junk(mem):
    b = Bed(mem)
    data = b"".join(STAT.pack(tag, tag * 10) for tag in range(16)) + STAT.pack(99, 1) + b"\x01\x02"
    b.send("stats", [(data, False)])
    assert b.dev.latest_stats == {name: i * 10 for i, name in enumerate(STAT_NAMES)}
    assert b.dev.counters.malformed == 1            # the trailing two bytes


def test_stats_polling_interval_on_the_clock(mem):
    b = Bed(mem, stats_interval_s=1)
    ring = b.rings["stats"]
    b.send("stats", [(stats_buffer(free_memory=1), False)])
    assert b.clock.next_event_ns() == 1_000_000_000
    b.clock.idle_until_next_event()
    assert len(ring.take_used()) == 1               # asked again after a second
    b.send("stats", [(stats_buffer(free_memory=2), False)])
    b.clock.idle_until_next_event()
    assert len(ring.take_used()) == 1 and b.dev.latest_stats == {"free-memory": 2}


def test_second_stats_buffer_returns_the_first(mem):
    b = Bed(mem)
    assert b.send("stats", [(stats_buffer(swap_out=1), False)]) == []
    used = b.send("stats", [(stats_buffer(swap_out=2), False)])
    assert len(used) == 1 and b.dev.latest_stats == {"swap-out": 2}


# --- free page hinting ---

def test_free_page_hint_round(mem):
    b = Bed(mem)
    ring = b.rings["free_page"]
    b.d.ack_interrupts()
    cmd = b.dev.start_hinting()
    assert cmd >= 2 and b.cfg(8) == cmd and b.d.read(INTERRUPT_STATUS) & INT_CONFIG
    fill(mem, FIRST, 16)
    # a hint before the driver acknowledged the round is ignored
    assert len(b.send("free_page", [((FIRST * PAGE_SIZE, PAGE_SIZE), True)])) == 1
    assert b.dev.counters.hinted_pages == 0 and mem.backed[FIRST] == 1
    assert len(b.send("free_page", [(PFN.pack(cmd), False)])) == 1         # the driver starts its report
    b.send("free_page", [((FIRST * PAGE_SIZE, 8 * PAGE_SIZE), True)])
    b.send("free_page", [((FIRST * PAGE_SIZE + 8 * PAGE_SIZE + 100, 8 * PAGE_SIZE - 100), True)])
    assert b.dev.counters.hinted_pages == 8 + 7     # only whole frames of the ragged range
    assert page(mem, FIRST) == ZERO and page(mem, FIRST + 15) == ZERO
    assert mem.read((FIRST + 8) * PAGE_SIZE + 99, 1) == b"\xab"            # the partial frame is kept
    assert all(mem.backed[FIRST:FIRST + 16]) and not b.dev.inflated        # hinted pages stay usable
    b.send("free_page", [(PFN.pack(0), False)])                             # the driver is done
    b.dev.stop_hinting()
    assert b.cfg(8) == 0
    b.send("free_page", [((FIRST * PAGE_SIZE + 16 * PAGE_SIZE, PAGE_SIZE), True)])
    assert b.dev.counters.hinted_pages == 15        # after STOP hints are ignored
    b.dev.done_hinting()
    assert b.cfg(8) == 1
    assert b.dev.start_hinting() == cmd + 1
    assert ring.take_used() == []


def test_hint_with_stale_cmd_id_is_ignored(mem):
    b = Bed(mem)
    old = b.dev.start_hinting()
    b.dev.start_hinting()
    b.send("free_page", [(PFN.pack(old), False)])
    b.send("free_page", [((FIRST * PAGE_SIZE, PAGE_SIZE), True)])
    assert b.dev.counters.hinted_pages == 0


def test_hint_does_not_touch_inflated_pages(mem):
    b = Bed(mem)
    b.pfns("inflate", [FIRST + 1])
    cmd = b.dev.start_hinting()
    b.send("free_page", [(PFN.pack(cmd), False)])
    b.send("free_page", [((FIRST * PAGE_SIZE, 3 * PAGE_SIZE), True)])
    assert b.dev.counters.hinted_pages == 2 and mem.backed[FIRST + 1] == 0 and FIRST + 1 in b.dev.inflated


# --- free page reporting ---

def test_reporting_ranges_discarded(mem):
    b = Bed(mem)
    block = 512                                      # 2 MiB, Linux's pageblock order on x86
    fill(mem, FIRST, block)
    fill(mem, FIRST + 1024, 4)
    used = b.send("reporting", [((FIRST * PAGE_SIZE, block * PAGE_SIZE), True),
                                (((FIRST + 1024) * PAGE_SIZE, 4 * PAGE_SIZE), True)])
    assert len(used) == 1 and used[0][1] == 0
    assert b.dev.counters.reported_pages == block + 4
    assert page(mem, FIRST) == ZERO and page(mem, FIRST + 1027) == ZERO
    assert all(mem.backed) and not b.dev.inflated


def test_reporting_readable_descriptor_is_ignored(mem):
    b = Bed(mem)
    fill(mem, FIRST)
    used = b.send("reporting", [((FIRST * PAGE_SIZE, PAGE_SIZE), False)])
    assert len(used) == 1 and b.dev.counters.reported_pages == 0 and b.dev.counters.malformed == 1
    assert page(mem, FIRST) == bytes([0xAB]) * PAGE_SIZE


def test_reporting_keeps_nonzero_poison(mem):
    b = Bed(mem, poison_val=0x5A5A5A5A)
    fill(mem, FIRST, byte=0x5A)
    b.send("reporting", [((FIRST * PAGE_SIZE, PAGE_SIZE), True)])
    assert b.dev.counters.reported_pages == 0 and b.dev.counters.poison_kept_pages == 1
    assert page(mem, FIRST) == bytes([0x5A]) * PAGE_SIZE


def test_many_cycles_end_with_everything_backed(mem):
    b = Bed(mem)
    for _ in range(5):
        for start in range(FIRST, FIRST + 512, 128):
            b.pfns("inflate", range(start, start + 128))
        assert sum(1 for x in mem.backed if not x) == 512
        for start in range(FIRST, FIRST + 512, 128):
            b.pfns("deflate", range(start, start + 128))
        assert all(mem.backed) and not b.dev.inflated
    assert b.dev.counters.inflated_pages == b.dev.counters.deflated_pages == 5 * 512


# --- transport features and hostile input ---

def test_event_idx_and_indirect_descriptors(mem):
    b = Bed(mem)
    b.features |= bit(VIRTIO_F_EVENT_IDX)
    b.d.bring_up({i: b.rings[role] for i, role in enumerate(b.roles)}, b.features)
    ring = b.rings["inflate"]
    addr = ring.alloc(PFN.pack(FIRST) + PFN.pack(FIRST + 1))
    ring.add_chain([(addr, 4, False), (addr + 4, 4, False)], indirect=True)
    b.d.ack_interrupts()
    b.d.notify(0)
    assert len(ring.take_used()) == 1 and b.dev.inflated == {FIRST, FIRST + 1}
    assert b.d.read(INTERRUPT_STATUS) & INT_USED
    assert ring.avail_event == ring.avail_idx        # the device asked to hear about the next buffer


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chains=st.lists(st.tuples(st.integers(0, 5), st.lists(st.tuples(st.integers(0, RAM + 8192),
                                                                        st.integers(0, 3 * PAGE_SIZE),
                                                                        st.booleans()),
                                                              min_size=1, max_size=3)),
                       max_size=8))
def test_arbitrary_chains_never_raise(mem, chains):
    mem.backed[:] = b"\x01" * len(mem.backed)
    b = Bed(mem)
    b.dev.start_hinting()
    for queue, buffers in chains:
        role = b.roles[queue % len(b.roles)]
        ring = b.rings[role]
        ring.add_chain(buffers)
        b.d.notify(queue)                            # index 5 does not exist: ignored
        ring.take_used()
    b.dev.request_stats()
    assert all(mem.backed[p] == 0 for p in b.dev.inflated)
