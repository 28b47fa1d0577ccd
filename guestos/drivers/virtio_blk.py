"""The virtio block driver (drivers/block/virtio_blk.c): requests in flight on one
virtqueue, completed by interrupt, with the submitting process asleep meanwhile."""
import struct

import cython_ext

from ..kernel.printk import KERN_INFO
from .virtio_mmio import VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_ID_BLOCK

VIRTIO_BLK_F_SIZE_MAX = 1
VIRTIO_BLK_F_SEG_MAX = 2
VIRTIO_BLK_F_RO = 5
VIRTIO_BLK_F_BLK_SIZE = 6
VIRTIO_BLK_F_FLUSH = 9
VIRTIO_BLK_F_CONFIG_WCE = 11
VIRTIO_BLK_F_DISCARD = 13
VIRTIO_BLK_F_WRITE_ZEROES = 14
VIRTIO_BLK_F_HOST_CACHE_QUERY = 23     # ours: docs/host-cache-query.md

VIRTIO_BLK_T_IN = 0
VIRTIO_BLK_T_OUT = 1
VIRTIO_BLK_T_FLUSH = 4
VIRTIO_BLK_T_GET_ID = 8
VIRTIO_BLK_T_DISCARD = 11
VIRTIO_BLK_T_WRITE_ZEROES = 13
VIRTIO_BLK_T_HOST_CACHE_QUERY = 0x4843

VIRTIO_BLK_S_OK = 0
VIRTIO_BLK_S_IOERR = 1
VIRTIO_BLK_S_UNSUPP = 2

SECTOR_SIZE = 512
SLOT_SIZE = 32                         # request header (16) + status byte, in a slab page
_OUTHDR = struct.Struct("<IIQ")          # virtio_blk_outhdr: type, reserved, sector
_virtq = cython_ext.load("virtq")       # a request's checks and descriptors, native unless BALLAST_PURE=1
WANTED_FEATURES = sum(1 << b for b in (VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_RO,
                                        VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_CONFIG_WCE,
                                        VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_F_EVENT_IDX,
                                        VIRTIO_BLK_F_HOST_CACHE_QUERY))


class BlkRequest:
    __slots__ = ("slot", "done", "status", "length", "end_io")

    def __init__(self, slot: int):
        self.slot, self.done, self.status, self.length = slot, False, None, 0
        self.end_io = None               # called when it completes (a write nobody waits for)


