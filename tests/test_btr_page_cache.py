"""The parsed-page cache and the binary searches of engine/btr_page.py (issue #10, "Speed").

The cache must be invisible: every page change writes the bytes a full re-encode of the
records writes (the pre-cache algorithm, kept below as the reference), every read returns and
raises what a fresh decode would, and ``_check`` / ``_check_cache`` hold after every operation.
Stress tests drive random operations against a sorted-dict model and a shadow page changed by
the reference algorithm, comparing bytes after each.
"""
from __future__ import annotations

import bisect
import random

import pytest

from tornpage.engine import Engine, EngineConfig, btr_page as bp, mtr_log as ml, undo
from tornpage.engine import page as P
from tornpage.faultfs import DROP, Choice, CrashPlan, CrashStateBuilder, SimDisk

PS = 4096


def _index_frame(page_size: int = PS, level: int = 0, index_id: int = 3) -> bytearray:
    f = bytearray(page_size)
    P.init_frame(f, 3, 7, P.FIL_PAGE_INDEX)
    bp.init(f, level, index_id)
    return f


def _leaf(key: int, value: bytes = b"v", trx_id: int = 5) -> bytes:
    return bp.make_leaf_rec(key, trx_id, undo.make_roll_ptr(True, 1, 9, 64), value)


# -- the reference: btr_page's record heap code before the cache (commit 2f14f51) -------------
def ref_records(frame) -> list[bytes]:
    top = bp.u16(frame, bp.PAGE_HEAP_TOP)
    limit = len(frame) - bp.FIL_PAGE_END_LSN_OLD_CHKSUM
    if not bp.PAGE_DATA <= top <= limit:
        raise bp.PageLayoutError(f"heap top {top} outside [{bp.PAGE_DATA}, {limit}]")
    out, mv, pos = [], bytes(frame[bp.PAGE_DATA:top]), 0
    while pos < len(mv):
        if pos + bp.REC_LEN > len(mv):
            raise bp.PageLayoutError("record length field crosses the heap top")
        n = (mv[pos] << 8) | mv[pos + 1]
        if n < bp.KEY_LEN or pos + bp.REC_LEN + n > len(mv):
            raise bp.PageLayoutError(f"record of {n} bytes at {bp.PAGE_DATA + pos} crosses "
                                     f"the heap top")
        out.append(mv[pos + bp.REC_LEN:pos + bp.REC_LEN + n])
        pos += bp.REC_LEN + n
    if len(out) != bp.n_recs(frame):
        raise bp.PageLayoutError(f"{len(out)} records on page, PAGE_N_RECS says "
                                 f"{bp.n_recs(frame)}")
    return out


def ref_write_records(frame: bytearray, recs: list[bytes]) -> None:
    heap = b"".join(len(r).to_bytes(2, "big") + r for r in recs)
    top = bp.PAGE_DATA + len(heap)
    if top > len(frame) - bp.FIL_PAGE_END_LSN_OLD_CHKSUM:
        raise bp.PageLayoutError(f"records need {len(heap)} bytes, page has "
                                 f"{bp.capacity(len(frame))}")
    old_top = bp.u16(frame, bp.PAGE_HEAP_TOP)
    frame[bp.PAGE_DATA:top] = heap
    if old_top > top:
        frame[top:old_top] = bytes(old_top - top)
    P.put_u16(frame, bp.PAGE_N_RECS, len(recs))
    P.put_u16(frame, bp.PAGE_HEAP_TOP, top)


def _ref_find(recs, key):
    return bisect.bisect_left([bp.rec_key(r) for r in recs], key)


def ref_apply(frame: bytearray, op: str, arg) -> None:
    recs = ref_records(frame)
    if op == "insert":
        key = bp.rec_key(arg)
        i = _ref_find(recs, key)
        if i < len(recs) and bp.rec_key(recs[i]) == key:
            raise bp.PageLayoutError(f"duplicate key {key} on page")
        recs.insert(i, arg)
    elif op == "update":
        key = bp.rec_key(arg)
        i = _ref_find(recs, key)
        if i >= len(recs) or bp.rec_key(recs[i]) != key:
            raise bp.PageLayoutError(f"update of missing key {key}")
        recs[i] = arg
    elif op == "delete":
        i = _ref_find(recs, arg)
        if i >= len(recs) or bp.rec_key(recs[i]) != arg:
            raise bp.PageLayoutError(f"delete of missing key {arg}")
        del recs[i]
    elif op == "list_end_delete":
        recs = recs[:_ref_find(recs, arg)]
    else:
        raise AssertionError(op)
    ref_write_records(frame, recs)


