"""The FIL page frame: header, trailer, page LSN and checksums (include/fil0types.h,
buf/buf0checksum.cc).

Layout of every page (P = page size, bytes; all integers big-endian):

    0    4  FIL_PAGE_SPACE_OR_CHKSUM   crc32c checksum
    4    4  FIL_PAGE_OFFSET            page number
    8    4  FIL_PAGE_PREV              B-tree / undo-page siblings (FIL_NULL if none)
    12   4  FIL_PAGE_NEXT
    16   8  FIL_PAGE_LSN               end LSN of the newest redo record applied to the page
    24   2  FIL_PAGE_TYPE
    26   8  FIL_PAGE_FILE_FLUSH_LSN    (unused here, always 0)
    34   4  FIL_PAGE_SPACE_ID
    38      FIL_PAGE_DATA              page body starts
    P-8  4  second checksum copy
    P-4  4  low 32 bits of FIL_PAGE_LSN

checksum = crc32c(page[4:26]) XOR crc32c(page[38:P-8]), stored at 0 and at P-8; a page is valid
only when both equal it (never "either", MDEV-27931; a stored 0 is not "empty", MySQL #73689).

Verification order (buf_page_is_corrupted): all-zero page → never written (valid, empty);
trailer LSN ≠ low 32 bits of the header LSN → torn; checksum mismatch → corrupt; page LSN newer
than the log end → from the future (a WAL violation); a valid page whose FIL_PAGE_OFFSET or
FIL_PAGE_SPACE_ID is not where it was read from → misplaced (a misdirected write put it there;
buf_page_io_complete's "page number mismatch" check).
"""
from __future__ import annotations

import struct

import crc32c as _crc

FIL_PAGE_SPACE_OR_CHKSUM = 0
FIL_PAGE_OFFSET = 4
FIL_PAGE_PREV = 8
FIL_PAGE_NEXT = 12
FIL_PAGE_LSN = 16
FIL_PAGE_TYPE = 24
FIL_PAGE_FILE_FLUSH_LSN = 26
FIL_PAGE_SPACE_ID = 34
FIL_PAGE_DATA = 38
FIL_PAGE_END_LSN_OLD_CHKSUM = 8   # trailer size; trailer starts at P - 8
FIL_NULL = 0xFFFFFFFF

# FIL_PAGE_TYPE values (InnoDB's numbers where they exist)
FIL_PAGE_INDEX = 17855
FIL_PAGE_UNDO_LOG = 2
FIL_PAGE_TYPE_ALLOCATED = 0
FIL_PAGE_TYPE_FSP_HDR = 8
FIL_PAGE_TYPE_SYS = 6
FIL_PAGE_TYPE_TRX_SYS = 7
FIL_PAGE_TYPE_RSEG = 60001        # InnoDB stores rollback segment headers in SYS pages
FIL_PAGE_TYPE_DICT_HDR = 60002    # InnoDB: SYS page 7 of the system tablespace

PAGE_TYPE_NAMES = {
    FIL_PAGE_INDEX: "INDEX", FIL_PAGE_UNDO_LOG: "UNDO_LOG", FIL_PAGE_TYPE_ALLOCATED: "ALLOCATED",
    FIL_PAGE_TYPE_FSP_HDR: "FSP_HDR", FIL_PAGE_TYPE_SYS: "SYS", FIL_PAGE_TYPE_TRX_SYS: "TRX_SYS",
    FIL_PAGE_TYPE_RSEG: "RSEG_HDR", FIL_PAGE_TYPE_DICT_HDR: "DICT_HDR",
}

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_U16 = struct.Struct(">H")

# verification verdicts
PAGE_OK, PAGE_ZERO, PAGE_TORN, PAGE_BAD_CHECKSUM, PAGE_FROM_FUTURE, PAGE_SHORT = (
    "ok", "all-zero", "torn", "bad-checksum", "from-the-future", "short")
PAGE_MISPLACED = "misplaced"


def u16(b, off: int) -> int:
    return _U16.unpack_from(b, off)[0]


