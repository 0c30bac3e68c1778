"""Crash states: what the disk kept when the power went.

A crash state is a pure function of ``(base image, trace, CrashPlan, device profile)``.  The plan's
choices are data, not randomness, so every state can be written to JSON and rebuilt exactly.

The persistence model (see DESIGN.md, faultfs):
  * An operation at index ``i < position`` is *durable* when a barrier for it follows before the
    crash: ``Fsync`` of the same inode for ``Write``/``Truncate``; ``FsyncDir`` of the parent
    directory for ``Create``/``Mkdir``/``Rename``/``Unlink``.  Durable operations always survive.
  * Every other operation before the crash is *pending*.  The plan gives each pending operation a
    :class:`Choice`: ``keep`` (the default for an operation the plan does not name), ``drop``, or
    ``tear`` (only some tear units of a write reach the disk; lost units show old data, zeros or
    garbage).  Choices are independent, so a later write may survive while an earlier one is lost
    (reordering), but never across a barrier, since barriers make earlier operations durable.
  * A tear may also cut *inside* one tear unit (devices whose sectors are not atomic only, see
    ``DeviceProfile.sub_sector_cuts``): ``partial=(u, n)`` says the first ``n`` bytes of unit
    ``u`` are new and its rest shows the fill, as when the power goes while the drive is
    writing that sector.  So a one-sector write can tear too, and a small ``n`` keeps the new
    header of the sector while damaging what follows it.
  * ``size-only`` (devices without safe append only, for a write that extended its file): the
    new file size persisted but the appended bytes did not; they read as zeros or garbage
    (``fill``), as after a crash on ext4 with data=writeback.
  * ``ordered`` devices keep a prefix of the pending operations: after the first dropped or torn
    one, every later pending operation is dropped.  Process-kill devices have nothing pending.
  * Surviving operations are applied in trace order.
  * Media faults (:mod:`faultfs.media`) recorded in the trace: a failed fsync (``eio-fsync``) is
    no barrier, and the writes it covered stay pending even past a later successful fsync of
    the same file (Linux marks the failed pages clean); a latent sector error is physical, so it
    is part of every crash state after it, until a surviving write covers the sector; so is
    bit rot (a bit flipped in whatever the byte holds in that state, until a write covers
    it).  A
    misdirected write and an at-rest corruption need nothing here: the Write that follows
    their MediaFault holds where the data landed and what the drive stored.

Tear units are aligned on absolute file offsets: unit ``u`` of a write covers the bytes of the
write that fall in ``[k*U, (k+1)*U)`` for the device's tear unit ``U``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from tornpage.faultfs.devices import DeviceProfile
from tornpage.faultfs.simdisk import Image
from tornpage.faultfs import media
from tornpage.faultfs.trace import (DATA_OPS, META_OPS, Create, Fsync, FsyncDir, Marker, MediaFault, Mkdir,
                           Rename, Trace, Truncate, Unlink, Write, parent_dir)

KEEP, DROP, TEAR, SIZE_ONLY = "keep", "drop", "tear", "size-only"
FILLS = ("old", "zeros", "garbage")


class CrashPlanError(ValueError):
    """A crash plan that does not fit its trace, or whose JSON is malformed."""


@dataclass(frozen=True)
class Choice:
    """The fate of one pending operation.

    ``units`` (for ``tear``) are the indices, within the write, of the tear units that reached the
    disk; ``fill`` says what the lost units show: the ``old`` contents, ``zeros`` or ``garbage``.
    ``partial`` (for ``tear``, optional): ``(u, n)``, unit ``u`` (not among ``units``) torn
    inside: its first ``n`` bytes are new, the rest shows ``fill`` (a sub-sector tear, on
    devices whose sectors are not atomic).  Plans written before it existed load unchanged.
    """
    kind: str = KEEP
    units: tuple[int, ...] = ()
    fill: str = "old"
    partial: tuple[int, int] | None = None

    def to_json(self) -> dict:
        d: dict = {"kind": self.kind}
        if self.kind == SIZE_ONLY:
            d["fill"] = self.fill
        if self.kind == TEAR:
            d["units"] = list(self.units)
            d["fill"] = self.fill
            if self.partial is not None:
                d["partial"] = list(self.partial)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Choice":
        try:
            kind = d["kind"]
            if kind not in (KEEP, DROP, TEAR, SIZE_ONLY):
                raise CrashPlanError(f"unknown choice kind {kind!r}")
            fill = d.get("fill", "old")
            if fill not in FILLS:
                raise CrashPlanError(f"unknown tear fill {fill!r}")
            partial = d.get("partial")
            if partial is not None:
                if kind != TEAR or not isinstance(partial, list) or len(partial) != 2:
                    raise CrashPlanError(f"a partial unit is [unit, bytes] of a tear, got "
                                         f"{partial!r}")
                partial = (_int(partial[0], "partial unit"), _int(partial[1], "partial bytes"))
            return cls(kind, tuple(_int(u, "tear unit") for u in d.get("units", ())), fill,
                       partial)
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, CrashPlanError):
                raise
            raise CrashPlanError(f"malformed choice {d!r}: {e}") from None


@dataclass(frozen=True)
class CrashPlan:
    """Crash after ``position`` operations; ``choices`` maps trace index → :class:`Choice`."""
    position: int
    choices: tuple[tuple[int, Choice], ...] = field(default=())

    def choice(self, i: int) -> Choice:
        for j, c in self.choices:
            if j == i:
                return c
        return Choice()

    def to_json(self) -> dict:
        return {"position": self.position,
                "choices": [[i, c.to_json()] for i, c in self.choices]}

    @classmethod
    def from_json(cls, d: dict) -> "CrashPlan":
        try:
            return cls(_int(d["position"], "position"),
                       tuple((_int(i, "operation index"), Choice.from_json(c))
                             for i, c in d.get("choices", [])))
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, CrashPlanError):
                raise
            raise CrashPlanError(f"malformed crash plan: {e}") from None

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)


def _int(v, what: str) -> int:
    """A JSON integer (not a bool, float or string), or CrashPlanError."""
    if type(v) is not int:
        raise CrashPlanError(f"{what} must be an integer, got {v!r}")
    return v


def pending_ops(trace: Trace, position: int, profile: DeviceProfile) -> list[int]:
    """Indices (ascending) of the operations before ``position`` that a crash there may lose.

    O(position).
    """
    if not 0 <= position <= len(trace):
        raise CrashPlanError(f"position {position} outside trace of {len(trace)} operations")
    if not profile.power_loss:
        return []
    synced_inodes: set[int] = set()
    synced_dirs: set[str] = set()
    failed_fsync: set[int] = set()     # inodes whose writes up to an earlier fsync stay pending
    out = []
    for i in range(position - 1, -1, -1):
        op = trace.ops[i]
        if isinstance(op, Fsync):
            synced_inodes.add(op.inode)
            failed_fsync.discard(op.inode)
        elif isinstance(op, MediaFault):
            if op.kind == "eio-fsync":
                failed_fsync.add(op.inode)
        elif isinstance(op, FsyncDir):
            synced_dirs.add(op.path)
        elif isinstance(op, DATA_OPS):
            if op.inode not in synced_inodes or op.inode in failed_fsync:
                out.append(i)
        elif isinstance(op, META_OPS):
            path = op.dst if isinstance(op, Rename) else op.path
            dirs = {parent_dir(path)}
            if isinstance(op, Rename):
                dirs.add(parent_dir(op.src))
            if not dirs <= synced_dirs:
                out.append(i)
    out.reverse()
    return out


def tear_units(offset: int, length: int, unit: int) -> list[tuple[int, int]]:
    """Split the write ``[offset, offset+length)`` into aligned tear units: (start, end) bytes
    relative to the write."""
    out = []
    pos = offset
    end = offset + length
    while pos < end:
        nxt = min(end, (pos // unit + 1) * unit)
        out.append((pos - offset, nxt - offset))
        pos = nxt
    return out


def _garbage(seed: str, n: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


class _State:
    """Mutable file-system state while replaying a trace."""

    def __init__(self, base: Image) -> None:
        self.inodes: dict[int, bytearray] = {}
        self.names: dict[str, int] = {}
        self.dirs = set(base.dirs)
        self.bad: dict[int, set[int]] = {}
        for n, path in enumerate(sorted(base.files)):
            self.inodes[n] = bytearray(base.files[path])
            self.names[path] = n
            if base.bad_sectors.get(path):
                self.bad[n] = set(base.bad_sectors[path])
        self.base_inodes = len(base.files)

    def copy(self) -> "_State":
        s = _State.__new__(_State)
        s.inodes = {i: bytearray(b) for i, b in self.inodes.items()}
        s.names = dict(self.names)
        s.dirs = set(self.dirs)
        s.bad = {i: set(b) for i, b in self.bad.items()}
        s.base_inodes = self.base_inodes
        return s

    def apply(self, op, data: bytes | None = None, keep_mask=None) -> None:
        if isinstance(op, MediaFault):
            if op.kind == "sector-error":
                self.bad.setdefault(op.inode, set()).update(media.sectors(op.offset, op.length))
            elif op.kind == "bit-rot":
                buf = self.inodes.get(op.inode)
                if buf is not None and op.offset < len(buf):
                    buf[op.offset] ^= 1 << media.rot_bit(op.offset)
            return
        if isinstance(op, Write):
            buf = self.inodes.setdefault(op.inode, bytearray())
            bad = self.bad.get(op.inode)
            if bad:                      # a sector rewritten whole is readable again
                bad.difference_update(s for (a, b), new in (keep_mask or [((0, len(op.data)),
                                                                           op.data)])
                                      if new is not None
                                      for s in media.whole_sectors(op.offset + a, b - a))
            if keep_mask is None:
                if op.offset > len(buf):
                    buf.extend(bytes(op.offset - len(buf)))
                buf[op.offset:op.offset + len(op.data)] = op.data
                return
            for (a, b), new in keep_mask:
                lo, hi = op.offset + a, op.offset + b
                if new is None:          # lost unit showing the old contents
                    continue
                if lo > len(buf):
                    buf.extend(bytes(lo - len(buf)))
                buf[lo:hi] = new
        elif isinstance(op, Truncate):
            buf = self.inodes.setdefault(op.inode, bytearray())
            if op.size < len(buf):
                del buf[op.size:]
                if self.bad.get(op.inode):
                    self.bad[op.inode] = {x for x in self.bad[op.inode]
                                          if x * media.SECTOR < op.size}
            else:
                buf.extend(bytes(op.size - len(buf)))
        elif isinstance(op, Create):
            self.inodes.setdefault(op.inode, bytearray())
            self.names[op.path] = op.inode
        elif isinstance(op, Mkdir):
            self.dirs.add(op.path)
        elif isinstance(op, Rename):
            if op.src in self.names:
                self.names[op.dst] = self.names.pop(op.src)
        elif isinstance(op, Unlink):
            if self.names.get(op.path) == op.inode:
                del self.names[op.path]

    def apply_size_only(self, op: Write, fill: str, seed: str) -> None:
        """The file grows to cover ``op`` but the appended bytes read as ``fill``."""
        buf = self.inodes.setdefault(op.inode, bytearray())
        end = op.offset + len(op.data)
        if end <= len(buf):
            return
        start = len(buf)
        buf.extend(bytes(end - start) if fill == "zeros" else _garbage(seed, end - start))

    def image(self) -> Image:
        visible = {p: i for p, i in self.names.items()
                   if parent_dir(p) in self.dirs or parent_dir(p) == ""}
        files = {p: bytes(self.inodes.get(i, b"")) for p, i in visible.items()}
        bad = {p: frozenset(self.bad[i]) for p, i in visible.items() if self.bad.get(i)}
        return Image(files, set(self.dirs), bad)


class CrashStateBuilder:
    """Builds crash images from one recorded trace, many times.

    Keeps a full-replay snapshot every ``snapshot_every`` operations, so building the state at a
    position costs the replay from the snapshot before its earliest pending operation instead of
    from the start of the trace.

    Raises:
        CrashPlanError: a plan whose position is outside the trace, or which names an operation
            that is not pending at that position, or tears a non-write / with a bad unit index.
    """

    def __init__(self, base: Image, trace: Trace, profile: DeviceProfile,
                 snapshot_every: int = 64) -> None:
        self.base = base
        self.trace = trace
        self.profile = profile
        self.every = snapshot_every
        self._snaps: dict[int, _State] = {0: _State(base)}
        self._pending: dict[int, tuple[int, ...]] = {}

    def _snapshot_at_or_before(self, index: int) -> tuple[int, _State]:
        k = (index // self.every) * self.every
        if k not in self._snaps:
            j, st = self._snapshot_at_or_before(k - 1) if k > 0 else (0, self._snaps[0])
            st = st.copy()
            for i in range(j, k):
                st.apply(self.trace.ops[i])
            self._snaps[k] = st
        return k, self._snaps[k]

    def pending(self, position: int) -> list[int]:
        """The operations pending at ``position`` (:func:`pending_ops`), ascending; a new list.
        Memoized per position: the builder's trace is a finished recording.  O(position) the
        first time, O(pending) after."""
        if position not in self._pending:
            self._pending[position] = tuple(pending_ops(self.trace, position, self.profile))
        return list(self._pending[position])

    def appends(self) -> frozenset:
        """Indices of the writes that extended their file when the program issued them."""
        if not hasattr(self, "_appends"):
            sizes: dict[int, int] = {}
            st = self._snaps[0]
            for p, ino in st.names.items():
                sizes[ino] = len(st.inodes[ino])
            out = set()
            for i, op in enumerate(self.trace.ops):
                if isinstance(op, Write):
                    end = op.offset + len(op.data)
                    if end > sizes.get(op.inode, 0):
                        out.add(i)
                        sizes[op.inode] = end
                elif isinstance(op, Truncate):
                    sizes[op.inode] = op.size
            self._appends = frozenset(out)
        return self._appends

    def build(self, plan: CrashPlan) -> Image:
        """The durable image after a crash as described by ``plan``."""
        pend = self.pending(plan.position)
        pend_set = set(pend)
        for i, c in plan.choices:
            if i not in pend_set:
                raise CrashPlanError(f"plan names operation #{i}, which is not pending at "
                                     f"position {plan.position}")
            if c.kind == SIZE_ONLY:
                if self.profile.safe_append or i not in self.appends():
                    raise CrashPlanError(
                        f"plan persists only the size of operation #{i}, which is not an "
                        f"appending write on a device without safe append")
                if c.fill not in ("zeros", "garbage"):
                    raise CrashPlanError(f"size-only fill must be zeros or garbage, not {c.fill!r}")
            if c.kind == TEAR:
                op = self.trace.ops[i]
                if not isinstance(op, Write):
                    raise CrashPlanError(f"plan tears operation #{i}, which is not a write")
                if c.fill not in self.profile.torn_fills:
                    raise CrashPlanError(
                        f"plan tears operation #{i} with fill {c.fill!r}; device "
                        f"{self.profile.name} shows lost units only as "
                        f"{'/'.join(self.profile.torn_fills)}")
                # validated here, not only when applied: on an ordered device an earlier drop
                # skips the tear, and a plan's validity must not depend on that
                units = tear_units(op.offset, len(op.data), self.profile.tear_unit)
                n = len(units)
                for u in c.units:
                    if not 0 <= u < n:
                        raise CrashPlanError(f"tear of #{i} names unit {u}; the write has {n}")
                if c.partial is not None:
                    self._check_partial(i, c, units)
        first = pend[0] if pend else plan.position
        k, snap = self._snapshot_at_or_before(first)
        st = snap.copy()
        for i in range(k, first):
            st.apply(self.trace.ops[i])
        dropping_rest = False
        for i in range(first, plan.position):
            op = self.trace.ops[i]
            if isinstance(op, Marker):
                continue
            if i not in pend_set:
                st.apply(op)
                continue
            c = plan.choice(i)
            if dropping_rest:
                continue
            if self.profile.ordered and c.kind != KEEP:
                dropping_rest = True     # a drop ends the kept prefix as well as a tear does
            if c.kind == DROP:
                continue
            if c.kind == KEEP:
                st.apply(op)
            elif c.kind == SIZE_ONLY:
                st.apply_size_only(op, c.fill, f"{i}")
            else:
                st.apply(op, keep_mask=self._tear_mask(i, op, c))
        return st.image()

    def _check_partial(self, i: int, c: Choice, units) -> None:
        u, nb = c.partial
        if not self.profile.sub_sector_cuts:
            raise CrashPlanError(f"plan tears operation #{i} inside a unit; device "
                                 f"{self.profile.name} writes each unit whole or not at all")
        if not 0 <= u < len(units) or u in c.units:
            raise CrashPlanError(f"tear of #{i} cuts inside unit {u}, which is not a lost unit "
                                 f"of the write's {len(units)}")
        a, b = units[u]
        if not 0 < nb < b - a:
            raise CrashPlanError(f"tear of #{i} keeps {nb} bytes of unit {u}, which holds "
                                 f"{b - a} bytes of the write (0 < n < {b - a})")

    def _tear_mask(self, i: int, op: Write, c: Choice):
        units = tear_units(op.offset, len(op.data), self.profile.tear_unit)
        for u in c.units:
            if not 0 <= u < len(units):
                raise CrashPlanError(f"tear of #{i} names unit {u}; the write has {len(units)}")
        kept = set(c.units)
        mask = []
        for u, (a, b) in enumerate(units):
            if u in kept:
                mask.append(((a, b), op.data[a:b]))
                continue
            if c.partial is not None and c.partial[0] == u:
                mask.append(((a, a + c.partial[1]), op.data[a:a + c.partial[1]]))
                a += c.partial[1]      # the rest of the unit shows the fill
            if c.fill == "zeros":
                mask.append(((a, b), bytes(b - a)))
            elif c.fill == "garbage":
                mask.append(((a, b), _garbage(f"{i}:{u}", b - a)))
            else:
                mask.append(((a, b), None))
        return mask

    def explain(self, plan: CrashPlan, describe=None) -> list[str]:
        """One line per choice that loses something, e.g.
        ``#812 write t1.ibd [16384, 20480) torn: units 0-3 new, 4-7 old``.

        ``describe(op)`` may return a richer name for a write (e.g. ``"page 1:5"``).
        """
        lines = [f"crash after operation #{plan.position - 1} "
                 f"({_plural(len(self.pending(plan.position)), 'operation')} pending)"]
        for i, c in plan.choices:
            if c.kind == KEEP:
                continue
            op = self.trace.ops[i]
            what = self.trace.describe(i)
            if describe is not None and isinstance(op, Write):
                extra = describe(op)
                if extra:
                    what += f" ({extra})"
            if c.kind == DROP:
                lines.append(f"{what}: dropped")
            elif c.kind == SIZE_ONLY:
                lines.append(f"{what}: only the new file size persisted; the appended bytes "
                             f"read as {c.fill}")
            else:
                n = len(tear_units(op.offset, len(op.data), self.profile.tear_unit))
                cut = c.partial[0] if c.partial is not None else None
                new = _ranges(sorted(c.units))
                old = _ranges([u for u in range(n) if u not in set(c.units) and u != cut])
                inside = "" if cut is None else (
                    f", unit {cut} torn inside: its first {c.partial[1]} bytes new, the rest "
                    f"{c.fill}")
                lines.append(f"{what}: torn: units {new or 'none'} new{inside}, "
                             f"{old or 'none'} {c.fill} ({self.profile.tear_unit}-byte units)")
        return lines


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _ranges(xs: list[int]) -> str:
    out = []
    for x in xs:
        if out and out[-1][1] == x - 1:
            out[-1][1] = x
        else:
            out.append([x, x])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in out)