OPS = {"insert": bp.insert_rec, "update": bp.update_rec, "delete": bp.delete_rec,
       "list_end_delete": bp.list_end_delete}


def _both(f: bytearray, shadow: bytearray, op: str, arg) -> str | None:
    """Apply ``op`` to ``f`` (cached code) and ``shadow`` (reference); the same error or none,
    the same bytes after.  Returns the error message, if any."""
    errs = []
    for fn in (lambda: OPS[op](f, arg), lambda: ref_apply(shadow, op, arg)):
        try:
            fn()
            errs.append(None)
        except bp.PageLayoutError as e:
            errs.append(str(e))
    assert errs[0] == errs[1], (op, errs)
    assert f == shadow, op
    return errs[0]


def _assert_matches(f: bytearray, model: dict[int, bytes]) -> None:
    bp._check(f)
    bp._check_cache()
    recs = bp.records(f)
    assert recs == ref_records(f)
    assert [bp.rec_key(r) for r in recs] == sorted(model)
    assert [bp.leaf_value(r) for r in recs] == [model[k] for k in sorted(model)]
    pp = bp.parsed(f)
    assert list(pp.keys) == sorted(model) and pp.heap == bytes(f[bp.PAGE_DATA:bp.u16(
        f, bp.PAGE_HEAP_TOP)])
    # a fresh full encode of the records reproduces the page byte for byte
    again = bytearray(f)
    ref_write_records(again, ref_records(f))
    assert again == f


