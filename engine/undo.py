"""Undo log pages and undo records (trx/trx0undo.h, trx0rec.h, simplified).

An undo log is a chain of UNDO_LOG pages in the system tablespace, linked by FIL_PAGE_PREV /
FIL_PAGE_NEXT.  Its first page (the header page) also carries the undo log segment header.

Every undo page:
    38  2  TRX_UNDO_PAGE_START   offset of the first undo record on this page
    40  2  TRX_UNDO_PAGE_FREE    first free byte
Header page only:
    42  2  TRX_UNDO_STATE        TRX_UNDO_ACTIVE / TRX_UNDO_TO_PURGE / TRX_UNDO_TO_FREE /
                                 TRX_UNDO_PREPARED
    44  8  TRX_UNDO_TRX_ID
    52  4  TRX_UNDO_LAST_PAGE    page number of the last page of the chain
    56  4  TRX_UNDO_N_RECS       undo records in the whole log (the next undo_no)
    60  1  TRX_UNDO_RSEG_ID
    61  8  TRX_UNDO_TRX_NO       the commit number (trx_no), once committed into the history
    69  4  TRX_UNDO_HISTORY_NEXT the next (newer) undo log in the rollback segment's history
                                 list, FIL_NULL for the last (InnoDB: TRX_UNDO_HISTORY_NODE)
    76     records start (TRX_UNDO_PAGE_HDR_END)

Undo record: ``[u16 length][payload]``; payload:
    type u8 | undo_no u32 | space id u32 | key u64 | (all but insert) old clustered record

Types (trx0rec.h): TRX_UNDO_INSERT_REC (the row did not exist: rollback removes it),
TRX_UNDO_UPD_EXIST_REC (an update of a live row: rollback restores the old record),
TRX_UNDO_UPD_DEL_REC (an insert over a delete-marked record of the same key: rollback restores
the delete-marked record), TRX_UNDO_DEL_MARK_REC (a delete, which only delete-marks the
record: rollback clears the mark; purge removes the record once no read view needs it).  The
old record carries its own DB_TRX_ID and DB_ROLL_PTR, so the undo records of one row form its
version chain (row0vers.cc), which consistent reads walk.

Life of an undo log: ACTIVE while its transaction runs; at commit either freed (TO_FREE: it
holds only insert records, which nobody reads after the commit) or, holding update records,
put at the end of its rollback segment's history list as TO_PURGE with its trx_no (the commit
order), where purge (engine.purge) finds it, removes the delete-marked records and secondary
index entries no read view needs, and frees it.  Simplification versus InnoDB: a transaction
keeps one undo log for inserts and updates alike (InnoDB keeps separate insert and update undo
logs).

Rollback pops the last record; the pop is redo-logged as a write of TRX_UNDO_PAGE_FREE (and of
the chain pointers when a page empties), so a crash during rollback resumes where it stopped.

Parsed-record cache (no on-disk change), as btr_page's: records carry no back links, so finding
a page's last record means walking the page from TRX_UNDO_PAGE_START, and a rollback that pops
a page's records one by one would walk it once per record, O(records^2) per page.
:func:`page_records` therefore keeps decoded record areas in a cache keyed by the bytes
themselves, ``(TRX_UNDO_PAGE_START, frame[start:free])``, at most CACHE_BYTES of area bytes, the
least recently stored dropped first.  A frame changed by any means simply has other bytes, so
there is nothing to invalidate.  A miss is first looked up among the last few areas decoded:
an area that is a prefix of one of them ending at one of its record boundaries (what a
rollback pop leaves) has that area's leading records, found by a binary search over their
offsets; otherwise it is decoded.  Invariants (``_check`` and ``_check_cache`` assert them):
an entry equals a fresh decode of the area it is filed under, only areas that decode are
cached, and entries are immutable (tuples), so a lookup returns and raises exactly what a
decode would.
"""
from __future__ import annotations

