"""Index pages: the on-disk layout of a B+tree node (page/page0page.h, simplified).

Body layout (offsets in bytes from the page start; integers big-endian):

    38  2  PAGE_N_RECS     number of user records
    40  2  PAGE_LEVEL      0 for a leaf
    42  8  PAGE_INDEX_ID
    50  2  PAGE_HEAP_TOP   first free byte after the record heap
    52  4  (reserved)
    56     PAGE_DATA       records, in ascending key order, back to back

Each record is ``[u16 length][payload]`` where ``payload`` starts with the 8-byte big-endian key
(so bytewise order is key order).  Simplification versus InnoDB: records are kept physically
sorted (no page directory, no infimum/supremum records); a node pointer's key of the leftmost
child acts as minus infinity, as InnoDB's REC_INFO_MIN_REC_FLAG does.

Leaf (clustered index) record payload:
    key u64 | info_bits u8 | DB_TRX_ID u48 | DB_ROLL_PTR 7 bytes | value bytes
Leaf (secondary index) record payload, for the index on a row's ``k`` (a u32, the value's
first 4 bytes, as sysbench's ``k`` column):
    key u64 = k << 32 | primary key (u32) | info_bits u8
Node pointer payload:
    key u64 | child page number u32

info_bits: REC_INFO_DELETED_FLAG (0x20, as InnoDB) marks a delete-marked record, which
consistent reads still see through its version chain and purge removes.  A secondary index's
PAGE_INDEX_ID carries SECONDARY_INDEX_FLAG, so a page tells which record format it holds.

The page is modified only through redo record application (:mod:`engine.mtr_log`), so the
running engine and recovery change pages with the same code.

Parsed-page cache (no on-disk change).  Decoding the heap costs O(records) Python steps, and
every read and every record change needs it, so this module keeps decoded heaps in a cache
keyed by the heap bytes themselves, ``frame[PAGE_DATA:PAGE_HEAP_TOP]``: a :class:`ParsedPage`
(those bytes, the record payloads and their keys), at most CACHE_BYTES of heap bytes (an
entry takes about three times its heap bytes of memory), the least recently stored (decoded or
written) dropped first.  A lookup copies and hashes the heap (C speed, well under a
microsecond for 4 KiB) instead of decoding it.  Keyed by content rather than by frame, the
cache serves every frame holding the same heap: recovery reads the same page images over and
over (with a cache keyed by frame, a 24-workload campaign still decoded 15,807 heaps, only 110
of them distinct), and a frame changed by any means -- a redo record through
:func:`engine.mtr_log.apply`, MLOG_PAGE_INIT or MLOG_WRITE_STRING, recovery reading a fresh
image, a test or a fault writing bytes directly -- simply has other heap bytes, so there is no
invalidation to forget.  Invariants (``_check``
and ``_check_cache`` assert them):

  * an entry equals a fresh decode of the heap bytes it is filed under, and only heaps that
    decode are cached; PAGE_HEAP_TOP's bounds and the PAGE_N_RECS count are checked on every
    lookup, so a cached read returns and raises exactly what a decode would;
  * entries are immutable (tuples); a record change builds the new heap bytes with C-speed
    slicing from the entry, writes them to the frame exactly as a full re-encode
    (:func:`write_records`) would, byte for byte, and caches the new entry.

Frame hints.  Copying and hashing the heap is most of a lookup's cost, and the same frame is
looked up again and again (a descent and the change that follows it, every redo record applied
to one page in recovery).  So :func:`parsed` also remembers, per frame object (by ``id``), the
entry it last returned or stored for it, at most HINTS of them: a hint is used only when the
frame's heap is still byte for byte that entry's heap (PAGE_HEAP_TOP agrees and one C-speed
compare, no copy, no hash), so it is only a faster way to the same entry the content key finds,
whatever happened to the frame (or whichever object now has that ``id``).

The record changes keep their redo-apply seams (:func:`insert_rec`, :func:`update_rec`,
:func:`delete_rec`, :func:`list_end_delete`, :func:`copy_recs_to_created`); each costs one
binary search over the cached keys plus O(page size) bytes copied in C.
"""
from __future__ import annotations