class VirtioBlk:
    def __init__(self, k, vdev, name: str):
        self.k, self.vdev, self.name = k, vdev, name
        self.capacity_sectors = vdev.read_config(0, 8)
        self.read_only = vdev.has(VIRTIO_BLK_F_RO)
        self.seg_max = vdev.read_config(12, 4) if vdev.has(VIRTIO_BLK_F_SEG_MAX) else 1
        self.size_max = vdev.read_config(8, 4) if vdev.has(VIRTIO_BLK_F_SIZE_MAX) else 1 << 32
        self.blk_size = vdev.read_config(20, 4) if vdev.has(VIRTIO_BLK_F_BLK_SIZE) else SECTOR_SIZE
        self.flush_supported = vdev.has(VIRTIO_BLK_F_FLUSH)
        self.host_cache_query = vdev.has(VIRTIO_BLK_F_HOST_CACHE_QUERY)
        self.vq = vdev.setup_vq(0, self.virtblk_done)
        page = k.page_alloc.alloc_pages()
        self.slab_paddr = page << 12
        self.free_slots = list(range(min(4096 // SLOT_SIZE, self.vq.num)))[::-1]
        self.inflight = 0
        self.max_request_bytes = k.params.value("virtio_blk.max_sectors_kb") << 10
        self.stats = {"requests": 0, "read_bytes": 0, "write_bytes": 0, "flushes": 0, "errors": 0}

    @property
    def size_bytes(self) -> int:
        return self.capacity_sectors * SECTOR_SIZE

    def virtblk_done(self, vq) -> None:
        ram = self.k.ram
        while (got := vq.get_buf()) is not None:
            req, length = got
            req.status = ram[self.slab_paddr + req.slot * SLOT_SIZE + 16]
            req.length = length
            req.done = True
            self.free_slots.append(req.slot)
            self.inflight -= 1
            if req.end_io is not None:
                req.end_io()
        vq.enable_cb_delayed(self.inflight)

    def submit(self, req_type: int, sector: int, data_sgs=(), segments=None, device_writes: bool = False) -> BlkRequest:
        """Queue one request (waiting for room if the ring is full); data_sgs: [(paddr, len, device_writes)],
        or segments: [(paddr, len)] all in one direction (device_writes)."""
        need = (len(data_sgs) if segments is None else len(segments)) + 2
        vq = self.vq
        if not (self.free_slots and vq.num_free >= need):
            # the ring is full: let the device at what is queued, and wake at the first completion
            vq.enable_cb_delayed(1)
            vq.kick()
            self.k.wait_event(lambda: self.free_slots and vq.num_free >= need)
        slot = self.free_slots.pop()
        req = BlkRequest(slot)
        hdr = self.slab_paddr + slot * SLOT_SIZE
        ram = self.k.ram
        _OUTHDR.pack_into(ram, hdr, req_type, 0, sector)
        ram[hdr + 16] = 0xFF
        if segments is None:
            vq.add_sgs([(hdr, 16, False), *data_sgs, (hdr + 16, 1, True)], req)
        else:
            vq.add_request((hdr, 16), segments, device_writes, (hdr + 16, 1), req)
        self.inflight += 1
        self.stats["requests"] += 1
        return req

    def wait_all(self, reqs) -> int:
        """Kick, sleep until every request completed; returns the first bad status or OK."""
        self.vq.enable_cb_delayed(self.inflight)
        self.vq.kick()
        if len(reqs) == 1:
            req = reqs[0]
            self.k.wait_event(lambda: req.done)
            status = req.status
            if status != VIRTIO_BLK_S_OK:
                self.stats["errors"] += 1
            return status
        else:
            last = reqs[-1]             # the device completes in order: test the last one first
            self.k.wait_event(lambda: last.done and all(r.done for r in reqs))
        bad = [r.status for r in reqs if r.status != VIRTIO_BLK_S_OK]
        if bad:
            self.stats["errors"] += len(bad)
            return bad[0]
        return VIRTIO_BLK_S_OK

    def transfer(self, write: bool, offset: int, segments) -> int:
        """Move [offset, offset + total) to or from guest-physical segments [(paddr, len)]."""
        return self.transfer_runs(write, [(offset, segments)])

    def transfer_runs(self, write: bool, runs) -> int:
        """Several disk extents at once [(disk offset, [(paddr, len)])], sector-aligned, in as many
        requests as the device's limits ask for, all in flight together; returns the first bad status."""
        reqs = self._submit_runs(write, runs)
        return self.wait_all(reqs) if reqs else VIRTIO_BLK_S_OK

    def transfer_runs_async(self, write: bool, runs, end_io) -> None:
        """transfer_runs() without waiting: end_io(status) runs at the interrupt of the last completion
        (requests complete in order); the data has left guest memory when this returns."""
        reqs = self._submit_runs(write, runs)
        if not reqs:
            end_io(VIRTIO_BLK_S_OK)
            return
        last = reqs[-1]
        last.end_io = lambda: end_io(next((r.status for r in reqs if r.status != VIRTIO_BLK_S_OK), VIRTIO_BLK_S_OK))
        self.vq.enable_cb_delayed(self.inflight)
        self.vq.kick()

    def _submit_runs(self, write: bool, runs) -> list:
        reqs = []
        seg_max = self.seg_max
        max_bytes = min(self.max_request_bytes, self.size_max * max(1, seg_max))
        limit = min(self.size_max, max_bytes)       # one segment's bytes
        device_writes = not write
        for offset, segments in runs:
            # the common case, an extent that fits one request as it is: the loop below would make the
            # same single request (checked and queued natively, without a Python loop per page)
            total = _virtq.request_bytes(segments, seg_max, limit, max_bytes)
            if total >= 0:
                reqs.append(self._rw_request(write, offset // SECTOR_SIZE, total, segments=segments))
                continue
            batch, batch_bytes = [], 0
            start_sector = offset // SECTOR_SIZE
            for paddr, length in segments:
                while length > 0:                   # segments longer than limit go in pieces
                    n = length if length <= limit else limit
                    if batch and (len(batch) >= seg_max or batch_bytes + n > max_bytes):
                        reqs.append(self._rw_request(write, start_sector, batch_bytes, batch))
                        start_sector += batch_bytes // SECTOR_SIZE
                        batch, batch_bytes = [], 0
                    batch.append((paddr, n, device_writes))
                    batch_bytes += n
                    paddr += n
                    length -= n
            if batch:
                reqs.append(self._rw_request(write, start_sector, batch_bytes, batch))
        return reqs

    def _rw_request(self, write: bool, sector: int, nbytes: int, sgs=(), segments=None) -> BlkRequest:
        self.stats["write_bytes" if write else "read_bytes"] += nbytes
        return self.submit(VIRTIO_BLK_T_OUT if write else VIRTIO_BLK_T_IN, sector, sgs, segments, not write)

    def flush(self) -> int:
        if not self.flush_supported:
            return VIRTIO_BLK_S_OK
        self.stats["flushes"] += 1
        return self.wait_all([self.submit(VIRTIO_BLK_T_FLUSH, 0)])

    def query_host_cache(self):
        """Which of this disk's pages the host caches, as a bitmap (bit i: page i), or None when
        the device cannot say. The buffer is borrowed pages, given back at once."""
        if not self.host_cache_query:
            return None
        nbytes = (self.size_bytes // 4096 + 7) // 8
        order = max(0, (nbytes - 1).bit_length() - 12)
        page = self.k.page_alloc.alloc_pages(order=order)
        if page == 0xFFFFFFFF:
            return None
        try:
            status = self.wait_all([self.submit(VIRTIO_BLK_T_HOST_CACHE_QUERY, 0, [(page << 12, nbytes, True)])])
            bitmap = bytes(self.k.ram[page << 12:(page << 12) + nbytes])
        finally:
            self.k.page_alloc.free_pages(page, order)
        return bitmap if status == VIRTIO_BLK_S_OK else None

    def get_id(self) -> bytes:
        page = self.k.page_alloc.alloc_pages()
        try:
            status = self.wait_all([self.submit(VIRTIO_BLK_T_GET_ID, 0, [(page << 12, 20, True)])])
            raw = bytes(self.k.ram[page << 12:(page << 12) + 20])
        finally:
            self.k.page_alloc.free_pages(page)
        return raw.rstrip(b"\0") if status == VIRTIO_BLK_S_OK else b""


def virtblk_name_format(index: int) -> str:
    """Linux's virtblk_name_format(): vda..vdz, then vdaa, vdab, ..."""
    letters = ""
    index += 1
    while index:
        index, digit = divmod(index - 1, 26)
        letters = chr(ord("a") + digit) + letters
    return "vd" + letters


def virtblk_probe(k, vdev):
    if not vdev.negotiate(WANTED_FEATURES):
        return None
    name = virtblk_name_format(len(k.block_devices))
    blk = VirtioBlk(k, vdev, name)
    if blk.vq is None:
        return None
    k.block_devices[name] = blk
    k.printk(KERN_INFO, f"virtio_blk virtio{len(k.block_devices) - 1}: [{name}] {blk.capacity_sectors} "
                        f"512-byte logical blocks ({blk.size_bytes >> 20} MiB){' (read-only)' if blk.read_only else ''}")
    return blk


DRIVERS = {VIRTIO_ID_BLOCK: virtblk_probe}
__all__ = ["DRIVERS", "VIRTIO_F_INDIRECT_DESC"]