# -- stress against a sorted-dict model and the reference page ---------------------------------
@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts and ends with an empty cache (it is process-wide)."""
    bp.clear_cache()
    yield
    bp.clear_cache()


@pytest.mark.parametrize("seed", range(6))
def test_random_page_operations_match_the_model_and_the_reference_bytes(seed, monkeypatch):
    monkeypatch.setattr(bp._cache, "limit", 64 << 10)    # evictions too, and a quick _check_cache
    rng = random.Random(seed)
    f, shadow = _index_frame(), _index_frame()
    model: dict[int, bytes] = {}
    keyspace = rng.choice([40, 1000, 1 << 64])
    for step in range(600):
        r = rng.random()
        key = rng.randrange(keyspace)
        val = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 60)))
        if r < 0.45:
            err = _both(f, shadow, "insert", _leaf(key, val))
            if err is None:
                model[key] = val
            else:
                assert key in model or "need" in err
        elif r < 0.65:
            if model and rng.random() < 0.8:
                key = rng.choice(sorted(model))
            err = _both(f, shadow, "update", _leaf(key, val))
            if err is None:
                model[key] = val
            else:
                assert key not in model or "need" in err
        elif r < 0.9:
            if model and rng.random() < 0.8:
                key = rng.choice(sorted(model))
            if _both(f, shadow, "delete", key) is None:
                del model[key]
            else:
                assert key not in model
        elif r < 0.95:
            _both(f, shadow, "list_end_delete", key)
            model = {k: v for k, v in model.items() if k < key}
        else:
            # a re-created page refilled from a record list, as a split's new page
            recs = ref_records(shadow)
            g, g_ref = _index_frame(), _index_frame()
            bp.copy_recs_to_created(g, recs)
            ref_write_records(g_ref, recs)
            assert g == g_ref
            f, shadow = g, g_ref
        _assert_matches(f, model)


def test_the_cache_is_bounded_and_evicts_least_recently_used(monkeypatch):
    monkeypatch.setattr(bp._cache, "limit", 3000)
    rng = random.Random(3)
    frames = [(_index_frame(), _index_frame(), {}) for _ in range(6)]
    for step in range(400):
        f, shadow, model = rng.choice(frames)
        key = rng.randrange(200)
        if key in model:
            _both(f, shadow, "delete", key)
            del model[key]
        else:
            val = b"x" * rng.randrange(30)
            if _both(f, shadow, "insert", _leaf(key, val)) is None:
                model[key] = val
        _assert_matches(f, model)
        assert bp._cache.nbytes <= 3000 or len(bp._cache) == 1
    # one heap larger than the whole budget is still cached alone
    big = _index_frame()
    bp.write_records(big, [_leaf(k, b"y" * 200) for k in range(14)])   # 3150 bytes
    assert len(bp._cache) == 1 and bp.records(big) == ref_records(big)
    bp._check_cache()


# -- no stale reads: every way bytes change is seen ---------------------------------------------
def test_bytes_written_behind_the_cache_are_read_not_the_cache():
    f = _index_frame()
    for k in (10, 20, 30):
        bp.insert_rec(f, _leaf(k, b"abc"))
    assert [bp.rec_key(r) for r in bp.records(f)] == [10, 20, 30]
    # a direct write into a record's key (a test, a fault, MLOG_WRITE_STRING)
    ml.apply(f, ml.write_string(3, 7, bp.PAGE_DATA + bp.REC_LEN, (5).to_bytes(8, "big")), PS)
    assert [bp.rec_key(r) for r in bp.records(f)] == [5, 20, 30]
    assert bp.lookup(f, 10) is None and bp.lookup(f, 5) is not None
    # a corrupt length field: the read raises as a decode does
    bad = bytearray(f)
    P.put_u16(bad, bp.PAGE_DATA, 5000)
    with pytest.raises(bp.PageLayoutError, match="crosses the heap top"):
        bp.records(bad)
    with pytest.raises(bp.PageLayoutError, match="crosses the heap top"):
        bp.insert_rec(bad, _leaf(99))
    # PAGE_N_RECS disagreeing with a heap that is in the cache
    bad = bytearray(f)
    P.put_u16(bad, bp.PAGE_N_RECS, 2)
    with pytest.raises(bp.PageLayoutError, match="PAGE_N_RECS says 2"):
        bp.records(bad)
    # MLOG_PAGE_INIT re-creates the page: empty
    ml.apply(f, ml.page_init(3, 7, P.FIL_PAGE_INDEX, 0, 3), PS)
    assert bp.records(f) == [] and bp.lookup(f, 20) is None
    bp._check(f)


def test_records_returns_a_new_list_and_the_cache_is_immutable():
    f = _index_frame()
    for k in (1, 2, 3):
        bp.insert_rec(f, _leaf(k))
    recs = bp.records(f)
    recs[0] = _leaf(9)
    del recs[1]
    assert [bp.rec_key(r) for r in bp.records(f)] == [1, 2, 3]
    pp = bp.parsed(f)
    assert isinstance(pp.recs, tuple) and isinstance(pp.keys, tuple)
    # a payload given as a bytearray is copied: changing it later changes nothing
    p = bytearray(_leaf(4, b"old"))
    bp.insert_rec(f, p)
    p[-1] = ord("X")
    assert bp.leaf_value(bp.lookup(f, 4)) == b"old"
    bp._check(f)
    bp._check_cache()


def test_check_catches_a_cache_entry_that_differs_from_a_fresh_decode(monkeypatch):
    f = _index_frame()
    for k in (1, 2, 3):
        bp.insert_rec(f, _leaf(k))
    pp = bp.parsed(f)
    poisoned = bp.ParsedPage(pp.heap, pp.recs, (1, 2, 4))
    monkeypatch.setitem(bp._cache, pp.heap, poisoned)
    with pytest.raises(bp.PageLayoutError, match="cache disagrees"):
        bp._check(f)
    with pytest.raises(bp.PageLayoutError, match="differs from a decode"):
        bp._check_cache()


def test_records_shorter_than_a_key_are_written_but_never_cached():
    f = _index_frame()
    bp.write_records(f, [_leaf(1), b"short"])
    g = _index_frame()
    ref_write_records(g, [_leaf(1), b"short"])
    assert f == g
    with pytest.raises(bp.PageLayoutError, match="record of 5 bytes"):
        bp.records(f)
    bp._check_cache()


# -- binary search --------------------------------------------------------------------------
def test_find_decodes_log_n_keys(monkeypatch):
    recs = [_leaf(k * 3) for k in range(1000)]
    calls = []
    real = bp.rec_key
    monkeypatch.setattr(bp, "rec_key", lambda r: calls.append(1) or real(r))
    for key in (0, 1, 3, 1500, 2997, 2998, 5000):
        calls.clear()
        i = bp.find(recs, key)
        assert i == bisect.bisect_left([k * 3 for k in range(1000)], key)
        assert len(calls) <= 11          # ceil(log2(1001)) decodes, never all 1000


def test_lookup_and_find_agree_with_a_linear_search():
    rng = random.Random(5)
    f = _index_frame(16384)
    keys = sorted(rng.sample(range(1 << 20), 300))
    bp.write_records(f, [_leaf(k, b"") for k in keys])
    recs = bp.records(f)
    for key in rng.sample(range(1 << 20), 300) + keys:
        lin = next((i for i, k in enumerate(keys) if k >= key), len(keys))
        assert bp.find(recs, key) == lin
        got = bp.lookup(f, key)
        assert (got is not None) == (key in keys) and (got is None or bp.rec_key(got) == key)


# -- through redo apply, as the engine and recovery do ------------------------------------------
def _index_pages(eng, idx) -> dict[int, bytes]:
    """page number -> bytes of every page of ``idx``'s tree, the checksum and LSN fields
    blanked: a frame recovery read from disk keeps the checksums and trailer of its image
    (the live frame has zeros there until a flush stamps a copy), and its FIL_PAGE_LSN is the
    end of the last mtr applied to it; the comparison is about everything else."""
    out = {}
    for pno in idx._check(eng.buf)["page_set"]:
        d = bytearray(eng.buf.get(idx.space, pno).data)
        d[P.FIL_PAGE_SPACE_OR_CHKSUM:P.FIL_PAGE_SPACE_OR_CHKSUM + 4] = bytes(4)
        d[P.FIL_PAGE_LSN:P.FIL_PAGE_LSN + 8] = bytes(8)
        d[PS - P.FIL_PAGE_END_LSN_OLD_CHKSUM:] = bytes(P.FIL_PAGE_END_LSN_OLD_CHKSUM)
        out[pno] = bytes(d)
    return out


@pytest.mark.parametrize("cache", ["warm", "cold"])
def test_recovery_applies_redo_to_the_same_bytes_as_the_live_engine(cache):
    """Random inserts and deletes (splits, merges) on a live engine after a sharp checkpoint,
    then a crash that loses every page write: recovery replays the redo through mtr_log.apply
    onto the checkpointed images and must produce the live pages byte for byte, with the
    cache warm (the heaps the live engine cached) or cleared first; each page also equals a
    full re-encode of its records."""
    disk = SimDisk("sector512")
    cfg = EngineConfig(page_size=PS, buffer_pool_pages=64, log_file_size=4 << 20,
                       doublewrite_batch_pages=8, page_cleaner_batch=4)
    eng = Engine.create(disk, cfg)
    eng.create_table("t")
    idx = eng.tables["t"]
    rng = random.Random(11)
    live: set[int] = set()
    for key in range(0, 300, 2):
        with eng.mtr() as m:
            idx.insert(m, bp.make_leaf_rec(key, 1, bytes(bp.ROLL_PTR_LEN), bytes(60)))
        live.add(key)
    eng.make_checkpoint(flush=True)
    for step in range(400):
        key = rng.randrange(300)
        with eng.mtr() as m:
            if key in live:
                idx.delete(m, key)
                live.discard(key)
            else:
                idx.insert(m, bp.make_leaf_rec(key, 1, bytes(bp.ROLL_PTR_LEN),
                                               bytes([key % 251]) * rng.randrange(120)))
                live.add(key)
    assert eng.stats["btr_page_splits"] > 0 and eng.stats["btr_page_merges"] > 0
    eng.log.write_up_to(eng.log.end_lsn, flush=True)
    want = _index_pages(eng, idx)
    b = CrashStateBuilder(disk.base, disk.trace, disk.profile)
    plan = CrashPlan(len(disk.trace), tuple((i, Choice(DROP)) for i in b.pending(len(disk.trace))))
    if cache == "cold":
        bp.clear_cache()
    eng2 = Engine.open(SimDisk(disk.profile, b.build(plan)), eng.config)
    idx2 = eng2.tables["t"]
    assert eng2.stats["recv_records_applied"] > 0
    assert _index_pages(eng2, idx2) == want
    assert {bp.rec_key(r) for r in idx2.scan(eng2.buf, 0, (1 << 64) - 1, 1 << 62)} == live
    for pno in want:
        got = eng2.buf.get(idx2.space, pno).data
        again = bytearray(got)
        ref_write_records(again, ref_records(got))
        assert again == got
    bp._check_cache()


def test_a_frame_hint_serves_only_a_frame_whose_heap_is_unchanged():
    """The per-frame hint is a shortcut to the entry the heap bytes key: bytes changed behind
    the module's back, or another frame that got the hinted frame's id, are decoded afresh."""
    bp.clear_cache()
    f = _index_frame()
    bp.write_records(f, [_leaf(k) for k in range(0, 50, 5)])
    pp = bp.parsed(f)
    assert bp._hints[id(f)] is pp and bp.parsed(f) is pp
    f[bp.PAGE_DATA + bp.REC_LEN + bp.KEY_LEN - 1] ^= 1          # key 0 becomes 1, no API
    assert bp.parsed(f).recs == tuple(ref_records(f)) and bp.parsed(f).keys[0] == 1
    g = _index_frame()                  # same heap length, other records: as if g had f's id
    bp.write_records(g, [_leaf(k) for k in range(100, 150, 5)])
    bp._hints[id(g)] = bp.parsed(f)
    assert bp.parsed(g).recs == tuple(ref_records(g))
    bp._check(f)
    bp._check(g)
    bp._check_cache()


def _walk_page(pp, lo, hi, limit, out):
    """Index.scan's record-by-record walk over one leaf (the reference for _scan_page)."""
    for k, r in zip(pp.keys, pp.recs):
        if k > hi or len(out) >= limit:
            return True
        if k >= lo:
            out.append(r)
    return False