import bisect
import struct

from tornpage.engine.bytecache import BoundedCache
from tornpage.engine.errors import LayoutError
from tornpage.engine.page import (FIL_PAGE_DATA, FIL_PAGE_END_LSN_OLD_CHKSUM, FIL_PAGE_INDEX, u16,
                         put_u16, put_u64, page_type)

PAGE_N_RECS = FIL_PAGE_DATA + 0
PAGE_LEVEL = FIL_PAGE_DATA + 2
PAGE_INDEX_ID = FIL_PAGE_DATA + 4
PAGE_HEAP_TOP = FIL_PAGE_DATA + 12
PAGE_DATA = FIL_PAGE_DATA + 18
REC_LEN = 2
KEY_LEN = 8
TRX_ID_LEN = 6
ROLL_PTR_LEN = 7
REC_INFO = KEY_LEN
REC_TRX_ID = KEY_LEN + 1
REC_ROLL_PTR = REC_TRX_ID + TRX_ID_LEN
REC_VALUE = REC_ROLL_PTR + ROLL_PTR_LEN
NODE_PTR_LEN = KEY_LEN + 4
SEC_REC_LEN = KEY_LEN + 1
REC_INFO_DELETED_FLAG = 0x20
SECONDARY_INDEX_FLAG = 1 << 40      # in PAGE_INDEX_ID: the page belongs to a secondary index

_KEY = struct.Struct(">Q")
_u16 = struct.Struct(">H").unpack_from


class PageLayoutError(LayoutError):
    """A page whose record heap does not parse (raised by :func:`records` and ``_check``)."""


def init(frame: bytearray, level: int, index_id: int) -> None:
    put_u16(frame, PAGE_N_RECS, 0)
    put_u16(frame, PAGE_LEVEL, level)
    put_u64(frame, PAGE_INDEX_ID, index_id)
    put_u16(frame, PAGE_HEAP_TOP, PAGE_DATA)


def level(frame) -> int:
    return _u16(frame, PAGE_LEVEL)[0]


def n_recs(frame) -> int:
    return u16(frame, PAGE_N_RECS)


def capacity(page_size: int) -> int:
    """Bytes available for records (each costs len(payload) + 2)."""
    return page_size - FIL_PAGE_END_LSN_OLD_CHKSUM - PAGE_DATA


def free_space(frame) -> int:
    return len(frame) - FIL_PAGE_END_LSN_OLD_CHKSUM - u16(frame, PAGE_HEAP_TOP)


def rec_key(payload) -> int:
    return _KEY.unpack_from(payload, 0)[0]


class ParsedPage:
    """A decoded record heap (see "Parsed-page cache" above).  Immutable (``ascending``, a
    property of ``keys``, is only filled in when first asked).

    Attributes:
        heap: the heap bytes, ``frame[PAGE_DATA:PAGE_HEAP_TOP]`` of the page it describes.
        recs: record payloads in heap order (a tuple of bytes).
        keys: their keys, ``keys[i] == rec_key(recs[i])`` (a tuple of int).
    """
    __slots__ = ("heap", "recs", "keys", "ascending")

    def __init__(self, heap: bytes, recs: tuple, keys: tuple) -> None:
        self.heap = heap
        self.recs = recs
        self.keys = keys
        self.ascending: bool | None = None      # keys in ascending order (see keys_ascending)


def keys_ascending(pp: ParsedPage) -> bool:
    """Whether ``pp``'s keys never decrease (every intact page's keys strictly ascend), so a
    binary search over them finds what a walk in page order finds.  O(records log records)
    in C the first time for an entry, O(1) after."""
    if pp.ascending is None:
        keys = pp.keys
        pp.ascending = list(keys) == sorted(keys)
    return pp.ascending


CACHE_BYTES = 8 << 20       # heap bytes whose decoding is kept (per process)
_cache = BoundedCache(CACHE_BYTES)       # heap bytes -> their decoding, oldest stored first