import bisect
import struct
from collections import deque

from tornpage.engine.bytecache import BoundedCache
from tornpage.engine.errors import LayoutError
from tornpage.engine.page import FIL_PAGE_DATA, FIL_PAGE_END_LSN_OLD_CHKSUM, u16, u32, u64

TRX_UNDO_PAGE_START = FIL_PAGE_DATA + 0
TRX_UNDO_PAGE_FREE = FIL_PAGE_DATA + 2
TRX_UNDO_STATE = FIL_PAGE_DATA + 4
TRX_UNDO_TRX_ID = FIL_PAGE_DATA + 6
TRX_UNDO_LAST_PAGE = FIL_PAGE_DATA + 14
TRX_UNDO_N_RECS = FIL_PAGE_DATA + 18
TRX_UNDO_RSEG_ID = FIL_PAGE_DATA + 22
TRX_UNDO_TRX_NO = FIL_PAGE_DATA + 23
TRX_UNDO_HISTORY_NEXT = FIL_PAGE_DATA + 31
TRX_UNDO_PAGE_HDR_END = FIL_PAGE_DATA + 38

TRX_UNDO_ACTIVE = 1
TRX_UNDO_TO_FREE = 3
TRX_UNDO_TO_PURGE = 4
TRX_UNDO_PREPARED = 5
STATE_NAMES = {TRX_UNDO_ACTIVE: "ACTIVE", TRX_UNDO_TO_FREE: "TO_FREE",
               TRX_UNDO_TO_PURGE: "TO_PURGE", TRX_UNDO_PREPARED: "PREPARED"}

TRX_UNDO_INSERT_REC = 11
TRX_UNDO_UPD_EXIST_REC = 12
TRX_UNDO_UPD_DEL_REC = 13
TRX_UNDO_DEL_MARK_REC = 14
UNDO_TYPE_NAMES = {TRX_UNDO_INSERT_REC: "insert", TRX_UNDO_UPD_EXIST_REC: "update",
                   TRX_UNDO_UPD_DEL_REC: "insert over delete-marked",
                   TRX_UNDO_DEL_MARK_REC: "delete-mark"}

_HDR = struct.Struct(">BIIQ")
UNDO_REC_HDR = _HDR.size


class UndoLayoutError(LayoutError):
    """An undo page whose records do not parse, or an undo record that does not fit it."""


def init_page(frame: bytearray) -> None:
    """Body of a fresh undo page: no records (header fields, if any, are written after)."""
    frame[TRX_UNDO_PAGE_START:TRX_UNDO_PAGE_START + 2] = TRX_UNDO_PAGE_HDR_END.to_bytes(2, "big")
    frame[TRX_UNDO_PAGE_FREE:TRX_UNDO_PAGE_FREE + 2] = TRX_UNDO_PAGE_HDR_END.to_bytes(2, "big")


def page_free(frame) -> int:
    return u16(frame, TRX_UNDO_PAGE_FREE)


def page_room(frame) -> int:
    return len(frame) - FIL_PAGE_END_LSN_OLD_CHKSUM - page_free(frame)


def append_rec(frame: bytearray, payload: bytes) -> int:
    """Append an undo record at TRX_UNDO_PAGE_FREE (MLOG_UNDO_INSERT); return its offset."""
    off = page_free(frame)
    end = off + 2 + len(payload)
    if end > len(frame) - FIL_PAGE_END_LSN_OLD_CHKSUM:
        raise UndoLayoutError(f"undo record of {len(payload)} bytes does not fit at {off}")
    frame[off:end] = len(payload).to_bytes(2, "big") + payload
    frame[TRX_UNDO_PAGE_FREE:TRX_UNDO_PAGE_FREE + 2] = end.to_bytes(2, "big")
    return off


