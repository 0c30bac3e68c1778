"""System pages of the system tablespace: TRX_SYS, rollback segment headers and the data
dictionary header (trx/trx0sys.h, trx0rseg.h, dict/dict0boot.h; simplified).

System tablespace (space 0) page map, fixed at bootstrap:

    0                      FSP_HDR (engine.fsp)
    1   TRX_SYS_PAGE_NO    TRX_SYS: max trx id store, rollback segment directory,
                           doublewrite header
    2   DICT_HDR_PAGE_NO   DICT_HDR: tables (name, space id, root page)
    3 .. 3+R-1             rollback segment headers (R = n_rollback_segments)
    3+R .. 3+R+D-1         the doublewrite area (D = doublewrite_batch_pages batch slots, then
                           DBLWR_SINGLE_SLOTS single-page slots)
    then                   pages allocated on demand (undo log pages)

TRX_SYS body:
    38  8  TRX_SYS_TRX_ID_STORE   a trx id above every id assigned so far, written every
                                  TRX_SYS_TRX_ID_WRITE_MARGIN ids
    46  4  TRX_SYS_N_RSEGS
    50  4  TRX_SYS_DOUBLEWRITE_MAGIC
    54  4  TRX_SYS_DOUBLEWRITE_BLOCK1 (first page of the area)
    58  4  TRX_SYS_DOUBLEWRITE_PAGES  (pages in the area)
    62  4  TRX_SYS_DOUBLEWRITE_MAGIC repeated (in case this page is torn)
    66  4  TRX_SYS_DOUBLEWRITE_BLOCK1 repeated
    70  4  TRX_SYS_DOUBLEWRITE_PAGES repeated
    74  4xR rollback segment header page numbers

Rollback segment header body: TRX_RSEG_N_SLOTS (page size / 16) slots of 4 bytes at
TRX_RSEG_UNDO_SLOTS, each the header page of an undo log in use or FIL_NULL; then the history
list base node (trx0rseg.h TRX_RSEG_HISTORY): u32 length, u32 first (oldest) and u32 last
(newest) undo log header page, FIL_NULL when empty.  Committed undo logs join at the end in
commit order; purge takes them from the front.

DICT_HDR body: 38 u16 number of tables; 40 u32 the highest space id ever given to a table
(DICT_HDR_MAX_SPACE_ID: space ids are never reused, so redo of a dropped table's space can never
be taken for a newer table's); then entries [u8 name length][name][u32 space]
[u32 clustered index root][u32 secondary index (on k) root, FIL_NULL if none].
"""
from __future__ import annotations

import struct

from dataclasses import dataclass

from tornpage.engine.errors import Corruption
from tornpage.engine.page import FIL_NULL, FIL_PAGE_DATA, FIL_PAGE_END_LSN_OLD_CHKSUM, u16, u32, u64

TRX_SYS_SPACE = 0
FSP_HDR_PAGE_NO = 0
TRX_SYS_PAGE_NO = 1
DICT_HDR_PAGE_NO = 2
FIRST_RSEG_PAGE_NO = 3

TRX_SYS_TRX_ID_STORE = FIL_PAGE_DATA
TRX_SYS_N_RSEGS = FIL_PAGE_DATA + 8
TRX_SYS_DOUBLEWRITE = FIL_PAGE_DATA + 12
TRX_SYS_DOUBLEWRITE_REPEAT = TRX_SYS_DOUBLEWRITE + 12
TRX_SYS_RSEGS = FIL_PAGE_DATA + 36
TRX_SYS_DOUBLEWRITE_MAGIC_N = 536853855
TRX_SYS_TRX_ID_WRITE_MARGIN = 256

TRX_RSEG_UNDO_SLOTS = FIL_PAGE_DATA

DICT_HDR_N_TABLES = FIL_PAGE_DATA
DICT_HDR_MAX_SPACE_ID = FIL_PAGE_DATA + 2
DICT_HDR_TABLES = FIL_PAGE_DATA + 6