HINTS = 512                 # frames whose last entry is remembered (per process)
_hints: dict[int, ParsedPage] = {}       # id(frame) -> the entry last used for it


def _hint(frame, pp: ParsedPage | None) -> None:
    """Remember ``pp`` as ``frame``'s entry (None: forget it)."""
    if pp is None:
        _hints.pop(id(frame), None)
        return
    _hints[id(frame)] = pp
    if len(_hints) > HINTS:
        del _hints[next(iter(_hints))]


def _hinted(frame, top: int) -> ParsedPage | None:
    """``frame``'s hint when its heap, ``frame[PAGE_DATA:top]``, is still the hint's heap."""
    pp = _hints.get(id(frame))
    if pp is not None and len(pp.heap) == top - PAGE_DATA and type(frame) is bytearray and \
            frame.startswith(pp.heap, PAGE_DATA):
        return pp
    return None


def _remember(pp: ParsedPage) -> None:
    _cache.put(pp.heap, pp)


def clear_cache() -> None:
    """Drop every cached decoding (for tests and benchmarks: the cache is never stale)."""
    _cache.clear()
    _hints.clear()


def _heap_top(frame) -> int:
    """PAGE_HEAP_TOP, checked to lie within the record area.

    Raises:
        PageLayoutError: it does not.
    """
    top = u16(frame, PAGE_HEAP_TOP)
    limit = len(frame) - FIL_PAGE_END_LSN_OLD_CHKSUM
    if not PAGE_DATA <= top <= limit:
        raise PageLayoutError(f"heap top {top} outside [{PAGE_DATA}, {limit}]")
    return top


def _decode_heap(heap: bytes) -> ParsedPage:
    """Decode heap bytes.  O(records).

    Raises:
        PageLayoutError: a record length field or record crosses the end of ``heap``.
    """
    recs = []
    keys = []
    unpack = _KEY.unpack_from
    pos = 0
    end = len(heap)
    while pos < end:
        if pos + REC_LEN > end:
            raise PageLayoutError("record length field crosses the heap top")
        n = (heap[pos] << 8) | heap[pos + 1]
        s = pos + REC_LEN
        if n < KEY_LEN or s + n > end:
            raise PageLayoutError(f"record of {n} bytes at {PAGE_DATA + pos} crosses the heap top")
        recs.append(heap[s:s + n])
        keys.append(unpack(heap, s)[0])
        pos = s + n
    return ParsedPage(heap, tuple(recs), tuple(keys))


def _check_count(frame, pp: ParsedPage) -> ParsedPage:
    if len(pp.recs) != u16(frame, PAGE_N_RECS):
        raise PageLayoutError(f"{len(pp.recs)} records on page, PAGE_N_RECS says {n_recs(frame)}")
    return pp


def _decode(frame) -> ParsedPage:
    """Decode ``frame``'s heap from its bytes, ignoring the cache.  O(records).

    Raises:
        PageLayoutError: the heap does not parse or the count disagrees with PAGE_N_RECS.
    """
    top = _heap_top(frame)
    return _check_count(frame, _decode_heap(bytes(frame[PAGE_DATA:top])))


def parsed(frame) -> ParsedPage:
    """The decoded heap of ``frame``: from the frame's hint while its heap is unchanged (one
    C-speed compare), else from the cache when these heap bytes were decoded (or written)
    before (a C-speed copy and hash), else decoded and cached; O(1) Python steps but on a miss,
    O(records); raises exactly what a decode would.

    Raises:
        PageLayoutError: the heap does not parse or the count disagrees with PAGE_N_RECS.
    """
    top = _u16(frame, PAGE_HEAP_TOP)[0]
    if not PAGE_DATA <= top <= len(frame) - FIL_PAGE_END_LSN_OLD_CHKSUM:
        _heap_top(frame)                    # raises
    pp = _hinted(frame, top)
    if pp is None:
        heap = bytes(memoryview(frame)[PAGE_DATA:top])
        pp = _cache.get(heap)
        if pp is None:
            pp = _decode_heap(heap)
            _remember(pp)
        _hint(frame, pp)
    if len(pp.recs) != _u16(frame, PAGE_N_RECS)[0]:
        _check_count(frame, pp)             # raises
    return pp


