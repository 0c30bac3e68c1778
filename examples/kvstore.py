"""A tiny append-only key-value store on plain files (``open``/``os``): the worked example of
tornpage's pytest plugin (see docs/pytest-plugin.md).

Directory ``root`` holds one file, ``data.log``: records appended one after another, each
``[crc32 of payload: 4 bytes LE][payload length: 4 bytes LE][payload]`` with payload the JSON
``[key, value]`` (value ``null`` deletes the key).

* ``put``/``delete`` append one record, flush Python's buffer and ``fsync`` the log: when they
  return, the change is durable (the caller may acknowledge it).
* ``compact`` writes the live keys to ``data.log.tmp``, ``fsync``s it, renames it over
  ``data.log`` and ``fsync``s the directory, so a crash leaves either log, whole.
* ``open`` is the recovery: it reads records up to the first one that is short or fails its
  checksum (a torn append), truncates the log there and ``fsync``s it.

:class:`BrokenKVStore` forgets the ``fsync`` of ``data.log.tmp`` before the rename.  After a crash
the renamed name can be durable while the file's data is not: the log is empty or partial, and
keys that ``put`` had acknowledged are gone (the "zero-length file after rename" problem of
delayed allocation file systems).
"""
from __future__ import annotations

import json
import os
import struct
import zlib

HEADER = struct.Struct("<II")       # crc32 of the payload, payload length (bytes)
LOG = "data.log"


def encode(key: str, value: str | None) -> bytes:
    payload = json.dumps([key, value]).encode()
    return HEADER.pack(zlib.crc32(payload), len(payload)) + payload


def decode(data: bytes) -> tuple[list[tuple[str, str | None]], int]:
    """(records, bytes of the valid prefix): stops at the first short or corrupt record."""
    out, pos = [], 0
    while pos + HEADER.size <= len(data):
        crc, n = HEADER.unpack_from(data, pos)
        payload = data[pos + HEADER.size:pos + HEADER.size + n]
        if n == 0 or len(payload) < n or zlib.crc32(payload) != crc:
            break                            # (n == 0: zeros, which pass crc32(b"") == 0)
        key, value = json.loads(payload)
        out.append((key, value))
        pos += HEADER.size + n
    return out, pos


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class KVStore:
    """Keys and values are strings.  Not thread-safe."""

    def __init__(self, root: str, data: dict[str, str]) -> None:
        self.root = root
        self._path = os.path.join(root, LOG)
        self._data = data
        self._log = open(self._path, "ab")

    @classmethod
    def open(cls, root: str) -> "KVStore":
        """Open (creating) the store in directory ``root``, recovering after a crash."""
        os.makedirs(root, exist_ok=True)
        path = os.path.join(root, LOG)
        if not os.path.exists(path):
            open(path, "wb").close()
            fsync_dir(root)                  # the new name is durable
        with open(path, "rb") as f:
            raw = f.read()
        records, good = decode(raw)
        if good < len(raw):                  # a torn append: cut it off
            with open(path, "r+b") as f:
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())
        data: dict[str, str] = {}
        for key, value in records:
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        return cls(root, data)

    def get(self, key: str) -> str | None:
        return self._data.get(key)

    def put(self, key: str, value: str) -> None:
        """Durable when it returns."""
        self._append(key, value)
        self._data[key] = value

    def delete(self, key: str) -> None:
        """Durable when it returns."""
        self._append(key, None)
        self._data.pop(key, None)

    def _append(self, key: str, value: str | None) -> None:
        self._log.write(encode(key, value))
        self._log.flush()                    # Python's buffer to the OS ...
        os.fsync(self._log.fileno())         # ... and the OS's to the disk

    def compact(self) -> None:
        """Rewrite the log with only the live keys (atomically: write, fsync, rename)."""
        tmp = self._path + ".tmp"
        with open(tmp, "wb") as f:
            for key in sorted(self._data):
                f.write(encode(key, self._data[key]))
            f.flush()
            self._sync_before_rename(f)
        self._log.close()
        os.replace(tmp, self._path)
        fsync_dir(self.root)                 # the rename is durable
        self._log = open(self._path, "ab")

    def _sync_before_rename(self, f) -> None:
        os.fsync(f.fileno())                 # the data is on disk before the name points at it

    def close(self) -> None:
        self._log.close()


class BrokenKVStore(KVStore):
    """:class:`KVStore` with the classic bug: no fsync of the new log before the rename."""

    def _sync_before_rename(self, f) -> None:
        pass                                 # BUG: os.fsync(f.fileno()) is missing