def u32(b, off: int) -> int:
    return _U32.unpack_from(b, off)[0]


def u64(b, off: int) -> int:
    return _U64.unpack_from(b, off)[0]


def put_u16(b: bytearray, off: int, v: int) -> None:
    _U16.pack_into(b, off, v)


def put_u32(b: bytearray, off: int, v: int) -> None:
    _U32.pack_into(b, off, v)


def put_u64(b: bytearray, off: int, v: int) -> None:
    _U64.pack_into(b, off, v)


def page_checksum(page) -> int:
    """crc32c(page[4:26]) XOR crc32c(page[38:P-8]) (buf_calc_page_crc32)."""
    n = len(page)
    mv = memoryview(page)
    return _crc.crc32c(mv[FIL_PAGE_OFFSET:FIL_PAGE_FILE_FLUSH_LSN]) ^ _crc.crc32c(
        mv[FIL_PAGE_DATA:n - FIL_PAGE_END_LSN_OLD_CHKSUM])


def page_lsn(page) -> int:
    return u64(page, FIL_PAGE_LSN)


def page_no(page) -> int:
    return u32(page, FIL_PAGE_OFFSET)


def page_space(page) -> int:
    return u32(page, FIL_PAGE_SPACE_ID)


def page_type(page) -> int:
    return u16(page, FIL_PAGE_TYPE)


def init_frame(frame: bytearray, space: int, page_no_: int, ptype: int) -> None:
    """Zero the frame and write a fresh FIL header (siblings FIL_NULL, LSN 0)."""
    frame[:] = bytes(len(frame))
    put_u32(frame, FIL_PAGE_OFFSET, page_no_)
    put_u32(frame, FIL_PAGE_PREV, FIL_NULL)
    put_u32(frame, FIL_PAGE_NEXT, FIL_NULL)
    put_u16(frame, FIL_PAGE_TYPE, ptype)
    put_u32(frame, FIL_PAGE_SPACE_ID, space)


def stamp_for_write(frame, lsn: int) -> bytes:
    """The image to write to disk (buf_flush_init_for_writing): header and trailer LSN set to
    ``lsn`` and both checksum fields filled.  Returns a new ``bytes`` of the page size."""
    img = bytearray(frame)
    n = len(img)
    put_u64(img, FIL_PAGE_LSN, lsn)
    put_u32(img, n - 4, lsn & 0xFFFFFFFF)
    c = page_checksum(img)
    put_u32(img, FIL_PAGE_SPACE_OR_CHKSUM, c)
    put_u32(img, n - FIL_PAGE_END_LSN_OLD_CHKSUM, c)
    return bytes(img)


def verify(page, page_size: int, log_end_lsn: int | None = None,
           expect: tuple[int, int] | None = None) -> str:
    """Classify a page read from disk: one of PAGE_OK, PAGE_ZERO, PAGE_SHORT, PAGE_TORN,
    PAGE_BAD_CHECKSUM, PAGE_FROM_FUTURE, PAGE_MISPLACED (in InnoDB's order, see the module
    docstring).  ``expect`` is the (space id, page number) it was read from, when known."""
    if len(page) != page_size:
        return PAGE_ZERO if not any(page) else PAGE_SHORT
    if not any(page):
        return PAGE_ZERO
    if u32(page, page_size - 4) != (u64(page, FIL_PAGE_LSN) & 0xFFFFFFFF):
        return PAGE_TORN
    c = page_checksum(page)
    if u32(page, FIL_PAGE_SPACE_OR_CHKSUM) != c or u32(page, page_size - 8) != c:
        return PAGE_BAD_CHECKSUM
    if log_end_lsn is not None and u64(page, FIL_PAGE_LSN) > log_end_lsn:
        return PAGE_FROM_FUTURE
    if expect is not None and (u32(page, FIL_PAGE_SPACE_ID), u32(page, FIL_PAGE_OFFSET)) \
            != expect:
        return PAGE_MISPLACED
    return PAGE_OK
