"""Media faults: the disk lying while the program runs, not only when the power goes.

A campaign arms a :class:`SimDisk <faultfs.simdisk.SimDisk>` with a schedule of
:class:`FaultSpec`; the disk counts IOs of each class from the moment it is armed and injects the
fault at the ``at``-th one (0-based).  Every injected fault is recorded in the trace as a
:class:`~faultfs.trace.MediaFault` operation, so a crash state built from the trace knows what
the media did, and the trace hash covers it.

Kinds, after the behaviour of real devices and of Linux (the sources each models):

``bitflip``       (read)  the data returned by one read has one bit flipped; the media is fine
                  (a transient error on the bus or in a cache; TigerBeetle's read corruption).
                  ``arg`` picks the bit: ``arg % (8 * bytes read)``.
``sector-error``  (read)  a latent sector error: one 512-byte sector of the read becomes
                  unreadable and the read fails with ``EIO``; every later read of that sector
                  fails too, after a crash as well, until a write covers it whole (drives
                  remap on write; a partial write cannot bring back the rest of the sector).
                  ``arg`` picks the sector within the read.
``bit-rot``       (read)  a bit of the media decays: one byte of one sector of the range read
                  (sector ``arg % n`` of the ``n`` the read touches, byte ``(arg // n) % m`` of
                  the ``m`` bytes read there) has its bit ``byte offset % 8`` flipped *on the
                  media*, so this read and every later read return it, and every crash state
                  after it holds it (whatever the sector held then, new or old), until a
                  write covers the byte.  No error is returned: only a checksum can tell.
``eio-write``     (write) the write fails with ``EIO`` and nothing of it reaches the file.
``enospc``        (write) a write that extends its file fails with ``ENOSPC`` (counted among
                  extending writes only); nothing of it reaches the file.
``eio-fsync``     (fsync) the fsync fails with ``EIO``.  As on Linux since 4.13 (the
                  "fsyncgate" behaviour PostgreSQL hit in 2018), the file's dirty pages are then
                  marked clean: the writes it should have made durable stay *pending forever*;
                  a later successful fsync does not persist them, so any crash afterwards may
                  lose or tear them.  The program still reads the new data from the page cache.

``misdirected`` (write) the drive acknowledges the write but puts it in the wrong place (a
                  firmware or controller bug; TigerBeetle's and ZFS's "misdirected write"):
                  the intended range keeps its old contents (a *lost write*) and the data
                  lands elsewhere, overwriting what is there.  ``arg``'s bits 20 and up say
                  where (``(arg >> 20) % 3``): 0, ``1 + arg % 4`` write-lengths further on in
                  the same file (every ``arg`` below ``2**20``: the original behaviour);
                  1, ``1 + arg % 4`` write-lengths *earlier* in the same file; 2, at the same
                  offset in *another file*, the ``arg % 4``-th (modulo their number) of the
                  disk's other files in path order.  When the landing range does not lie
                  inside the landing file (before its start or past its end), or there is no
                  other file, the data lands nowhere (a plain lost write).  No error is
                  returned.  The landed write is an ordinary traced write of the file it
                  landed in (a crash may lose or tear it like any other).
``at-rest-corruption`` (write) the drive acknowledges the write and stores it, but one sector
                  of it wrong (a firmware bug, or bit rot of the freshly written media): one
                  bit of sector ``arg % n`` of the ``n`` sectors the write touches is flipped
                  (bit ``(arg // n) % (8 * bytes of the write in that sector)`` of them).
                  Unlike ``bitflip`` the damage is *on the media*: every later read returns it,
                  it is in every crash state that keeps the write, until a later write covers
                  the byte.  No error is returned.  The trace records the fault (the damaged
                  byte, length 1) followed by the ordinary Write of what the drive stored, so
                  crash states rebuild it exactly (a crash may lose or tear it like any other).
"""
from __future__ import annotations

import errno
from dataclasses import dataclass

SECTOR = 512

READ_FAULTS = ("bitflip", "sector-error", "bit-rot")
WRITE_FAULTS = ("eio-write", "enospc", "misdirected", "at-rest-corruption")
FSYNC_FAULTS = ("eio-fsync",)
KINDS = READ_FAULTS + WRITE_FAULTS + FSYNC_FAULTS


class MediaFaultError(ValueError):
    """A malformed fault schedule (unknown kind, negative index, wrong shape)."""


class InjectedIOError(OSError):
    """An IO error the simulated media injected (a subclass of ``OSError``, as a real one is).

    Code under test sees an ordinary ``OSError`` with ``errno`` ``EIO`` or ``ENOSPC``; checkers
    use the subclass to tell a loud refusal caused by the media from a failure of the code.
    """


@dataclass(frozen=True)
class FaultSpec:
    """Inject ``kind`` at the ``at``-th IO of its class (reads, writes, fsyncs) after arming."""
    kind: str
    at: int
    arg: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise MediaFaultError(f"unknown media fault {self.kind!r}; known: {', '.join(KINDS)}")
        if not (type(self.at) is int and type(self.arg) is int) or self.at < 0 \
                or self.arg < 0:
            raise MediaFaultError(f"media fault {self.kind}: 'at' and 'arg' must be integers "
                                  f">= 0, got {self.at!r}, {self.arg!r}")

    @property
    def io_class(self) -> str:
        return "read" if self.kind in READ_FAULTS else \
            "write" if self.kind in WRITE_FAULTS else "fsync"

    def to_json(self) -> list:
        return [self.kind, self.at, self.arg]

    @classmethod
    def from_json(cls, v) -> "FaultSpec":
        """Raises MediaFaultError for anything but ``[kind, at, arg]``."""
        if not isinstance(v, (list, tuple)) or len(v) != 3:
            raise MediaFaultError(f"a media fault is [kind, at, arg], got {v!r}")
        return cls(v[0], v[1], v[2])


