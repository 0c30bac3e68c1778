"""File space header and free-page bitmap: page 0 of every tablespace (fsp/fsp0fsp.h,
simplified: one bitmap instead of extent descriptors and segment inodes).

Body of page 0:
    38  4  FSP_SPACE_ID
    42  4  FSP_PAGE_SIZE      bytes (InnoDB keeps it in FSP_SPACE_FLAGS)
    46  4  FSP_FREE_LIMIT     pages below this have been handed out at least once
    50  4  FSP_FIRST_FREE     the lowest page number the allocator may hand out
    54     FSP_BITMAP         one bit per page: 1 = in use

All changes are made in an mtr as MLOG_WRITE_STRING records, so allocation is crash-safe.
"""
from __future__ import annotations

from tornpage.engine.page import FIL_PAGE_DATA, FIL_PAGE_END_LSN_OLD_CHKSUM, u32

FSP_SPACE_ID = FIL_PAGE_DATA
FSP_PAGE_SIZE = FIL_PAGE_DATA + 4
FSP_FREE_LIMIT = FIL_PAGE_DATA + 8
FSP_FIRST_FREE = FIL_PAGE_DATA + 12
FSP_BITMAP = FIL_PAGE_DATA + 16


class SpaceFull(Exception):
    """The tablespace's bitmap has no free bit left."""


def max_pages(page_size: int) -> int:
    return (page_size - FIL_PAGE_END_LSN_OLD_CHKSUM - FSP_BITMAP) * 8


def header_bytes(space_id: int, page_size: int, free_limit: int, first_free: int) -> bytes:
    return b"".join(v.to_bytes(4, "big") for v in (space_id, page_size, free_limit, first_free))


def is_used(frame, page_no: int) -> bool:
    return bool(frame[FSP_BITMAP + page_no // 8] & (1 << (page_no % 8)))


def free_limit(frame) -> int:
    return u32(frame, FSP_FREE_LIMIT)


def used_pages(frame) -> list[int]:
    return [p for p in range(free_limit(frame)) if is_used(frame, p)]


def find_free(frame, page_size: int) -> int:
    """The lowest free page number (reusing freed pages first).  O(free_limit / 8).

    Raises:
        SpaceFull: every page the bitmap can describe is in use.
    """
    first = u32(frame, FSP_FIRST_FREE)
    limit = free_limit(frame)
    for byte_i in range(first // 8, (limit + 7) // 8):
        b = frame[FSP_BITMAP + byte_i]
        if b != 0xFF:
            for bit in range(8):
                p = byte_i * 8 + bit
                if p >= first and p < limit and not b & (1 << bit):
                    return p
    if limit >= max_pages(page_size):
        raise SpaceFull(f"tablespace full at {limit} pages")
    return limit


def bitmap_byte_after(frame, page_no: int, used: bool) -> tuple[int, bytes]:
    """(offset, new byte) that sets page_no's bit to ``used``."""
    off = FSP_BITMAP + page_no // 8
    b = frame[off]
    b = b | (1 << (page_no % 8)) if used else b & ~(1 << (page_no % 8))
    return off, bytes([b])