def n_slots(page_size: int) -> int:
    """Undo slots per rollback segment (TRX_RSEG_N_SLOTS = page size / 16)."""
    return page_size // 16


def doublewrite_first_page(n_rsegs: int) -> int:
    return FIRST_RSEG_PAGE_NO + n_rsegs


DBLWR_SINGLE_SLOTS = 2      # slots for single-page (LRU) flushes after the batch slots
DBLWR_MAX_PAGES = 64 + DBLWR_SINGLE_SLOTS   # the largest area: 64 batch slots (one InnoDB block)


def dblwr_area_pages(batch_pages: int) -> int:
    """Pages of the doublewrite area for ``batch_pages`` batch slots."""
    return batch_pages + DBLWR_SINGLE_SLOTS


def first_free_page(n_rsegs: int, dblwr_pages: int) -> int:
    return doublewrite_first_page(n_rsegs) + dblwr_pages


def rseg_slot_offset(slot: int) -> int:
    return TRX_RSEG_UNDO_SLOTS + 4 * slot


def rseg_slots(frame, page_size: int) -> list[int]:
    """The undo log header page of every slot (FIL_NULL: free), in slot order.  One
    ``struct.unpack_from`` of the slot array: O(slots) in C."""
    n = n_slots(page_size)
    return list(struct.unpack_from(f">{n}I", frame, TRX_RSEG_UNDO_SLOTS))


def rseg_history_offset(page_size: int) -> int:
    """Byte offset of the history list base node (length, first, last) in an rseg page."""
    return TRX_RSEG_UNDO_SLOTS + 4 * n_slots(page_size)


def rseg_history(frame, page_size: int) -> tuple[int, int, int]:
    """(length, first header page, last header page) of the rseg's history list."""
    off = rseg_history_offset(page_size)
    return u32(frame, off), u32(frame, off + 4), u32(frame, off + 8)


def encode_history(length: int, first: int, last: int) -> bytes:
    return length.to_bytes(4, "big") + first.to_bytes(4, "big") + last.to_bytes(4, "big")


def init_rseg(frame: bytearray, page_size: int) -> None:
    n = n_slots(page_size)
    frame[TRX_RSEG_UNDO_SLOTS:TRX_RSEG_UNDO_SLOTS + 4 * n] = FIL_NULL.to_bytes(4, "big") * n
    off = rseg_history_offset(page_size)
    frame[off:off + 12] = encode_history(0, FIL_NULL, FIL_NULL)


def doublewrite_header(first: int, pages: int) -> bytes:
    one = TRX_SYS_DOUBLEWRITE_MAGIC_N.to_bytes(4, "big") + first.to_bytes(4, "big") + \
        pages.to_bytes(4, "big")
    return one + one


def read_doublewrite_header(frame) -> tuple[int, int] | None:
    """(first page, pages) of the doublewrite area, from either copy whose magic is intact."""
    for off in (TRX_SYS_DOUBLEWRITE, TRX_SYS_DOUBLEWRITE_REPEAT):
        if len(frame) >= off + 12 and u32(frame, off) == TRX_SYS_DOUBLEWRITE_MAGIC_N:
            return u32(frame, off + 4), u32(frame, off + 8)
    return None


MAX_RSEGS = 127            # n_rollback_segments range (roll pointers keep 7 bits of rseg id)


@dataclass(frozen=True)
class SysGeometry:
    """What TRX_SYS fixes at creation: the rollback segment count (the rseg header pages are
    FIRST_RSEG_PAGE_NO ..) and the doublewrite area (first page, pages: batch slots +
    DBLWR_SINGLE_SLOTS)."""
    n_rsegs: int
    dblwr_first: int
    dblwr_pages: int