def parse_schedule(v) -> tuple[FaultSpec, ...]:
    """A schedule from JSON-ish data (a list of ``[kind, at, arg]``)."""
    if not isinstance(v, (list, tuple)):
        raise MediaFaultError(f"a media fault schedule is a list, got {v!r}")
    return tuple(FaultSpec.from_json(x) for x in v)


def eio(what: str, path: str) -> InjectedIOError:
    return InjectedIOError(errno.EIO, f"injected {what}", path)


def enospc(path: str) -> InjectedIOError:
    return InjectedIOError(errno.ENOSPC, "injected: no space left on device", path)


def flip_bit(data: bytes, arg: int) -> tuple[bytes, int]:
    """``data`` with bit ``arg % (8*len)`` flipped, and that bit's index."""
    if not data:
        return data, 0
    bit = arg % (8 * len(data))
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out), bit


MISDIRECT_FURTHER, MISDIRECT_EARLIER, MISDIRECT_OTHER_FILE = "further", "earlier", "other-file"
MISDIRECT_WHERE = (MISDIRECT_FURTHER, MISDIRECT_EARLIER, MISDIRECT_OTHER_FILE)


def misdirect_where(arg: int) -> str:
    """Where a misdirected write with ``arg`` lands: further on, earlier, or in another file
    (``(arg >> 20) % 3``; every ``arg`` below ``2**20`` lands further on)."""
    return MISDIRECT_WHERE[(arg >> 20) % 3]


def misdirected_target(offset: int, length: int, file_size: int, arg: int) -> int | None:
    """Where in its own file a misdirected write of ``length`` bytes meant for ``offset`` lands:
    ``1 + arg % 4`` lengths further on (or earlier, see :func:`misdirect_where`), or None (lost)
    when that range would not lie inside a file of ``file_size`` bytes (a misdirected write
    never extends a file) or ``arg`` sends it to another file (:func:`misdirected_other`)."""
    if length <= 0:
        return None
    where = misdirect_where(arg)
    if where == MISDIRECT_OTHER_FILE:
        return None
    step = (1 + arg % 4) * length
    target = offset + step if where == MISDIRECT_FURTHER else offset - step
    return target if 0 <= target and target + length <= file_size else None


def misdirected_other(offset: int, length: int, others: list[tuple[str, int]],
                      arg: int) -> str | None:
    """The other file (a path) a misdirected write of ``length`` bytes meant for ``offset``
    lands in, at the same offset, when ``arg`` sends it to another file: the ``arg % 4``-th of
    ``others`` (``(path, size)`` of the disk's other files, in path order, modulo their
    number); None (lost) when ``arg`` does not, there is no other file, or the range would not
    lie inside the chosen one."""
    if length <= 0 or misdirect_where(arg) != MISDIRECT_OTHER_FILE or not others:
        return None
    path, size = others[(arg % 4) % len(others)]
    return path if offset + length <= size else None


def rot_byte(offset: int, length: int, arg: int) -> int:
    """The file offset of the byte a ``bit-rot`` fault on a read of ``length`` bytes at
    ``offset`` decays (its bit :func:`rot_bit` flips)."""
    secs = sectors(offset, length)
    sec = secs[arg % len(secs)]
    lo = max(offset, sec * SECTOR)
    hi = min(offset + length, (sec + 1) * SECTOR)
    return lo + (arg // len(secs)) % (hi - lo)


def rot_bit(byte_offset: int) -> int:
    """The bit of the byte at ``byte_offset`` that bit rot flips: ``byte_offset % 8`` (a pure
    function of the offset, so the trace's MediaFault rebuilds the damage exactly)."""
    return byte_offset % 8


def corrupt_at_rest(data: bytes, offset: int, arg: int) -> tuple[bytes, int, int]:
    """What the drive stores for a write of ``data`` at ``offset`` under ``at-rest-corruption``:
    ``(stored bytes, index of the damaged byte within data, bit within that byte)``.  One bit of
    the ``arg % n``-th of the ``n`` sectors the write touches is flipped."""
    secs = sectors(offset, len(data))
    sec = secs[arg % len(secs)]
    lo = max(offset, sec * SECTOR) - offset
    hi = min(offset + len(data), (sec + 1) * SECTOR) - offset
    bit = (arg // len(secs)) % (8 * (hi - lo))
    out = bytearray(data)
    out[lo + bit // 8] ^= 1 << (bit % 8)
    return bytes(out), lo + bit // 8, bit % 8


def sectors(offset: int, length: int) -> range:
    """The 512-byte sector numbers a byte range touches."""
    if length <= 0:
        return range(0)
    return range(offset // SECTOR, (offset + length - 1) // SECTOR + 1)


def whole_sectors(offset: int, length: int) -> range:
    """The 512-byte sector numbers a byte range covers entirely (a write rewrites, and so
    makes readable again, only these: a drive cannot remap part of a sector)."""
    if length <= 0:
        return range(0)
    return range(-(-offset // SECTOR), (offset + length) // SECTOR)