@pytest.mark.parametrize("seed", range(4))
def test_scanning_a_leaf_by_binary_search_takes_what_the_walk_takes(seed):
    """Index._scan_page (binary search and slices) appends the records the walk appends and
    stops where it stops, for any bounds and limit (also a limit reached at the page's last
    record, an empty page, lo > hi, records already taken); keys_ascending tells intact pages
    from damaged ones, which scan walks."""
    from tornpage.engine.btr import Index
    rng = random.Random(seed)
    for _ in range(300):
        keys = sorted(rng.sample(range(60), rng.randrange(0, 12)))
        pp = bp.ParsedPage(b"", tuple(_leaf(k) for k in keys), tuple(keys))
        assert bp.keys_ascending(pp)
        lo, hi = rng.randrange(-2, 62), rng.randrange(-2, 62)
        before = [b"x"] * rng.randrange(0, 4)
        limit = rng.randrange(0, 10)
        a, b, ka = list(before), list(before), []
        assert Index._scan_page(pp, lo, hi, limit, a, ka) == _walk_page(pp, lo, hi, limit, b)
        assert a == b and ka == [bp.rec_key(r) for r in a[len(before):]]
    assert not bp.keys_ascending(bp.ParsedPage(b"", (_leaf(5), _leaf(3)), (5, 3)))


def test_live_values_are_the_leaf_values_of_the_records_not_delete_marked():
    recs = [_leaf(1, b"a"), bp.with_delete_mark(_leaf(2, b"b"), True), _leaf(3, b"c")]
    assert bp.live_values([1, 2, 3], recs) == {bp.rec_key(r): bp.leaf_value(r) for r in recs
                                               if not bp.is_delete_marked(r)} == {1: b"a", 3: b"c"}
