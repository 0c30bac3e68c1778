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
* ``sub_sector_cuts``: byte counts at which a tear unit may itself be cut (empty: every unit is
  written whole or not at all).  A unit cut at ``n`` has its first ``n`` bytes new and the rest
  showing a torn fill, as when the power goes while a non-atomic drive writes the sector; so a
  one-sector write can tear, and a small ``n`` keeps the sector's new header while damaging
  what follows.  The cuts are few and fixed, so a crash point's space stays finite and exact.

``description`` states the device's rule in words (``tornpage devices`` prints it).
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
    sub_sector_cuts: tuple = ()

    def __post_init__(self) -> None:
        # a DeviceProfile is public API (tornpage.DeviceProfile): bad fields are refused
        if not (self.sector_size > 0 and self.atomic_write_unit % self.sector_size == 0):
            raise ValueError(f"{self.name}: the atomic write unit must be a positive multiple "
                             f"of the sector size")
        if not (self.torn_fills and set(self.torn_fills) <= {"old", "zeros", "garbage"}):
            raise ValueError(f"{self.name}: torn_fills must be some of old, zeros, garbage")
        if not all(0 < c < self.tear_unit for c in self.sub_sector_cuts) or \
                list(self.sub_sector_cuts) != sorted(set(self.sub_sector_cuts)):
            raise ValueError(f"{self.name}: sub_sector_cuts must be distinct, ascending and "
                             f"inside a tear unit")

    @property
    def tear_unit(self) -> int:
        """Bytes in the smallest piece a write can be torn into."""
        return max(self.sector_size, self.atomic_write_unit)


DEVICES: dict[str, DeviceProfile] = {
    p.name: p for p in (
        DeviceProfile("sector512", 512, 512, description=(
            "512-byte sectors, each written whole or not at all (a lost sector keeps its old "
            "contents); unsynced writes may be lost, torn at sector boundaries or reordered on "
            "power loss; a one-sector write never tears (the default)")),
        DeviceProfile("sector4k", 4096, 4096, description=(
            "4 KiB (Advanced Format) sectors: writes tear only at 4 KiB boundaries, a lost "
            "sector keeps its old contents; unsynced writes may be lost, torn or reordered on "
            "power loss")),
        DeviceProfile("atomic16k", 512, 16384, description=(
            "aligned 16 KiB units written atomically (ZFS recordsize=16K, atomic-write SSDs): "
            "a page of 16 KiB or less never tears; unsynced writes may still be lost or reordered")),
        DeviceProfile("nonatomic512", 512, 512, torn_fills=("old", "zeros", "garbage"),
                      sub_sector_cuts=(16, 256, 508), description=(
            "512-byte sectors that are NOT atomic: a torn write may leave a sector zeroed or "
            "full of garbage, destroying its old contents, and may tear inside a sector, a "
            "one-sector write included: the first 16, 256 or 508 bytes new (the sector's "
            "header kept, or all but its last 4 bytes), the rest old, zeros or garbage "
            "(classic InnoDB, which rewrites the last partial redo block in place, is not safe "
            "on such a device)")),
        DeviceProfile("unsafe-append", 512, 512, safe_append=False, description=(
            "512-byte atomic sectors on a file system without safe append (ext4 "
            "data=writeback): a crash may persist a file's new size but not the appended data, "
            "which then reads as zeros or garbage; writes may also be lost, torn at sector "
            "boundaries or reordered")),
        DeviceProfile("ordered", 512, 512, ordered=True, description=(
            "unsynced writes persist in issue order (SQLite's SEQUENTIAL): a power loss keeps a "
            "prefix of them, the last one possibly torn at a sector boundary (sectors atomic)")),
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