def read_geometry(frame, page_size: int) -> SysGeometry:
    """The :class:`SysGeometry` a verified TRX_SYS page records.

    Raises:
        Corruption: a rollback segment count outside 1..MAX_RSEGS, a directory entry that is
            not the rseg page the layout puts there, no doublewrite header, or an area that is
            not where the layout puts it (right after the rseg pages, DBLWR_SINGLE_SLOTS + 1 ..
            DBLWR_MAX_PAGES pages).
    """
    n = u32(frame, TRX_SYS_N_RSEGS)
    if not 1 <= n <= MAX_RSEGS or TRX_SYS_RSEGS + 4 * n > page_size - FIL_PAGE_END_LSN_OLD_CHKSUM:
        raise Corruption(f"TRX_SYS: {n} rollback segments (must be 1..{MAX_RSEGS})")
    for i in range(n):
        pno = u32(frame, TRX_SYS_RSEGS + 4 * i)
        if pno != FIRST_RSEG_PAGE_NO + i:
            raise Corruption(f"TRX_SYS: rollback segment {i} at page {pno}, the layout puts it "
                             f"at {FIRST_RSEG_PAGE_NO + i}")
    hdr = read_doublewrite_header(frame)
    if hdr is None:
        raise Corruption("TRX_SYS: no doublewrite header (magic number lost in both copies)")
    first, pages = hdr
    if first != doublewrite_first_page(n) or \
            not DBLWR_SINGLE_SLOTS < pages <= DBLWR_MAX_PAGES:
        raise Corruption(f"TRX_SYS: doublewrite area of {pages} pages at page {first}, the "
                         f"layout puts it at {doublewrite_first_page(n)} "
                         f"({DBLWR_SINGLE_SLOTS + 1}..{DBLWR_MAX_PAGES} pages)")
    return SysGeometry(n, first, pages)


def trx_id_store(frame) -> int:
    return u64(frame, TRX_SYS_TRX_ID_STORE)


def encode_dict(tables: list[tuple[str, int, int, int]], max_space_id: int = 0) -> bytes:
    """DICT_HDR body for ``(name, space, clustered root, secondary root or FIL_NULL)`` and the
    highest space id ever used (at least every table's)."""
    max_space_id = max([max_space_id] + [t[1] for t in tables])
    out = bytearray(len(tables).to_bytes(2, "big") + max_space_id.to_bytes(4, "big"))
    for name, space, root, sec_root in tables:
        nb = name.encode()
        assert len(nb) < 256
        out += bytes([len(nb)]) + nb + space.to_bytes(4, "big") + root.to_bytes(4, "big") + \
            sec_root.to_bytes(4, "big")
    return bytes(out)


def max_space_id(frame) -> int:
    """DICT_HDR_MAX_SPACE_ID: the highest space id ever given to a table."""
    return u32(frame, DICT_HDR_MAX_SPACE_ID)


def decode_dict(frame) -> list[tuple[str, int, int, int]]:
    """``(name, space, clustered root, secondary root or FIL_NULL)`` per table.

    Raises:
        Corruption: an entry runs past the page, a name is not UTF-8, or a space id is 0
            (the system tablespace's), repeated, or above DICT_HDR_MAX_SPACE_ID.
    """
    n = u16(frame, DICT_HDR_N_TABLES)
    top = max_space_id(frame)
    pos = DICT_HDR_TABLES
    limit = len(frame) - FIL_PAGE_END_LSN_OLD_CHKSUM
    out = []
    seen = {TRX_SYS_SPACE}
    for i in range(n):
        ln = frame[pos] if pos < limit else 0
        if pos + 1 + ln + 12 > limit:
            raise Corruption(f"data dictionary entry {i} of {n} runs past the page end")
        try:
            name = bytes(frame[pos + 1:pos + 1 + ln]).decode()
        except UnicodeDecodeError:
            raise Corruption(f"data dictionary entry {i}: the table name is not UTF-8") from None
        pos += 1 + ln
        space = u32(frame, pos)
        if space in seen:
            raise Corruption(f"data dictionary entry {i} ({name}): space id {space} is the "
                             f"system tablespace's or another table's")
        if space > top:
            raise Corruption(f"data dictionary entry {i} ({name}): space id {space} is above "
                             f"the highest ever given, {top}")
        seen.add(space)
        out.append((name, space, u32(frame, pos + 4), u32(frame, pos + 8)))
        pos += 12
    return out
