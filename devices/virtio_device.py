"""What a virtio device supplies to its transport (Firecracker's VirtioDevice trait, in small).

The transport owns the register file, feature negotiation and the status machine; the device supplies its ID,
queue sizes, features and configuration space, and does the work once activated.
"""

# Device status bits (virtio 1.2, 2.1).
STATUS_ACKNOWLEDGE = 0x01
STATUS_DRIVER = 0x02
STATUS_DRIVER_OK = 0x04
STATUS_FEATURES_OK = 0x08
STATUS_DEVICE_NEEDS_RESET = 0x40
STATUS_FAILED = 0x80

# Transport feature bits (virtio 1.2, 6).
VIRTIO_F_INDIRECT_DESC = 28
VIRTIO_F_EVENT_IDX = 29
VIRTIO_F_VERSION_1 = 32
VIRTIO_F_RING_RESET = 40

# Device IDs (virtio 1.2, 5).
VIRTIO_ID_NONE = 0
VIRTIO_ID_BLOCK = 2
VIRTIO_ID_BALLOON = 5


class ActivationError(Exception):
    """A device refuses activation; the transport then sets DEVICE_NEEDS_RESET."""


class VirtioDevice:
    """Base class. Subclasses set device_id and queue_max_sizes and override what they use."""
    device_id = VIRTIO_ID_NONE
    queue_max_sizes: list = []

    def __init__(self):
        self.acked_features = 0

    def device_features(self) -> int:
        """Device-specific feature bits offered (the transport adds its own)."""
        return 0

    def ack_features(self, features: int) -> None:
        """The transport accepted FEATURES_OK with these driver features (transport bits included)."""
        self.acked_features = features

    def config_space(self) -> bytes:
        """The device configuration space as bytes; read_config slices it."""
        return b""

    def read_config(self, offset: int, size: int) -> int:
        """Little-endian value of `size` bytes at `offset`; bytes past the end read as 0."""
        raw = self.config_space()[offset:offset + size] if offset >= 0 else b""
        return int.from_bytes(raw.ljust(size, b"\0"), "little")

    def write_config(self, offset: int, size: int, value: int) -> None:
        """Driver write to configuration space; read-only unless a device says otherwise."""

    def activate(self, transport, queues: list, mem) -> None:
        """DRIVER_OK: start serving `queues` in `mem`; signal through `transport`."""
        raise NotImplementedError

    def reset(self) -> None:
        """Status 0: forget everything the driver set up. Called even if never activated."""
        self.acked_features = 0

    def reset_queue(self, queue_index: int) -> None:
        """VIRTIO_F_RING_RESET: the driver reset one queue; drop anything held from it."""

    def notify(self, queue_index: int) -> None:
        """The driver made buffers available in queue `queue_index`."""
