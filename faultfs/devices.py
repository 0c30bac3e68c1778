"""Device profiles: the named persistence guarantees of a disk.

A profile says what a crash can do to operations that were issued but not yet made durable by a
barrier (``fsync`` for file data, ``fsync_dir`` for directory entries):

* ``sector_size`` (bytes): the unit a torn write is made of; a sector is written whole or not.
* ``atomic_write_unit`` (bytes, a multiple of ``sector_size``): aligned units of this size are
  written all or nothing (16 KiB on ZFS with recordsize=16K, or on drives with atomic writes,
  under which InnoDB's doublewrite buffer is unnecessary).
* ``power_loss``: a crash is a power loss (any pending operation may be lost); when false it is a
  process kill: the OS keeps everything written, so nothing is pending.
* ``ordered``: pending operations persist in issue order (SQLite's SEQUENTIAL); a crash keeps a
  prefix of them.  When false they may persist out of order (a later write kept, an earlier one
  dropped), never across a barrier.
* ``safe_append``: a write that extends a file never persists its new size without its data
  (ext4 data=ordered, XFS).  When false (ext4 data=writeback, ext3 writeback), a crash may keep
  the larger size with the appended bytes reading as zeros or garbage (ALICE's "safe append").
* ``torn_fills``: what a lost tear unit of a torn write reads as.  ``old`` (its previous
  contents) is the guarantee of an atomic sector; ``zeros`` and ``garbage`` model a device that
  does not keep sectors atomic, where a torn write can destroy what the sector held before.
"""
from __future__ import annotations

from dataclasses import dataclass


class UnknownDevice(KeyError):
    """Raised by :func:`get_device` for a name that is not a known profile."""


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    sector_size: int = 512
    atomic_write_unit: int = 512
    power_loss: bool = True
    ordered: bool = False
    torn_fills: tuple = ("old",)
    safe_append: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        assert self.sector_size > 0 and self.atomic_write_unit % self.sector_size == 0, self
        assert self.torn_fills and set(self.torn_fills) <= {"old", "zeros", "garbage"}, self

    @property
    def tear_unit(self) -> int:
        """Bytes in the smallest piece a write can be torn into."""
        return max(self.sector_size, self.atomic_write_unit)


DEVICES: dict[str, DeviceProfile] = {
    p.name: p for p in (
        DeviceProfile("sector512", 512, 512, description=(
            "512-byte sectors, only a sector is atomic; unsynced writes may be lost, torn or "
            "reordered on power loss (the default)")),
        DeviceProfile("sector4k", 4096, 4096, description=(
            "4 KiB (Advanced Format) sectors: writes tear only at 4 KiB boundaries; unsynced "
            "writes may be lost, torn or reordered on power loss")),
        DeviceProfile("atomic16k", 512, 16384, description=(
            "aligned 16 KiB units written atomically (ZFS recordsize=16K, atomic-write SSDs): "
            "a page of 16 KiB or less never tears; unsynced writes may still be lost or reordered")),
        DeviceProfile("nonatomic512", 512, 512, torn_fills=("old", "zeros", "garbage"),
                      description=(
            "512-byte sectors that are NOT atomic: a torn write may leave a sector zeroed or "
            "full of garbage, destroying its old contents (classic InnoDB, which rewrites the "
            "last partial redo block in place, is not safe on such a device)")),
        DeviceProfile("unsafe-append", 512, 512, safe_append=False, description=(
            "512-byte sectors on a file system without safe append (ext4 data=writeback): a "
            "crash may persist a file's new size but not the appended data, which then reads "
            "as zeros or garbage")),
        DeviceProfile("ordered", 512, 512, ordered=True, description=(
            "unsynced writes persist in issue order (SQLite's SEQUENTIAL): a power loss keeps a "
            "prefix of them, the last one possibly torn")),
        DeviceProfile("process-kill", 512, 512, power_loss=False, description=(
            "the process dies but the OS survives: everything written reaches the disk, "
            "nothing unsynced is lost")),
    )
}
DEFAULT_DEVICE = "sector512"


def get_device(name: str) -> DeviceProfile:
    """The profile called ``name``.

    Raises:
        UnknownDevice: no profile has that name (the message lists the known ones).
    """
    try:
        return DEVICES[name]
    except KeyError:
        raise UnknownDevice(f"unknown device {name!r}; known: {', '.join(DEVICES)}") from None
