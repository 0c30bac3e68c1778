"""The IO trace: every operation a program issued on a :class:`~faultfs.simdisk.SimDisk`, in order.

A trace is a list of immutable operations.  Files are inodes (numbered in creation order); a path
is a directory entry naming an inode, so unlink-then-create makes a new inode.  Markers are
labelled events the program above emits (ALICE's "what the program printed"): the oracle learns
from them what had been promised before a crash.

A position ``p`` in a trace means "operations ``0 .. p-1`` were issued, then the power went".

The trace hash is SHA-256 over a canonical encoding of every operation, data bytes included, so
two runs with the same seed can be compared byte for byte.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Union


def parent_dir(path: str) -> str:
    """Directory part of a VFS path (``""`` for the root)."""
    return path.rsplit("/", 1)[0] if "/" in path else ""


@dataclass(frozen=True)
class Create:
    """A new directory entry ``path`` naming a new, empty inode."""
    path: str
    inode: int


@dataclass(frozen=True)
class Mkdir:
    path: str


@dataclass(frozen=True)
class Write:
    """``data`` written to ``inode`` at byte ``offset`` (``path`` is informative)."""
    inode: int
    path: str
    offset: int
    data: bytes


@dataclass(frozen=True)
class Truncate:
    inode: int
    path: str
    size: int


@dataclass(frozen=True)
class Fsync:
    """Barrier: every earlier Write/Truncate of ``inode`` is durable once this returns."""
    inode: int
    path: str


@dataclass(frozen=True)
class FsyncDir:
    """Barrier: every earlier Create/Rename/Unlink/Mkdir in directory ``path`` is durable."""
    path: str


@dataclass(frozen=True)
class Rename:
    src: str
    dst: str
    inode: int


@dataclass(frozen=True)
class Unlink:
    path: str
    inode: int


@dataclass(frozen=True)
class Marker:
    """A labelled event from the program above; ``attrs`` is a sorted tuple of (key, value)."""
    label: str
    attrs: tuple = field(default=())

    def get(self, key: str, default: object = None) -> object:
        for k, v in self.attrs:
            if k == key:
                return v
        return default


@dataclass(frozen=True)
class MediaFault:
    """A media fault the disk injected (:mod:`faultfs.media`): ``kind`` at bytes
    ``[offset, offset+length)`` of ``inode``.  ``sector-error`` makes those sectors unreadable;
    ``eio-fsync`` leaves the inode's unsynced writes pending forever; ``misdirected`` is
    followed by the ordinary Write of where the data landed (``[offset, offset+length)`` of
    ``inode``, which is another file's when it landed there; ``length`` 0: it landed nowhere,
    no Write follows); ``bit-rot`` names the byte whose bit ``offset % 8`` decayed (``length``
    1); ``at-rest-corruption`` names the damaged byte (``length`` 1) and is
    followed by the ordinary Write of what the drive stored, damage included; the rest only
    explain."""
    kind: str
    inode: int
    path: str
    offset: int
    length: int
    detail: str = ""


Op = Union[Create, Mkdir, Write, Truncate, Fsync, FsyncDir, Rename, Unlink, Marker, MediaFault]
DATA_OPS = (Write, Truncate)
META_OPS = (Create, Mkdir, Rename, Unlink)


def encode_op(op: Op) -> bytes:
    """Canonical byte encoding of one operation (used for the trace hash)."""
    kind = type(op).__name__
    if isinstance(op, Write):
        head = json.dumps([kind, op.inode, op.path, op.offset, len(op.data)]).encode()
        return head + b"\0" + op.data
    if isinstance(op, Marker):
        return json.dumps([kind, op.label, [list(a) for a in op.attrs]], default=str).encode()
    return json.dumps([kind] + [getattr(op, f) for f in op.__dataclass_fields__]).encode()


def _short(v: object, limit: int = 40) -> str:
    s = repr(v) if not isinstance(v, (int, str)) else str(v)
    return s if len(s) <= limit else s[:limit] + f"…({len(s)} chars)"


class Trace:
    """An append-only list of operations with a SHA-256 hash of them all.

    The hash is taken lazily: most traces (a recovery's, say) are never asked for it, so
    :meth:`append` only records the operation, O(1) (a marker: O(its encoding), taken at once
    because its attributes may be mutable objects of the caller's), and :meth:`hash` hashes the
    operations appended since its last call, O(their bytes).  Operations are frozen dataclasses
    of ints, strings and bytes, so hashing one later gives the bytes hashing it at once would.
    """

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self._sha = hashlib.sha256()
        self._hashed = 0                        # ops[:_hashed] are in _sha
        self._encoded: dict[int, bytes] = {}    # index -> encoding taken at append (markers)

    def append(self, op: Op) -> int:
        """Append ``op``; return its index in the trace."""
        i = len(self.ops)
        if isinstance(op, Marker):
            self._encoded[i] = encode_op(op)
        self.ops.append(op)
        return i

    def hash(self) -> str:
        """Hex SHA-256 of every operation so far, in order: of each operation's
        :func:`encode_op` bytes, preceded by their length (8 bytes, little-endian)."""
        sha = self._sha
        for i in range(self._hashed, len(self.ops)):
            enc = self._encoded.pop(i, None)
            if enc is None:
                enc = encode_op(self.ops[i])
            sha.update(len(enc).to_bytes(8, "little"))
            sha.update(enc)
        self._hashed = len(self.ops)
        return sha.hexdigest()

    def __len__(self) -> int:
        return len(self.ops)

    def __getitem__(self, i):
        return self.ops[i]

    def markers(self, label: str | None = None) -> list[tuple[int, Marker]]:
        """(index, marker) pairs, optionally only those with ``label``."""
        return [(i, op) for i, op in enumerate(self.ops)
                if isinstance(op, Marker) and (label is None or op.label == label)]

    def describe(self, i: int) -> str:
        """One line naming operation ``i`` for explanations."""
        op = self.ops[i]
        if isinstance(op, Write):
            return f"#{i} write {op.path} [{op.offset}, {op.offset + len(op.data)}) {len(op.data)} bytes"
        if isinstance(op, Marker):
            attrs = " ".join(f"{k}={_short(v)}" for k, v in op.attrs)
            return f"#{i} marker {op.label} {attrs}".rstrip()
        if isinstance(op, Fsync):
            return f"#{i} fsync {op.path}"
        if isinstance(op, FsyncDir):
            return f"#{i} fsync_dir {op.path or '/'}"
        if isinstance(op, MediaFault):
            return (f"#{i} media fault {op.kind} on {op.path} [{op.offset}, "
                    f"{op.offset + op.length})" + (f": {op.detail}" if op.detail else ""))
        if isinstance(op, Rename):
            return f"#{i} rename {op.src} -> {op.dst} (inode {op.inode})"
        if isinstance(op, Create):
            return f"#{i} create {op.path} (inode {op.inode})"
        if isinstance(op, Unlink):
            return f"#{i} unlink {op.path} (inode {op.inode})"
        if isinstance(op, Truncate):
            return f"#{i} truncate {op.path} to {op.size} bytes"
        if isinstance(op, Mkdir):
            return f"#{i} mkdir {op.path}"
        return f"#{i} {type(op).__name__.lower()} " + " ".join(
            f"{f}={_short(getattr(op, f))}" for f in op.__dataclass_fields__)
