"""The parsed-record cache of engine/undo.py (issue #10, "Speed").

The cache must be invisible: :func:`undo.page_records` returns and raises exactly what the
pre-cache walk of the page (kept below as the reference) returns and raises, whatever the
frame went through, and ``_check_cache`` holds after every operation.  A stress test appends,
pops (as rollback does), corrupts and re-reads random pages against the reference.
"""
from __future__ import annotations

import random

import pytest

from tornpage.engine import page as P
from tornpage.engine import undo

PS = 4096


def _undo_frame(page_size: int = PS, page_no: int = 20) -> bytearray:
    f = bytearray(page_size)
    P.init_frame(f, 0, page_no, P.FIL_PAGE_UNDO_LOG)
    undo.init_page(f)
    return f


# -- the reference: undo.page_records before the cache -------------------------------------------
def ref_page_records(frame) -> list[tuple[int, bytes]]:
    pos = P.u16(frame, undo.TRX_UNDO_PAGE_START)
    free = undo.page_free(frame)
    limit = len(frame) - P.FIL_PAGE_END_LSN_OLD_CHKSUM
    if not undo.TRX_UNDO_PAGE_HDR_END <= pos <= free <= limit:
        raise undo.UndoLayoutError(f"undo page start {pos} / free {free} out of range")
    out = []
    while pos < free:
        n = P.u16(frame, pos)
        if n < undo.UNDO_REC_HDR or pos + 2 + n > free:
            raise undo.UndoLayoutError(f"undo record of {n} bytes at {pos} crosses free {free}")
        out.append((pos, bytes(frame[pos + 2:pos + 2 + n])))
        pos += 2 + n
    return out


def _same(frame) -> list:
    """page_records(frame) agrees with the reference, result or error message."""
    try:
        want = ref_page_records(frame)
    except undo.UndoLayoutError as e:
        with pytest.raises(undo.UndoLayoutError) as got:
            undo.page_records(frame)
        assert str(got.value) == str(e)
        return []
    got = undo.page_records(frame)
    assert got == want and isinstance(got, list)
    return got


@pytest.fixture(autouse=True)
def _fresh_cache():
    undo.clear_cache()
    yield
    undo._check_cache()
    undo.clear_cache()


def test_rollback_pops_are_served_from_the_cache_as_prefixes():
    f = _undo_frame()
    payloads = [undo.make_rec(undo.TRX_UNDO_UPD_EXIST_REC, i, 3, i, b"o" * (1 + i % 7))
                for i in range(60)]
    offs = [undo.append_rec(f, p) for p in payloads]
    assert _same(f) == list(zip(offs, payloads))
    decoded = []
    real = undo._decode
    undo._decode = lambda *a: decoded.append(a) or real(*a)
    try:
        for i in reversed(range(len(offs))):          # rollback: TRX_UNDO_PAGE_FREE moves back
            P.put_u16(f, undo.TRX_UNDO_PAGE_FREE, offs[i])
            assert _same(f) == list(zip(offs[:i], payloads[:i]))
    finally:
        undo._decode = real
    assert decoded == []                # every pop was a prefix of an area decoded before
    undo._check(f, header=False)


def test_a_free_pointer_inside_a_record_raises_as_the_walk_does():
    f = _undo_frame()
    offs = [undo.append_rec(f, undo.make_rec(undo.TRX_UNDO_INSERT_REC, i, 3, i))
            for i in range(5)]
    _same(f)
    P.put_u16(f, undo.TRX_UNDO_PAGE_FREE, offs[3] + 5)    # not a record boundary
    assert _same(f) == []
    P.put_u16(f, undo.TRX_UNDO_PAGE_FREE, offs[3] + 1)    # the length field itself crosses
    assert _same(f) == []


def test_the_same_area_at_another_start_is_another_entry():
    a = _undo_frame()
    for i in range(4):
        undo.append_rec(a, undo.make_rec(undo.TRX_UNDO_INSERT_REC, i, 3, i))
    start = undo.TRX_UNDO_PAGE_HDR_END
    free = undo.page_free(a)
    b = bytearray(a)
    b[start + 2:free + 2] = a[start:free]                 # the same records, 2 bytes further
    P.put_u16(b, undo.TRX_UNDO_PAGE_START, start + 2)
    P.put_u16(b, undo.TRX_UNDO_PAGE_FREE, free + 2)
    ra, rb = _same(a), _same(b)
    assert [p for _, p in ra] == [p for _, p in rb]
    assert [o + 2 for o, _ in ra] == [o for o, _ in rb]


@pytest.mark.parametrize("seed", range(6))
def test_random_appends_pops_and_corruption_match_the_walk(seed, monkeypatch):
    monkeypatch.setattr(undo._cache, "limit", 16 << 10)    # evictions too
    rng = random.Random(seed)
    frames = [_undo_frame(page_no=n) for n in range(3)]
    stacks: list[list[int]] = [[] for _ in frames]
    for step in range(600):
        j = rng.randrange(len(frames))
        f, stack = frames[j], stacks[j]
        r = rng.random()
        if r < 0.45:
            p = undo.make_rec(undo.TRX_UNDO_DEL_MARK_REC, step, 1, rng.randrange(99),
                              bytes(1 + rng.randrange(40)))
            try:
                stack.append(undo.append_rec(f, p))
            except undo.UndoLayoutError:
                pass                                        # page full
        elif r < 0.85 and stack:
            P.put_u16(f, undo.TRX_UNDO_PAGE_FREE, stack.pop())
        elif r < 0.9:
            g = bytearray(f)                               # a corrupted copy, read once
            at = rng.randrange(undo.TRX_UNDO_PAGE_START, undo.page_free(f) + 2)
            g[at] ^= 1 << rng.randrange(8)
            _same(g)
        _same(f)
        if step % 50 == 0:
            undo._check_cache()
