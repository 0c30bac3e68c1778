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
"""
from __future__ import annotations

import bisect
import struct

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


class PageLayoutError(LayoutError):
    """A page whose record heap does not parse (raised by :func:`records` and ``_check``)."""


def init(frame: bytearray, level: int, index_id: int) -> None:
    put_u16(frame, PAGE_N_RECS, 0)
    put_u16(frame, PAGE_LEVEL, level)
    put_u64(frame, PAGE_INDEX_ID, index_id)
    put_u16(frame, PAGE_HEAP_TOP, PAGE_DATA)


def level(frame) -> int:
    return u16(frame, PAGE_LEVEL)


def n_recs(frame) -> int:
    return u16(frame, PAGE_N_RECS)


def capacity(page_size: int) -> int:
    """Bytes available for records (each costs len(payload) + 2)."""
    return page_size - FIL_PAGE_END_LSN_OLD_CHKSUM - PAGE_DATA


def free_space(frame) -> int:
    return len(frame) - FIL_PAGE_END_LSN_OLD_CHKSUM - u16(frame, PAGE_HEAP_TOP)


def rec_key(payload) -> int:
    return _KEY.unpack_from(payload, 0)[0]


def records(frame) -> list[bytes]:
    """Record payloads in key order.  O(records).

    Raises:
        PageLayoutError: the heap does not parse or the count disagrees with PAGE_N_RECS.
    """
    top = u16(frame, PAGE_HEAP_TOP)
    limit = len(frame) - FIL_PAGE_END_LSN_OLD_CHKSUM
    if not PAGE_DATA <= top <= limit:
        raise PageLayoutError(f"heap top {top} outside [{PAGE_DATA}, {limit}]")
    out = []
    mv = bytes(frame[PAGE_DATA:top])
    pos = 0
    end = len(mv)
    while pos < end:
        if pos + REC_LEN > end:
            raise PageLayoutError("record length field crosses the heap top")
        n = (mv[pos] << 8) | mv[pos + 1]
        if n < KEY_LEN or pos + REC_LEN + n > end:
            raise PageLayoutError(f"record of {n} bytes at {PAGE_DATA + pos} crosses the heap top")
        out.append(mv[pos + REC_LEN:pos + REC_LEN + n])
        pos += REC_LEN + n
    if len(out) != u16(frame, PAGE_N_RECS):
        raise PageLayoutError(f"{len(out)} records on page, PAGE_N_RECS says {n_recs(frame)}")
    return out


def write_records(frame: bytearray, recs: list[bytes]) -> None:
    """Replace the heap with ``recs`` (already in key order)."""
    parts = []
    for r in recs:
        parts.append(len(r).to_bytes(2, "big"))
        parts.append(r)
    heap = b"".join(parts)
    top = PAGE_DATA + len(heap)
    if top > len(frame) - FIL_PAGE_END_LSN_OLD_CHKSUM:
        raise PageLayoutError(f"records need {len(heap)} bytes, page has {capacity(len(frame))}")
    old_top = u16(frame, PAGE_HEAP_TOP)
    frame[PAGE_DATA:top] = heap
    if old_top > top:
        frame[top:old_top] = bytes(old_top - top)
    put_u16(frame, PAGE_N_RECS, len(recs))
    put_u16(frame, PAGE_HEAP_TOP, top)


def find(recs: list[bytes], key: int) -> int:
    """Index of the first record with key >= ``key``.  O(log n) key decodes."""
    keys = [rec_key(r) for r in recs]
    return bisect.bisect_left(keys, key)


def insert_rec(frame: bytearray, payload: bytes) -> None:
    recs = records(frame)
    key = rec_key(payload)
    i = find(recs, key)
    if i < len(recs) and rec_key(recs[i]) == key:
        raise PageLayoutError(f"duplicate key {key} on page")
    recs.insert(i, payload)
    write_records(frame, recs)


def update_rec(frame: bytearray, payload: bytes) -> None:
    recs = records(frame)
    key = rec_key(payload)
    i = find(recs, key)
    if i >= len(recs) or rec_key(recs[i]) != key:
        raise PageLayoutError(f"update of missing key {key}")
    recs[i] = payload
    write_records(frame, recs)


def delete_rec(frame: bytearray, key: int) -> None:
    recs = records(frame)
    i = find(recs, key)
    if i >= len(recs) or rec_key(recs[i]) != key:
        raise PageLayoutError(f"delete of missing key {key}")
    del recs[i]
    write_records(frame, recs)


def list_end_delete(frame: bytearray, key: int) -> None:
    """Delete every record with key >= ``key`` (page_delete_rec_list_end)."""
    recs = records(frame)
    write_records(frame, recs[:find(recs, key)])


def copy_recs_to_created(frame: bytearray, recs: list[bytes]) -> None:
    """Fill an empty page with ``recs`` (page_copy_rec_list_end_to_created_page)."""
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
    node pointers of the right length on non-leaf pages.

    Raises:
        PageLayoutError: an invariant does not hold.
    """
    if page_type(frame) != FIL_PAGE_INDEX:
        raise PageLayoutError(f"page type {page_type(frame)} is not INDEX")
    recs = records(frame)
    keys = [rec_key(r) for r in recs]
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
