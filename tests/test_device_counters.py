"""The devices' counters (devices/counters.py): what a dataclass gave them, without compiling methods at start."""
import pytest

from devices.block_backend import BackendStats
from devices.virtio_balloon import BalloonCounters
from devices.virtio_blk import BlkCounters
from devices.virtio_mmio import TransportCounters


def test_counters_start_at_their_defaults_and_each_device_has_its_own():
    a, b = BlkCounters(), BlkCounters()
    a.requests["in"] += 1
    a.bytes_read += 4096
    assert b.requests == {} and b.bytes_read == 0          # the Counter default is not shared
    assert BlkCounters.requests == {}


def test_keywords_equality_and_repr_as_a_dataclass():
    stats = BackendStats(reads=2, busy_ns=7)
    assert stats == BackendStats(reads=2, busy_ns=7) != BackendStats(reads=3, busy_ns=7)
    assert stats != TransportCounters() and BalloonCounters() == BalloonCounters()
    assert list(stats.as_dict()) == ["reads", "writes", "flushes", "discards", "write_zeroes", "bytes_read",
                                     "bytes_written", "host_hits", "host_misses", "busy_ns"]
    assert repr(TransportCounters(resets=1)).startswith("TransportCounters(notifications=0, ")
    assert "resets=1" in repr(TransportCounters(resets=1))
    with pytest.raises(TypeError, match="no counter"):
        BalloonCounters(inflated=1)
    with pytest.raises(TypeError):
        hash(stats)