def records(frame) -> list[bytes]:
    """Record payloads in key order (a new list).  O(records) C-speed copy on a cache hit.

    Raises:
        PageLayoutError: the heap does not parse or the count disagrees with PAGE_N_RECS.
    """
    return list(parsed(frame).recs)


def _encode(recs) -> bytes:
    parts = []
    for r in recs:
        parts.append(len(r).to_bytes(2, "big"))
        parts.append(r)
    return b"".join(parts)


def _store(frame: bytearray, heap: bytes, recs: tuple, keys: tuple | None) -> None:
    """Write ``heap`` (the encoding of ``recs``) as the frame's record heap: PAGE_N_RECS,
    PAGE_HEAP_TOP, the freed tail zeroed; byte for byte what a full re-encode writes.  Caches
    the decoding when ``keys`` are given (every record decodes: none shorter than a key);
    otherwise the next read decodes, and raises, afresh.

    Raises:
        PageLayoutError: the heap does not fit (the frame is unchanged).
    """
    top = PAGE_DATA + len(heap)
    if top > len(frame) - FIL_PAGE_END_LSN_OLD_CHKSUM:
        raise PageLayoutError(f"records need {len(heap)} bytes, page has {capacity(len(frame))}")
    old_top = u16(frame, PAGE_HEAP_TOP)
    frame[PAGE_DATA:top] = heap
    if old_top > top:
        frame[top:old_top] = bytes(old_top - top)
    put_u16(frame, PAGE_N_RECS, len(recs))
    put_u16(frame, PAGE_HEAP_TOP, top)
    if keys is not None:
        pp = ParsedPage(heap, recs, keys)
        _remember(pp)
        _hint(frame, pp)
    else:
        _hint(frame, None)


def write_records(frame: bytearray, recs: list[bytes]) -> None:
    """Replace the heap with ``recs`` (already in key order).  O(records).

    Raises:
        PageLayoutError: they do not fit (the frame is unchanged).
    """
    recs = tuple(bytes(r) for r in recs)
    heap = _encode(recs)
    keys = tuple(rec_key(r) for r in recs) if all(len(r) >= KEY_LEN for r in recs) else None
    _store(frame, heap, recs, keys)


def find(recs, key: int) -> int:
    """Index of the first record of ``recs`` (payloads in key order) with key >= ``key``.
    O(log n) key decodes (binary search)."""
    return bisect.bisect_left(recs, key, key=rec_key)


def lookup(frame, key: int) -> bytes | None:
    """The payload of the record with ``key`` on ``frame``, or None.  O(log n) on a cache hit.

    Raises:
        PageLayoutError: the heap does not parse.
    """
    pp = parsed(frame)
    keys = pp.keys
    i = bisect.bisect_left(keys, key)
    if i < len(keys) and keys[i] == key:
        return pp.recs[i]
    return None


def _offset(pp: ParsedPage, i: int) -> int:
    """Byte offset in ``pp.heap`` of record ``i`` (its length field).  O(records), C-speed."""
    recs = pp.recs
    n = len(recs)
    if i <= n // 2:
        return sum(map(len, recs[:i])) + REC_LEN * i
    return len(pp.heap) - sum(map(len, recs[i:])) - REC_LEN * (n - i)


def insert_rec(frame: bytearray, payload: bytes) -> None:
    """MLOG_REC_INSERT: insert ``payload`` at its key's place.  O(log n) + O(page) in C.

    Raises:
        PageLayoutError: the heap does not parse, the key is on the page, or it does not fit.
    """
    pp = parsed(frame)
    key = rec_key(payload)
    keys = pp.keys
    i = bisect.bisect_left(keys, key)
    if i < len(keys) and keys[i] == key:
        raise PageLayoutError(f"duplicate key {key} on page")
    payload = bytes(payload)
    off = _offset(pp, i)
    heap = pp.heap
    _store(frame, b"".join((heap[:off], len(payload).to_bytes(2, "big"), payload, heap[off:])),
           pp.recs[:i] + (payload,) + pp.recs[i:], keys[:i] + (key,) + keys[i:])


