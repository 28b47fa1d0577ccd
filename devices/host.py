"""The physical host under the VMs: its page cache, its disk images, its VM ids.

One Host per experiment; every VM on it shares the host page cache and, when
they name the same image file, the same open image (keyed by file identity, so
two paths to one file are one image).
"""
import os

from .block_backend import BlockBackend
from .disk import PAGE_SIZE, DiskImage, DiskProfile, HostCosts, SnapshotDiskImage
from .host_cache import HostPageCache

DEFAULT_CACHE_BYTES = 1 << 30        # host page cache when no budget is given


class Host:
    """memory_budget_bytes bounds the host page cache; cache_capacity (in pages) bounds it further;
    exclusive_cache makes the host keep only pages several VMs read (the guest holds the rest)."""

    def __init__(self, memory_budget_bytes: int | None = None, cache_capacity: int | None = None,
                 host_costs: HostCosts | None = None, exclusive_cache: bool = False):
        self.memory_budget_bytes = memory_budget_bytes
        self.cache_capacity = cache_capacity
        self.costs = host_costs or HostCosts()
        self.cache = HostPageCache(self._cache_pages())
        # exclusive caching: drop from the host what exactly one guest read, keep what several share
        self.cache.set_exclusive(exclusive_cache)
        self._images = {}            # (st_dev, st_ino) -> DiskImage
        self._next_vm_id = 1
        self.closed = False

    def _cache_pages(self) -> int:
        limits = []
        if self.memory_budget_bytes is not None:
            if self.memory_budget_bytes < PAGE_SIZE:
                raise ValueError(f"host memory budget of {self.memory_budget_bytes} bytes is below one page")
            limits.append(self.memory_budget_bytes // PAGE_SIZE)
        if self.cache_capacity is not None:
            limits.append(self.cache_capacity)
        return min(limits) if limits else DEFAULT_CACHE_BYTES // PAGE_SIZE

    def set_memory_budget(self, memory_budget_bytes: int) -> int:
        """A new budget; the cache is evicted down to it. Returns dirty pages written back."""
        self.memory_budget_bytes = memory_budget_bytes
        return self.cache.set_capacity(self._cache_pages())

    def new_vm_id(self) -> int:
        vm_id = self._next_vm_id
        self._next_vm_id += 1
        return vm_id

    def open_image(self, path, read_only: bool = False) -> DiskImage:
        """The host's one open image for this file (made writable if a VM now needs to write)."""
        try:
            st = os.stat(path)
            image = self._images.get((st.st_dev, st.st_ino))
        except OSError:
            image = None            # DiskImage reports the problem in one line
        if image is None:
            image = DiskImage(path, read_only=read_only)
            self._images[image.key] = image
        elif not read_only and image.read_only:
            image.reopen_read_write()
        return image

    @property
    def images(self) -> list:
        return list(self._images.values())

    def block_backend(self, path, cache_mode: str = "writeback", vm_id=None, read_only: bool = False,
                      profile: DiskProfile | str | None = None, serial: bytes = b"ballast",
                      snapshot: bool = False) -> BlockBackend:
        """A VM's disk on this host: open (or share) the image and put it behind the host cache.
        With snapshot, the VM's writes go to a private overlay and the image is never written."""
        if isinstance(profile, str):
            profile = DiskProfile.named(profile)
        if vm_id is None:
            vm_id = self.new_vm_id()
        if snapshot:
            image = SnapshotDiskImage(path)
            self._images[image.key] = image
        else:
            image = self.open_image(path, read_only=read_only)
        return BlockBackend(image, cache_mode, self.cache, vm_id, profile, self.costs, serial=serial,
                            read_only=read_only)

    def close(self) -> None:
        """Clean shutdown: every dirty page goes to its image, images are fsynced and closed."""
        if self.closed:
            return
        self.closed = True
        for image in self._images.values():
            if not image.read_only:
                self.cache.writeback(image.key)
                image.fsync()
            image.close()
        self._images.clear()
        self.cache.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