CACHE_BYTES = 4 << 20      # record-area bytes whose decoding is kept (per process)
RECENT = 4                 # decoded areas a miss is compared with for the prefix lookup
# (TRX_UNDO_PAGE_START, record area) -> (records, offsets)
_cache = BoundedCache(CACHE_BYTES, size=lambda key: len(key[1]))
_recent: deque = deque(maxlen=RECENT)           # (start, area, records, offsets), newest last


def _decode(area: bytes, start: int, frame=None) -> tuple:
    """(records, offsets) of the record area ``area`` that starts at page offset ``start`` of
    ``frame``: records as ``(offset, payload)`` tuples, offsets their offsets.  O(records).

    Raises:
        UndoLayoutError: a record shorter than its header or crossing the area's end (the
            length it names read from ``frame`` when its length field crosses the end).
    """
    out = []
    pos = 0
    end = len(area)
    while pos < end:
        if pos + 2 <= end:
            n = (area[pos] << 8) | area[pos + 1]
        else:               # the length field crosses free: read on into the frame
            n = u16(frame, start + pos) if frame is not None else 0
        if n < UNDO_REC_HDR or pos + 2 + n > end:
            raise UndoLayoutError(f"undo record of {n} bytes at {start + pos} crosses free "
                                  f"{start + end}")
        out.append((start + pos, area[pos + 2:pos + 2 + n]))
        pos += 2 + n
    recs = tuple(out)
    return recs, tuple(off for off, _ in recs)


def _from_recent(start: int, area: bytes) -> tuple | None:
    """(records, offsets) of ``area`` taken from a recently decoded area it is a prefix of,
    ending at one of its record boundaries, or None.  O(RECENT) C-speed prefix compares plus
    O(log records)."""
    free = start + len(area)
    for s, a, recs, offs in reversed(_recent):
        if s == start and len(a) > len(area) and a.startswith(area):
            i = bisect.bisect_left(offs, free)
            if i < len(offs) and offs[i] == free:
                return recs[:i], offs[:i]
    return None


def clear_cache() -> None:
    """Drop every cached decoding (for tests and benchmarks: the cache is never stale)."""
    _cache.clear()
    _recent.clear()


def page_records(frame) -> list[tuple[int, bytes]]:
    """(offset, payload) of each undo record on the page, in order (a new list).  O(page
    size) C-speed copy and hash plus O(records) C-speed list copy on a cache hit (see
    "Parsed-record cache" above), O(records) Python steps on a miss.

    Raises:
        UndoLayoutError: TRX_UNDO_PAGE_START / TRX_UNDO_PAGE_FREE out of range, or a record
            crossing TRX_UNDO_PAGE_FREE.
    """
    pos = u16(frame, TRX_UNDO_PAGE_START)
    free = page_free(frame)
    limit = len(frame) - FIL_PAGE_END_LSN_OLD_CHKSUM
    if not TRX_UNDO_PAGE_HDR_END <= pos <= free <= limit:
        raise UndoLayoutError(f"undo page start {pos} / free {free} out of range")
    area = bytes(memoryview(frame)[pos:free])
    key = (pos, area)
    entry = _cache.get(key)
    if entry is None:
        entry = _from_recent(pos, area) or _decode(area, pos, frame)
        _cache.put(key, entry)
    _recent.append((pos, area) + entry)
    return list(entry[0])


def _check_cache() -> None:
    """Assert the cache's invariants (module docstring): every entry equal to a fresh decode
    of the area it is filed under, the byte count right and within CACHE_BYTES (unless one
    entry alone exceeds it).

    Raises:
        UndoLayoutError: an invariant does not hold.
    """
    for (start, area), entry in _cache.items():
        if _decode(area, start) != entry:
            raise UndoLayoutError("undo record cache entry differs from a decode of its area")
    problem = _cache.accounting_problem()
    if problem:
        raise UndoLayoutError(f"undo record cache {problem} area bytes")