def update_rec(frame: bytearray, payload: bytes) -> None:
    """MLOG_REC_UPDATE_IN_PLACE: replace the record with ``payload``'s key.  O(log n) + O(page).

    Raises:
        PageLayoutError: the heap does not parse, the key is missing, or it does not fit.
    """
    pp = parsed(frame)
    key = rec_key(payload)
    keys = pp.keys
    i = bisect.bisect_left(keys, key)
    if i >= len(keys) or keys[i] != key:
        raise PageLayoutError(f"update of missing key {key}")
    payload = bytes(payload)
    off = _offset(pp, i)
    heap = pp.heap
    old_end = off + REC_LEN + len(pp.recs[i])
    _store(frame, b"".join((heap[:off], len(payload).to_bytes(2, "big"), payload,
                            heap[old_end:])),
           pp.recs[:i] + (payload,) + pp.recs[i + 1:], keys)


def delete_rec(frame: bytearray, key: int) -> None:
    """MLOG_REC_DELETE: remove the record with ``key``.  O(log n) + O(page).

    Raises:
        PageLayoutError: the heap does not parse or the key is missing.
    """
    pp = parsed(frame)
    keys = pp.keys
    i = bisect.bisect_left(keys, key)
    if i >= len(keys) or keys[i] != key:
        raise PageLayoutError(f"delete of missing key {key}")
    off = _offset(pp, i)
    heap = pp.heap
    _store(frame, heap[:off] + heap[off + REC_LEN + len(pp.recs[i]):],
           pp.recs[:i] + pp.recs[i + 1:], keys[:i] + keys[i + 1:])


def list_end_delete(frame: bytearray, key: int) -> None:
    """Delete every record with key >= ``key`` (page_delete_rec_list_end).  O(log n) + O(page).

    Raises:
        PageLayoutError: the heap does not parse.
    """
    pp = parsed(frame)
    i = bisect.bisect_left(pp.keys, key)
    _store(frame, pp.heap[:_offset(pp, i)], pp.recs[:i], pp.keys[:i])


def copy_recs_to_created(frame: bytearray, recs: list[bytes]) -> None:
    """Fill an empty page with ``recs`` (page_copy_rec_list_end_to_created_page).

    Raises:
        PageLayoutError: the page is not empty, or they do not fit.
    """
    if n_recs(frame):
        raise PageLayoutError("copy into a non-empty page")
    write_records(frame, recs)


# -- record payload helpers ----------------------------------------------------------------------
def make_leaf_rec(key: int, trx_id: int, roll_ptr: bytes, value: bytes, info: int = 0) -> bytes:
    assert len(roll_ptr) == ROLL_PTR_LEN and 0 <= trx_id < 1 << 48
    return _KEY.pack(key) + bytes([info]) + trx_id.to_bytes(6, "big") + roll_ptr + value


def leaf_trx_id(payload) -> int:
    return int.from_bytes(payload[REC_TRX_ID:REC_TRX_ID + TRX_ID_LEN], "big")


def leaf_roll_ptr(payload) -> bytes:
    return bytes(payload[REC_ROLL_PTR:REC_ROLL_PTR + ROLL_PTR_LEN])


def leaf_value(payload) -> bytes:
    return bytes(payload[REC_VALUE:])


def live_values(keys, recs) -> dict[int, bytes]:
    """key → :func:`leaf_value` of each clustered leaf record in ``recs`` (``keys[i]`` the key
    of ``recs[i]``, bytes payloads) that is not delete-marked, later records winning.
    O(records), one C-speed slice each."""
    return {k: r[REC_VALUE:] for k, r in zip(keys, recs)
            if not r[REC_INFO] & REC_INFO_DELETED_FLAG}


def is_delete_marked(payload) -> bool:
    return bool(payload[REC_INFO] & REC_INFO_DELETED_FLAG)


