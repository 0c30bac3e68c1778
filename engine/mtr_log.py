"""Redo log records: types, encoding, parsing and application (mtr/mtr0log.h, log0recv.cc).

Records are physiological: each names one physical page (space id, page number) and a logical
change inside it.  The running engine changes a page *only* by building a record and calling
:func:`apply` on the frame, and recovery calls the same :func:`apply`, so "do" and "redo" cannot
drift apart.

Encoding (a simplification of InnoDB's compressed integers; big-endian):

    type u8 | space u32 | page u32 | body length u32 | body

A mini-transaction (mtr) is a group of records written contiguously.  A one-record mtr sets
MLOG_SINGLE_REC_FLAG on its type; a multi-record mtr ends with a single MLOG_MULTI_REC_END byte.
Recovery applies a group all or nothing.

Record types and bodies:
    MLOG_WRITE_STRING       offset u16 | bytes            write bytes at offset
    MLOG_PAGE_INIT          page type u16 | level u16 | index id u64
                            re-create the page from nothing (old contents need not be read:
                            InnoDB's MLOG_INIT_FILE_PAGE / MLOG_COMP_PAGE_CREATE)
    MLOG_REC_INSERT         record payload                insert into an index page
    MLOG_REC_UPDATE_IN_PLACE record payload               replace the record with that key
    MLOG_REC_DELETE         key u64                       remove the record with that key
    MLOG_LIST_END_DELETE    key u64                       remove records with key >= key
    MLOG_LIST_END_COPY_CREATED  ([u16 len][payload])*     fill an empty index page
    MLOG_UNDO_INSERT        undo record payload           append at TRX_UNDO_PAGE_FREE

File-level records (log0recv.cc, fil0fil.cc of MySQL 5.7; page number 0, never applied to a
page): they name tablespace files and replay file operations, so recovery learns which files to
open from the redo log itself, not from a dictionary page that may be stale or torn.
    MLOG_FILE_NAME          path (UTF-8)                  the first change to a space since the
                                                          last checkpoint (and, at a checkpoint,
                                                          every space still changed after it)
    MLOG_FILE_CREATE        path                          CREATE TABLE: the file is created only
                                                          once this is durable
    MLOG_FILE_RENAME        old path | 0x00 | new path    RENAME TABLE, durable before the rename
    MLOG_FILE_DELETE        path                          DROP TABLE, durable before the unlink
    MLOG_CHECKPOINT         checkpoint LSN u64            end of a checkpoint's file names: a
                                                          scan from a checkpoint must find the
                                                          marker carrying that LSN
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from tornpage.engine import btr_page, trx_sys, undo
from tornpage.engine.errors import LayoutError
from tornpage.engine.page import (FIL_PAGE_INDEX, FIL_PAGE_TYPE_RSEG, FIL_PAGE_UNDO_LOG, init_frame)

# InnoDB's numbers (mtr0types.h)
MLOG_REC_INSERT = 9
MLOG_REC_UPDATE_IN_PLACE = 13
MLOG_REC_DELETE = 14
MLOG_LIST_END_DELETE = 15
MLOG_UNDO_INSERT = 20
MLOG_PAGE_INIT = 29             # MLOG_INIT_FILE_PAGE
MLOG_WRITE_STRING = 30
MLOG_MULTI_REC_END = 31
MLOG_LIST_END_COPY_CREATED = 45
MLOG_FILE_DELETE = 35
MLOG_FILE_NAME = 44
MLOG_FILE_CREATE = 47           # MLOG_FILE_CREATE2
MLOG_FILE_RENAME = 49           # MLOG_FILE_RENAME2
MLOG_CHECKPOINT = 56
MLOG_SINGLE_REC_FLAG = 0x80

FILE_RECORD_TYPES = frozenset({MLOG_FILE_NAME, MLOG_FILE_CREATE, MLOG_FILE_RENAME,
                               MLOG_FILE_DELETE, MLOG_CHECKPOINT})

assert MLOG_MULTI_REC_END not in (MLOG_REC_INSERT, MLOG_REC_UPDATE_IN_PLACE, MLOG_REC_DELETE,
                                  MLOG_LIST_END_DELETE, MLOG_UNDO_INSERT, MLOG_PAGE_INIT,
                                  MLOG_WRITE_STRING, MLOG_LIST_END_COPY_CREATED,
                                  *FILE_RECORD_TYPES)

TYPE_NAMES = {
    MLOG_WRITE_STRING: "WRITE_STRING", MLOG_PAGE_INIT: "PAGE_INIT",
    MLOG_REC_INSERT: "REC_INSERT", MLOG_REC_UPDATE_IN_PLACE: "REC_UPDATE_IN_PLACE",
    MLOG_REC_DELETE: "REC_DELETE", MLOG_LIST_END_DELETE: "LIST_END_DELETE",
    MLOG_LIST_END_COPY_CREATED: "LIST_END_COPY_CREATED", MLOG_UNDO_INSERT: "UNDO_INSERT",
    MLOG_FILE_NAME: "FILE_NAME", MLOG_FILE_CREATE: "FILE_CREATE", MLOG_FILE_RENAME: "FILE_RENAME",
    MLOG_FILE_DELETE: "FILE_DELETE", MLOG_CHECKPOINT: "CHECKPOINT",
}

_HDR = struct.Struct(">BIII")
REC_HDR = _HDR.size
_KEY = struct.Struct(">Q")


class RedoParseError(ValueError):
    """Bytes that do not parse as redo records (inside checksum-valid blocks: corruption)."""


class RedoApplyError(LayoutError):
    """A redo record whose body does not fit the record type or the page (a write past the
    page end, a body of the wrong length): parsed from the log, it means corruption."""


_PAGE_INIT = struct.Struct(">HHQ")
_FIXED_BODY = {MLOG_PAGE_INIT: _PAGE_INIT.size, MLOG_REC_DELETE: _KEY.size,
               MLOG_LIST_END_DELETE: _KEY.size, MLOG_CHECKPOINT: _KEY.size}


@dataclass(frozen=True)
class RedoRecord:
    type: int
    space: int
    page_no: int
    body: bytes

    def describe(self) -> str:
        if self.type in FILE_RECORD_TYPES:
            what = f"LSN {checkpoint_lsn(self)}" if self.type == MLOG_CHECKPOINT else \
                " -> ".join(file_paths(self))
            return f"{TYPE_NAMES[self.type]} space {self.space} ({what})"
        return f"{TYPE_NAMES.get(self.type, self.type)} page {self.space}:{self.page_no} " \
               f"({len(self.body)} bytes)"


def encode(rec: RedoRecord, single: bool = False) -> bytes:
    t = rec.type | (MLOG_SINGLE_REC_FLAG if single else 0)
    return _HDR.pack(t, rec.space, rec.page_no, len(rec.body)) + rec.body


def encode_mtr(recs: list[RedoRecord]) -> bytes:
    """The bytes of one mtr: a single flagged record, or records + MLOG_MULTI_REC_END."""
    assert recs
    if len(recs) == 1:
        return encode(recs[0], single=True)
    return b"".join(encode(r) for r in recs) + bytes([MLOG_MULTI_REC_END])


def parse_mtr(buf, pos: int) -> tuple[list[RedoRecord], int] | None:
    """Parse one complete mtr starting at ``buf[pos]``.

    Returns (records, end position), or None when the bytes end before the mtr is complete
    (recovery then discards the incomplete group, as recv_parse_log_recs does).

    Raises:
        RedoParseError: an unknown record type or an impossible length.
    """
    recs = []
    n = len(buf)
    while True:
        if pos >= n:
            return None
        t = buf[pos]
        if t == MLOG_MULTI_REC_END:
            if not recs:
                raise RedoParseError(f"MULTI_REC_END with no records at {pos}")
            return recs, pos + 1
        if pos + REC_HDR > n:
            return None
        t, space, page_no, ln = _HDR.unpack_from(buf, pos)
        single = bool(t & MLOG_SINGLE_REC_FLAG)
        t &= ~MLOG_SINGLE_REC_FLAG
        if t not in TYPE_NAMES:
            raise RedoParseError(f"unknown redo record type {t} at {pos}")
        if ln > 1 << 20:
            raise RedoParseError(f"redo record body of {ln} bytes at {pos}")
        if pos + REC_HDR + ln > n:
            return None
        recs.append(RedoRecord(t, space, page_no, bytes(buf[pos + REC_HDR:pos + REC_HDR + ln])))
        pos += REC_HDR + ln
        if single:
            if len(recs) != 1:
                raise RedoParseError(f"single-record flag inside a multi-record mtr at {pos}")
            return recs, pos


# -- record constructors ---------------------------------------------------------------------
def write_string(space: int, page_no: int, offset: int, data: bytes) -> RedoRecord:
    return RedoRecord(MLOG_WRITE_STRING, space, page_no, offset.to_bytes(2, "big") + data)


def page_init(space: int, page_no: int, ptype: int, level: int = 0,
              index_id: int = 0) -> RedoRecord:
    return RedoRecord(MLOG_PAGE_INIT, space, page_no, _PAGE_INIT.pack(ptype, level, index_id))


def file_record(rtype: int, space: int, *paths: str) -> RedoRecord:
    """MLOG_FILE_NAME / CREATE / DELETE (one path) or MLOG_FILE_RENAME (old, new)."""
    assert rtype in FILE_RECORD_TYPES and rtype != MLOG_CHECKPOINT
    assert len(paths) == (2 if rtype == MLOG_FILE_RENAME else 1)
    return RedoRecord(rtype, space, 0, b"\0".join(p.encode() for p in paths))


def checkpoint_marker(lsn: int) -> RedoRecord:
    """MLOG_CHECKPOINT carrying the checkpoint LSN it ends the file names of."""
    return RedoRecord(MLOG_CHECKPOINT, 0, 0, _KEY.pack(lsn))


def file_paths(rec: RedoRecord) -> list[str]:
    """The path(s) a file-level record names (two for MLOG_FILE_RENAME).

    Raises:
        RedoParseError: a body that is not the record's path(s) in UTF-8.
    """
    parts = rec.body.split(b"\0")
    want = 2 if rec.type == MLOG_FILE_RENAME else 1
    try:
        paths = [p.decode() for p in parts]
    except UnicodeDecodeError:
        paths = []
    if len(paths) != want or not all(paths):
        raise RedoParseError(f"{TYPE_NAMES[rec.type]} space {rec.space}: body {rec.body[:40]!r}"
                             f" is not {want} path(s)")
    return paths


def checkpoint_lsn(rec: RedoRecord) -> int:
    """The LSN an MLOG_CHECKPOINT record carries."""
    assert rec.type == MLOG_CHECKPOINT
    return _KEY.unpack(rec.body)[0] if len(rec.body) == _KEY.size else -1


def key_body(key: int) -> bytes:
    return _KEY.pack(key)


def encode_rec_list(recs: list[bytes]) -> bytes:
    return b"".join(len(r).to_bytes(2, "big") + r for r in recs)


def decode_rec_list(body: bytes) -> list[bytes]:
    """The records of an MLOG_LIST_END_COPY_CREATED body.

    Raises:
        RedoApplyError: a record shorter than a key or running past the body's end.
    """
    out, pos = [], 0
    while pos < len(body):
        n = int.from_bytes(body[pos:pos + 2], "big")
        if n < btr_page.KEY_LEN or pos + 2 + n > len(body):
            raise RedoApplyError(f"record of {n} bytes at {pos} of a {len(body)}-byte "
                                 f"record list")
        out.append(body[pos + 2:pos + 2 + n])
        pos += 2 + n
    return out


def _check_has_key(rec: RedoRecord) -> None:
    if len(rec.body) < btr_page.KEY_LEN:
        raise RedoApplyError(f"{rec.describe()}: a record shorter than its key")


def apply(frame: bytearray, rec: RedoRecord, page_size: int) -> None:
    """Apply ``rec`` to ``frame`` (the page LSN is the caller's business).

    Raises:
        RedoApplyError: the body does not fit the record type or the page.
        btr_page.PageLayoutError / undo.UndoLayoutError: the page cannot take the change
            (a wrong page image: corruption).  All three are engine.errors.LayoutError.
    """
    t, body = rec.type, rec.body
    want = _FIXED_BODY.get(t)
    if want is not None and len(body) != want:
        raise RedoApplyError(f"{rec.describe()}: body of {len(body)} bytes, the type takes "
                             f"{want}")
    if t == MLOG_WRITE_STRING:
        if len(body) < 2:
            raise RedoApplyError(f"{rec.describe()}: no offset")
        off = int.from_bytes(body[:2], "big")
        data = body[2:]
        if off + len(data) > len(frame):
            raise RedoApplyError(f"{rec.describe()}: writes [{off}, {off + len(data)}) past "
                                 f"the page end {len(frame)}")
        frame[off:off + len(data)] = data
    elif t == MLOG_PAGE_INIT:
        ptype, level, index_id = _PAGE_INIT.unpack(body)
        init_frame(frame, rec.space, rec.page_no, ptype)
        if ptype == FIL_PAGE_INDEX:
            btr_page.init(frame, level, index_id)
        elif ptype == FIL_PAGE_UNDO_LOG:
            undo.init_page(frame)
        elif ptype == FIL_PAGE_TYPE_RSEG:
            trx_sys.init_rseg(frame, page_size)
    elif t == MLOG_REC_INSERT:
        _check_has_key(rec)
        btr_page.insert_rec(frame, body)
    elif t == MLOG_REC_UPDATE_IN_PLACE:
        _check_has_key(rec)
        btr_page.update_rec(frame, body)
    elif t == MLOG_REC_DELETE:
        btr_page.delete_rec(frame, _KEY.unpack(body)[0])
    elif t == MLOG_LIST_END_DELETE:
        btr_page.list_end_delete(frame, _KEY.unpack(body)[0])
    elif t == MLOG_LIST_END_COPY_CREATED:
        btr_page.copy_recs_to_created(frame, decode_rec_list(body))
    elif t == MLOG_UNDO_INSERT:
        undo.append_rec(frame, body)
    elif t in FILE_RECORD_TYPES:
        raise RedoApplyError(f"{rec.describe()}: a file-level record changes no page")
    else:  # pragma: no cover - parse_mtr rejects unknown types
        raise RedoParseError(f"unknown redo record type {t}")