def make_rec(rtype: int, undo_no: int, space: int, key: int, old_rec: bytes = b"") -> bytes:
    assert rtype in UNDO_TYPE_NAMES
    assert (rtype == TRX_UNDO_INSERT_REC) == (old_rec == b"")
    return _HDR.pack(rtype, undo_no, space, key) + old_rec


def parse_rec(payload: bytes) -> tuple[int, int, int, int, bytes]:
    """(type, undo_no, space, key, old clustered record or b"")."""
    if len(payload) < UNDO_REC_HDR:
        raise UndoLayoutError("short undo record")
    t, undo_no, space, key = _HDR.unpack_from(payload, 0)
    if t not in UNDO_TYPE_NAMES:
        raise UndoLayoutError(f"unknown undo record type {t}")
    return t, undo_no, space, key, payload[UNDO_REC_HDR:]


def header_state(frame) -> int:
    return u16(frame, TRX_UNDO_STATE)


def header_trx_id(frame) -> int:
    return u64(frame, TRX_UNDO_TRX_ID)


def header_last_page(frame) -> int:
    return u32(frame, TRX_UNDO_LAST_PAGE)


def header_n_recs(frame) -> int:
    return u32(frame, TRX_UNDO_N_RECS)


def header_trx_no(frame) -> int:
    return u64(frame, TRX_UNDO_TRX_NO)


def header_history_next(frame) -> int:
    return u32(frame, TRX_UNDO_HISTORY_NEXT)


def read_rec_at(frame, offset: int) -> bytes:
    """The payload of the undo record at byte ``offset`` of an undo page (what a roll pointer
    points at).

    Raises:
        UndoLayoutError: no record starts there (a dangling roll pointer).
    """
    start, free = u16(frame, TRX_UNDO_PAGE_START), page_free(frame)
    if not start <= offset < free:
        raise UndoLayoutError(f"roll pointer offset {offset} outside the records [{start}, "
                              f"{free})")
    n = u16(frame, offset)
    if n < UNDO_REC_HDR or offset + 2 + n > free:
        raise UndoLayoutError(f"undo record of {n} bytes at {offset} crosses free {free}")
    return bytes(frame[offset + 2:offset + 2 + n])


def _check(frame, header: bool) -> None:
    """Assert an undo page's invariants: its records parse, each with a known type, numbered
    consecutively; on a header page, a known state; a cached decoding of its records equal to
    a fresh one.

    Raises:
        UndoLayoutError: an invariant does not hold.
    """
    listed = page_records(frame)
    start, free = u16(frame, TRX_UNDO_PAGE_START), page_free(frame)
    if listed != list(_decode(bytes(frame[start:free]), start, frame)[0]):
        raise UndoLayoutError("the undo record cache disagrees with a fresh decode of the page")
    recs = [parse_rec(p) for _, p in listed]
    nos = [r[1] for r in recs]
    if any(b != a + 1 for a, b in zip(nos, nos[1:])):
        raise UndoLayoutError(f"undo record numbers not consecutive: {nos[:8]}")
    if header and header_state(frame) not in STATE_NAMES:
        raise UndoLayoutError(f"undo log state {header_state(frame)} unknown")


# -- roll pointers (trx0types.h: 1 bit insert flag, 7 bits rseg id, 4 bytes page, 2 bytes offset)
def make_roll_ptr(is_insert: bool, rseg_id: int, page_no: int, offset: int) -> bytes:
    assert 0 <= rseg_id < 128
    return bytes([(0x80 if is_insert else 0) | rseg_id]) + page_no.to_bytes(4, "big") + \
        offset.to_bytes(2, "big")


def parse_roll_ptr(rp: bytes) -> tuple[bool, int, int, int]:
    return bool(rp[0] & 0x80), rp[0] & 0x7F, int.from_bytes(rp[1:5], "big"), \
        int.from_bytes(rp[5:7], "big")


NULL_ROLL_PTR = make_roll_ptr(True, 0, 0, 0)