def with_delete_mark(payload, marked: bool) -> bytes:
    """``payload`` with REC_INFO_DELETED_FLAG set or cleared (everything else unchanged)."""
    info = payload[REC_INFO] | REC_INFO_DELETED_FLAG if marked else \
        payload[REC_INFO] & ~REC_INFO_DELETED_FLAG
    return bytes(payload[:REC_INFO]) + bytes([info]) + bytes(payload[REC_INFO + 1:])


def sec_key(k: int, pk: int) -> int:
    """The secondary index key of (k, primary key): both u32, ordered by k then pk."""
    assert 0 <= k < 1 << 32 and 0 <= pk < 1 << 32, (k, pk)
    return k << 32 | pk


def sec_key_parts(key: int) -> tuple[int, int]:
    """(k, primary key) of a secondary index key."""
    return key >> 32, key & 0xFFFFFFFF


def make_sec_rec(k: int, pk: int, delete_marked: bool = False) -> bytes:
    return _KEY.pack(sec_key(k, pk)) + bytes([REC_INFO_DELETED_FLAG if delete_marked else 0])


def is_secondary(frame) -> bool:
    return bool(int.from_bytes(frame[PAGE_INDEX_ID:PAGE_INDEX_ID + 8], "big") &
                SECONDARY_INDEX_FLAG)


def make_node_ptr(key: int, child: int) -> bytes:
    return _KEY.pack(key) + child.to_bytes(4, "big")


def node_child(payload) -> int:
    return int.from_bytes(payload[KEY_LEN:KEY_LEN + 4], "big")


def _check(frame) -> None:
    """Assert the page's invariants: INDEX type, parseable heap, strictly ascending keys,
    node pointers of the right length on non-leaf pages, and a cache entry that is used for
    the frame equal to a fresh decode of it.

    Raises:
        PageLayoutError: an invariant does not hold.
    """
    if page_type(frame) != FIL_PAGE_INDEX:
        raise PageLayoutError(f"page type {page_type(frame)} is not INDEX")
    fresh = _decode(frame)
    for pp in (_cache.get(fresh.heap), _hinted(frame, PAGE_DATA + len(fresh.heap))):
        if pp is not None and (pp.heap, pp.recs, pp.keys) != \
                (fresh.heap, fresh.recs, fresh.keys):
            raise PageLayoutError("the parsed-page cache disagrees with a fresh decode of the "
                                  "page")
    recs = fresh.recs
    keys = fresh.keys
    if any(a >= b for a, b in zip(keys, keys[1:])):
        raise PageLayoutError(f"keys not strictly ascending: {keys}")
    if level(frame) > 0:
        for r in recs:
            if len(r) != NODE_PTR_LEN:
                raise PageLayoutError(f"node pointer of {len(r)} bytes")
    elif is_secondary(frame):
        for r in recs:
            if len(r) != SEC_REC_LEN:
                raise PageLayoutError(f"secondary index record of {len(r)} bytes")
    else:
        for r in recs:
            if len(r) < REC_VALUE:
                raise PageLayoutError(f"leaf record of {len(r)} bytes")


def _check_cache() -> None:
    """Assert the cache's invariants (module docstring): every entry filed under its own heap
    bytes and equal to a fresh decode of them, the byte count right and within CACHE_BYTES
    (unless one entry alone exceeds it); every frame hint equal to a fresh decode of its heap,
    at most HINTS of them.

    Raises:
        PageLayoutError: an invariant does not hold.
    """
    for heap, pp in _cache.items():
        fresh = _decode_heap(heap)
        if pp.heap != heap or (fresh.recs, fresh.keys) != (pp.recs, pp.keys):
            raise PageLayoutError("parsed-page cache entry differs from a decode of its heap")
    for pp in _hints.values():
        fresh = _decode_heap(pp.heap)
        if (fresh.recs, fresh.keys) != (pp.recs, pp.keys):
            raise PageLayoutError("a frame hint differs from a decode of its heap")
    if len(_hints) > HINTS:
        raise PageLayoutError(f"{len(_hints)} frame hints, at most {HINTS}")
    problem = _cache.accounting_problem()
    if problem:
        raise PageLayoutError(f"parsed-page cache {problem} heap bytes")
