"""SimDisk: an in-memory disk that records every IO as a trace.

What the running program reads is always the newest data (the OS page cache).  What survives a
crash is decided later and separately, by :mod:`faultfs.crash`, from ``(base image, trace,
position, CrashPlan)``: the disk itself never loses anything while the program runs, so one run's
trace yields many crash states without re-running the program.

Invariants:
  * every mutating call appends exactly one operation to ``trace`` before it returns;
  * the contents the program reads equal the base image with every traced operation applied.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tornpage.faultfs import media
from tornpage.faultfs.devices import DEFAULT_DEVICE, DeviceProfile, get_device
from tornpage.faultfs.trace import (Create, Fsync, FsyncDir, Marker, MediaFault, Mkdir, Rename, Trace,
                           Truncate, Unlink, Write, parent_dir)


class OpBudgetExceeded(BaseException):
    """The program made more file system calls than the disk's ``op_budget`` allows: it hangs
    (loops on IO it can never finish), judged deterministically by a count, never by a clock
    (FoundationDB's simulator bounds simulated time the same way).  A BaseException, as
    KeyboardInterrupt is, so no ``except Exception`` in the program under test swallows it."""

    def __init__(self, budget: int, last: str) -> None:
        super().__init__(f"more than {budget} file system calls (the last: {last})")
        self.budget, self.last = budget, last


@dataclass
class Image:
    """A disk's durable contents: file path → bytes, plus the set of directories, plus the
    unreadable (latent error) 512-byte sectors of each file."""
    files: dict[str, bytes] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    bad_sectors: dict[str, frozenset] = field(default_factory=dict)

    def copy(self) -> "Image":
        return Image(dict(self.files), set(self.dirs), dict(self.bad_sectors))


class SimFile:
    """An open file on a :class:`SimDisk` (see :class:`faultfs.vfs.VFSFile`)."""

    def __init__(self, disk: "SimDisk", path: str, inode: int) -> None:
        self.path = path
        self._disk = disk
        self._inode = inode
        self.closed = False

    def _data(self) -> bytearray:
        assert not self.closed, f"{self.path} is closed"
        return self._disk._inodes[self._inode]

    def pread(self, n: int, offset: int) -> bytes:
        self._disk._spend("pread", self.path)
        """Raises InjectedIOError (EIO) on a latent sector error."""
        assert n >= 0 and offset >= 0
        d = self._disk
        data = bytes(self._data()[offset:offset + n])
        bad = d._bad.get(self._inode)
        if bad and any(s in bad for s in media.sectors(offset, len(data))):
            raise media.eio("latent sector error", self.path)
        fault = d._due("read")
        if fault is None or not data:
            return data
        if fault.kind == "bit-rot":
            at = media.rot_byte(offset, len(data), fault.arg)
            bit = media.rot_bit(at)
            self._data()[at] ^= 1 << bit
            d._record(fault, self, at, 1, f"bit {bit} of byte {at} decayed on the media (sector "
                                          f"{at // media.SECTOR} reads back wrong from now on)")
            return bytes(self._data()[offset:offset + n])
        if fault.kind == "bitflip":
            data, bit = media.flip_bit(data, fault.arg)
            d._record(fault, self, offset + bit // 8, 1, f"bit {bit % 8} of byte "
                                                         f"{offset + bit // 8} flipped")
            return data
        secs = media.sectors(offset, len(data))
        sec = secs[fault.arg % len(secs)]
        d._bad.setdefault(self._inode, set()).add(sec)
        d._record(fault, self, sec * media.SECTOR, media.SECTOR, f"sector {sec} unreadable")
        raise media.eio("latent sector error", self.path)

    def pwrite(self, data: bytes, offset: int) -> int:
        self._disk._spend("pwrite", self.path)
        """Raises InjectedIOError (EIO, ENOSPC) when the schedule says so; nothing is written.
        A ``misdirected`` fault returns normally, the data written elsewhere (in this file or
        another) or nowhere; an ``at-rest-corruption`` fault returns normally, the data stored
        with one bit wrong."""
        assert offset >= 0
        buf = self._data()
        data = bytes(data)
        d = self._disk
        fault = d._due("write", extending=offset + len(data) > len(buf))
        inode, path = self._inode, self.path
        if fault is not None and fault.kind == "misdirected":
            target = media.misdirected_target(offset, len(data), len(buf), fault.arg)
            other = media.misdirected_other(
                offset, len(data), [(p, len(d._inodes[i])) for p, i in sorted(d._names.items())
                                    if i != self._inode], fault.arg)
            if other is not None:
                inode, path, target = d._names[other], other, offset
                buf = d._inodes[inode]
                d._record(fault, self, offset, len(data),
                          f"write of {len(data)} bytes meant for {self.path} at {offset} landed "
                          f"in {other} at {offset}", inode=inode, path=other)
            elif target is None:
                d._record(fault, self, offset, 0,
                          f"write of {len(data)} bytes at {offset} lost (acknowledged, landed "
                          f"nowhere)")
                return len(data)
            else:
                d._record(fault, self, target, len(data),
                          f"write of {len(data)} bytes meant for {offset} landed at {target}")
            offset = target
        elif fault is not None and fault.kind == "at-rest-corruption" and data:
            n = len(data)
            data, at, bit = media.corrupt_at_rest(data, offset, fault.arg)
            d._record(fault, self, offset + at, 1,
                      f"write of {n} bytes at {offset} stored with bit {bit} of byte "
                      f"{offset + at} flipped (sector {(offset + at) // media.SECTOR} reads back "
                      f"wrong)")
        elif fault is not None and fault.kind != "at-rest-corruption":
            d._record(fault, self, offset, len(data), "write failed, nothing written")
            raise media.enospc(self.path) if fault.kind == "enospc" else \
                media.eio("write error", self.path)
        if offset > len(buf):
            buf.extend(bytes(offset - len(buf)))
        buf[offset:offset + len(data)] = data
        bad = d._bad.get(inode)
        if bad:
            bad.difference_update(media.whole_sectors(offset, len(data)))
        d.trace.append(Write(inode, path, offset, data))
        return len(data)

    def fsync(self) -> None:
        self._disk._spend("fsync", self.path)
        """Raises InjectedIOError (EIO) when the schedule says so (the dirty data is then
        marked clean, as Linux does: see :mod:`faultfs.media`)."""
        self._data()
        d = self._disk
        fault = d._due("fsync")
        if fault is not None:
            d._record(fault, self, 0, 0, "fsync failed; unsynced writes marked clean")
            raise media.eio("fsync error", self.path)
        d.trace.append(Fsync(self._inode, self.path))

    def truncate(self, size: int) -> None:
        buf = self._data()
        if size < len(buf):
            del buf[size:]
            bad = self._disk._bad.get(self._inode)
            if bad:     # sectors past the end are gone, not unreadable
                bad.difference_update([x for x in bad if x * media.SECTOR >= size])
        else:
            buf.extend(bytes(size - len(buf)))
        self._disk.trace.append(Truncate(self._inode, self.path, size))

    def size(self) -> int:
        return len(self._data())

    def close(self) -> None:
        self.closed = True


class SimDisk:
    """The VFS protocol in memory, tracing every operation.

    Args:
        profile: the device's persistence guarantees (a :class:`DeviceProfile` or its name).
        image: the durable contents the disk starts from (e.g. a crash state to recover).
    """

    def __init__(self, profile: DeviceProfile | str = DEFAULT_DEVICE,
                 image: Image | None = None, op_budget: int | None = None) -> None:
        self.profile = get_device(profile) if isinstance(profile, str) else profile
        self.base = image.copy() if image is not None else Image()
        self.trace = Trace()
        self._inodes: dict[int, bytearray] = {}
        self._names: dict[str, int] = {}
        self._dirs: set[str] = set(self.base.dirs) | {""}
        self._bad: dict[int, set[int]] = {}
        for path in sorted(self.base.files):
            self._names[path] = self._new_inode(self.base.files[path])
            if self.base.bad_sectors.get(path):
                self._bad[self._names[path]] = set(self.base.bad_sectors[path])
        self._schedule: tuple = ()
        self._io_counts = {"read": 0, "write": 0, "fsync": 0, "extend": 0}
        self.faults_injected = 0
        self.op_budget = op_budget
        self.ops = 0            # file system calls made (reads included), for op_budget

    def arm(self, schedule) -> None:
        """Start injecting the media faults of ``schedule`` (a sequence of
        :class:`faultfs.media.FaultSpec`); IOs are counted from now.  Deterministic."""
        self._schedule = tuple(schedule)
        self._io_counts = {"read": 0, "write": 0, "fsync": 0, "extend": 0}

    def _spend(self, call: str, path: str) -> None:
        """Count one file system call.

        Raises:
            OpBudgetExceeded: past ``op_budget`` calls (a hang, see the class).
        """
        self.ops += 1
        if self.op_budget is not None and self.ops > self.op_budget:
            raise OpBudgetExceeded(self.op_budget, f"{call} {path!r}")

    def _due(self, io_class: str, extending: bool = False):
        """Count one IO of ``io_class``; the fault scheduled for it, if any."""
        if not self._schedule:
            return None
        n = self._io_counts[io_class]
        self._io_counts[io_class] += 1
        ne = self._io_counts["extend"]
        if extending:
            self._io_counts["extend"] += 1
        for f in self._schedule:
            if f.io_class != io_class:
                continue
            if f.kind == "enospc":
                if extending and f.at == ne:
                    return f
            elif f.at == n:
                return f
        return None

    def _record(self, fault, f: "SimFile", offset: int, length: int, detail: str,
                inode: int | None = None, path: str | None = None) -> None:
        """Trace the fault on ``f`` (or on ``inode``/``path``: where a misdirected write
        landed)."""
        self.faults_injected += 1
        self.trace.append(MediaFault(fault.kind, f._inode if inode is None else inode,
                                     f.path if path is None else path, offset, length, detail))

    def _new_inode(self, data: bytes = b"") -> int:
        ino = len(self._inodes)
        self._inodes[ino] = bytearray(data)
        return ino

    # -- the VFS protocol ---------------------------------------------------------------------
    def open(self, path: str, create: bool = False) -> SimFile:
        self._spend("open", path)
        ino = self._names.get(path)
        if ino is None:
            if not create:
                raise FileNotFoundError(path)
            if parent_dir(path) not in self._dirs:
                raise FileNotFoundError(f"directory of {path!r} does not exist")
            ino = self._new_inode()
            self._names[path] = ino
            self.trace.append(Create(path, ino))
        return SimFile(self, path, ino)

    def exists(self, path: str) -> bool:
        self._spend("exists", path)
        return path in self._names or path in self._dirs

    def listdir(self, path: str = "") -> list[str]:
        self._spend("listdir", path)
        if path not in self._dirs:
            raise FileNotFoundError(path)
        names = {p.rsplit("/", 1)[-1] for p in list(self._names) + list(self._dirs)
                 if p and parent_dir(p) == path}
        return sorted(names)

    def mkdir(self, path: str) -> None:
        self._spend("mkdir", path)
        if path in self._dirs:
            return
        if parent_dir(path) not in self._dirs:
            raise FileNotFoundError(path)
        self._dirs.add(path)
        self.trace.append(Mkdir(path))

    def rename(self, src: str, dst: str) -> None:
        self._spend("rename", src)
        if src not in self._names:
            raise FileNotFoundError(src)
        ino = self._names.pop(src)
        self._names[dst] = ino
        self.trace.append(Rename(src, dst, ino))

    def unlink(self, path: str) -> None:
        self._spend("unlink", path)
        if path not in self._names:
            raise FileNotFoundError(path)
        self.trace.append(Unlink(path, self._names.pop(path)))

    def fsync_dir(self, path: str = "") -> None:
        self._spend("fsync_dir", path)
        if path not in self._dirs:
            raise FileNotFoundError(path)
        self.trace.append(FsyncDir(path))

    def mark(self, label: str, **attrs: object) -> None:
        self.trace.append(Marker(label, tuple(sorted(attrs.items()))))

    # -- inspection ---------------------------------------------------------------------------
    def read_file(self, path: str) -> bytes:
        """The file's newest contents (what the running program sees)."""
        return bytes(self._inodes[self._names[path]])

    def live_image(self) -> Image:
        """Everything written so far, as if all of it were durable (a process-kill view),
        latent sector errors included (they are physical)."""
        return Image({p: bytes(self._inodes[i]) for p, i in self._names.items()},
                     set(self._dirs) - {""},
                     {p: frozenset(self._bad[i]) for p, i in self._names.items()
                      if self._bad.get(i)})

    def trace_hash(self) -> str:
        return self.trace.hash()
