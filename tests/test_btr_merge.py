"""B+tree page merges, page discards and tree shrink on delete (engine/btr.py: btr_compress,
btr_discard_page, btr_lift_page_up).

Records are removed through ``Index.delete`` inside an mtr (the physical removal, whatever
engine-level path calls it), on a table made with ``Engine.create_table`` over a SimDisk.
After every operation (or every few, on the tall tree) ``Index._check`` walks the whole tree
and the FSP bitmap is compared with the tree's pages, as checkers/structure.check_quiesced
does.  Crash
images are built as campaigns/crashcheck.py builds them: ``CrashStateBuilder(base, trace,
profile).build(CrashPlan(position, choices))``, then ``Engine.open`` on a fresh SimDisk.
"""
from __future__ import annotations

import random
import re

import pytest

from tornpage.campaigns.mutants import planted
from tornpage.checkers.structure import check_quiesced
from tornpage.engine import Corruption, Engine, EngineConfig, EnginePanic, btr, fsp, mtr_log
from tornpage.engine import btr_page as bp
from tornpage.engine.page import FIL_PAGE_NEXT, FIL_PAGE_PREV, u32
from tornpage.faultfs import DROP, Choice, CrashPlan, CrashStateBuilder, SimDisk

T = "t"
PS = 4096
MUTANT = "merge-no-sibling-link-fix"
BROKEN_LINK = "sibling links .* broken|list not terminated by FIL_NULL"   # Index._check's words


def _cfg(**kw) -> EngineConfig:
    base = dict(page_size=PS, buffer_pool_pages=64, log_file_size=4 << 20,
                doublewrite_batch_pages=8, page_cleaner_batch=4)
    base.update(kw)
    return EngineConfig(**base)


def _engine(**kw):
    disk = SimDisk("sector512")
    eng = Engine.create(disk, _cfg(**kw))
    eng.create_table(T)
    return disk, eng, eng.tables[T]


def _rec(key: int, size: int) -> bytes:
    return bp.make_leaf_rec(key, 1, bytes(bp.ROLL_PTR_LEN), bytes([key % 251]) * size)


def _insert(eng, idx, key: int, size: int) -> None:
    with eng.mtr() as m:
        idx.insert(m, _rec(key, size))


def _delete(eng, idx, key: int):
    with eng.mtr() as m:
        idx.delete(m, key)
    return m


def _keys(eng, idx) -> set[int]:
    return {bp.rec_key(r) for r in idx.scan(eng.buf, 0, (1 << 64) - 1, 1 << 62)}


def _check(eng, idx, live=None) -> dict:
    """Index._check plus the FSP bitmap: the used pages are exactly the tree's (no leak, no
    tree page marked free), as check_quiesced requires."""
    info = idx._check(eng.buf)
    used = set(fsp.used_pages(eng.buf.get(idx.space, 0).data)) - {0}
    assert used == set(info["page_set"]), (sorted(used ^ set(info["page_set"])), info)
    if live is not None:
        assert info["records"] == len(live)
    return info


def _build(eng, idx, keys, sizes) -> set[int]:
    for k in keys:
        _insert(eng, idx, k, sizes(k))
    return set(keys)


def _btr_stats(eng) -> dict:
    return {k: v for k, v in eng.stats.items() if k.startswith("btr_")}


def _pages(eng, idx) -> dict:
    """page number -> (level, records, FIL_PAGE_PREV, FIL_PAGE_NEXT) of every tree page."""
    out = {}
    for pno in idx._check(eng.buf)["page_set"]:
        d = eng.buf.get(idx.space, pno).data
        out[pno] = (bp.level(d), bp.records(d), u32(d, FIL_PAGE_PREV), u32(d, FIL_PAGE_NEXT))
    return out


# --------------------------------------------------------------------------------------------
# merges and shrink on a live engine
# --------------------------------------------------------------------------------------------


def _order(name: str, keys: list[int]) -> list[int]:
    if name == "ascending":
        return list(keys)
    if name == "descending":
        return keys[::-1]
    if name == "outside-in":
        out = []
        lo, hi = 0, len(keys) - 1
        while lo <= hi:
            out.append(keys[lo])
            if lo != hi:
                out.append(keys[hi])
            lo, hi = lo + 1, hi - 1
        return out
    if name == "every-other-first":
        return keys[::2] + keys[1::2]
    rng = random.Random(7)
    out = list(keys)
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("order", ["ascending", "descending", "outside-in", "every-other-first",
                                   "random"])
def test_deleting_every_key_merges_leaves_and_shrinks_to_one_leaf(order):
    disk, eng, idx = _engine()
    keys = list(range(0, 600, 3))
    live = _build(eng, idx, keys, lambda k: 100 + k % 200)
    info = _check(eng, idx, live)
    assert info["height"] == 2 and info["pages"] > 10
    for k in _order(order, keys):
        _delete(eng, idx, k)
        live.discard(k)
        info = _check(eng, idx, live)
        if len(live) > 30:
            assert info["height"] == 2
    assert info == {"pages": 1, "records": 0, "height": 1, "page_set": [idx.root]}
    assert _keys(eng, idx) == set()
    st = _btr_stats(eng)
    assert st["btr_page_merges"] + st.get("btr_pages_discarded", 0) == st["btr_page_splits"]
    assert st["btr_tree_shrinks"] == st["btr_root_raises"] == 1
    eng._check()
    assert check_quiesced(eng) == []


def test_a_three_level_tree_merges_non_leaf_pages_and_shrinks_two_levels():
    disk, eng, idx = _engine()
    keys = [k * 4 for k in range(650)]
    live = _build(eng, idx, keys, lambda k: 880 + k % 97)
    info = _check(eng, idx, live)
    assert info["height"] == 3
    heights = [3]
    for i, k in enumerate(_order("random", keys)):
        _delete(eng, idx, k)
        live.discard(k)
        if i % 25 == 0 or len(live) < 40:
            info = _check(eng, idx, live)
            heights.append(info["height"])
    assert _check(eng, idx, live) == {"pages": 1, "records": 0, "height": 1,
                                      "page_set": [idx.root]}
    assert heights == sorted(heights, reverse=True) and 2 in heights
    st = _btr_stats(eng)
    assert st["btr_tree_shrinks"] == 2
    assert st["btr_page_merges"] + st.get("btr_pages_discarded", 0) == st["btr_page_splits"]
    assert check_quiesced(eng) == []


def test_random_inserts_and_deletes_against_a_set_model():
    """Mixed record sizes (25..980 bytes: the tree reads only lengths and keys); the tree grows
    to two levels, then runs of neighbouring keys are deleted faster than keys are inserted,
    re-inserting into merged ranges as it shrinks back."""
    rng = random.Random(3)
    disk, eng, idx = _engine()
    live: set[int] = set()
    heights = set()
    for step in range(1200):
        if rng.random() < (0.9 if step < 500 else 0.45) or not live:
            k = rng.randrange(1 << 12)
            if k not in live:
                _insert(eng, idx, k, rng.randrange(25, 980))
                live.add(k)
        else:
            ordered = sorted(live)
            i = rng.randrange(len(ordered))
            for k in ordered[i:i + rng.choice([1, 1, 1, 1, 2, 6])]:
                _delete(eng, idx, k)
                live.discard(k)
        if step % 6 == 0:
            heights.add(_check(eng, idx, live)["height"])
        if step == 500:
            assert len(live) > 250 and _keys(eng, idx) == live
    _check(eng, idx, live)
    assert _keys(eng, idx) == live
    for k in sorted(live):
        with eng.mtr() as m:
            assert bp.rec_key(idx.get(m, k)) == k
    assert heights == {1, 2}
    st = _btr_stats(eng)
    assert st["btr_page_merges"] > 50 and st["btr_tree_shrinks"] > 0


def _leaves(eng, idx) -> list[list[int]]:
    """Keys of each leaf of a two-level tree, leaves in key order."""
    root = eng.buf.get(idx.space, idx.root)
    assert bp.level(root.data) == 1
    return [[bp.rec_key(r) for r in bp.records(eng.buf.get(idx.space, bp.node_child(p)).data)]
            for p in bp.records(root.data)]


def test_secondary_index_records_merge_the_same_way():
    """The tree reads only record lengths and keys: the secondary index on k (9-byte records,
    some delete-marked) in the same tablespace grows and shrinks like the clustered one, and
    the tablespace's used pages stay exactly the two trees' pages."""
    disk = SimDisk("sector512")
    eng = Engine.create(disk, _cfg())
    eng.create_table(T, k_index=True)
    idx = eng.tables[T]
    sidx = eng.sec_index_by_space(idx.space)
    rng = random.Random(11)
    entries = sorted({bp.sec_key(rng.randrange(1 << 20), pk) for pk in range(800)})
    for key in entries:
        k, pk = bp.sec_key_parts(key)
        with eng.mtr() as m:
            sidx.insert(m, bp.make_sec_rec(k, pk, delete_marked=pk % 3 == 0))

    def check(n: int) -> dict:
        info = sidx._check(eng.buf)
        used = set(fsp.used_pages(eng.buf.get(idx.space, 0).data)) - {0}
        assert used == set(info["page_set"]) | set(idx._check(eng.buf)["page_set"])
        assert info["records"] == n
        return info

    assert check(len(entries))["height"] == 2
    order = list(entries)
    rng.shuffle(order)
    for i, key in enumerate(order):
        _delete(eng, sidx, key)
        if i % 50 == 0:
            check(len(entries) - i - 1)
    assert check(0) == {"pages": 1, "records": 0, "height": 1, "page_set": [sidx.root]}
    assert _btr_stats(eng)["btr_tree_shrinks"] == 1


def test_a_page_is_merged_only_below_the_threshold_and_when_it_fits():
    disk, eng, idx = _engine()
    # ascending inserts leave two ~984-byte records per leaf; the keys between fill each to four
    # (3936 of 4032 bytes): every leaf is full
    keys = list(range(0, 2000, 10))
    live = _build(eng, idx, keys, lambda k: 960)
    live |= _build(eng, idx, [k + 5 for k in keys], lambda k: 960)
    leaves = _leaves(eng, idx)
    assert all(len(lf) == 4 for lf in leaves[:40])
    before = _btr_stats(eng)
    # every other leaf loses two records: below half full, but its full neighbours have no room
    for lf in leaves[1:39:2]:
        for k in lf[:2]:
            _delete(eng, idx, k)
            live.discard(k)
            _check(eng, idx, live)
    assert _btr_stats(eng) == before
    assert len(_leaves(eng, idx)) == len(leaves)
    # one more record off a full leaf: it is above half full, nothing happens either
    _delete(eng, idx, leaves[0][1])
    live.discard(leaves[0][1])
    assert _btr_stats(eng) == before
    # a neighbour of a half-empty leaf now has room: the next delete there merges
    _delete(eng, idx, leaves[1][2])
    live.discard(leaves[1][2])
    _check(eng, idx, live)
    assert _btr_stats(eng)["btr_page_merges"] == before.get("btr_page_merges", 0) + 1
    assert len(_leaves(eng, idx)) == len(leaves) - 1
    # a half-empty leaf between full ones cannot merge; emptied, it is discarded
    before = _btr_stats(eng)
    for k in leaves[3][2:]:
        _delete(eng, idx, k)
        live.discard(k)
        _check(eng, idx, live)
    after = _btr_stats(eng)
    assert after["btr_pages_discarded"] == before.get("btr_pages_discarded", 0) + 1
    assert after["btr_page_merges"] == before["btr_page_merges"]
    assert len(_leaves(eng, idx)) == len(leaves) - 2
    assert _keys(eng, idx) == live


def test_freed_pages_are_reused_by_later_splits():
    disk, eng, idx = _engine()
    keys = list(range(300))
    _build(eng, idx, keys, lambda k: 200)
    hdr = eng.buf.get(idx.space, 0).data
    limit = fsp.free_limit(hdr)
    for k in keys:
        _delete(eng, idx, k)
    assert _check(eng, idx)["pages"] == 1
    _build(eng, idx, keys, lambda k: 200)
    _check(eng, idx, set(keys))
    assert fsp.free_limit(eng.buf.get(idx.space, 0).data) == limit


def test_a_stale_first_node_pointer_key_is_rekeyed_before_a_split_key_below_it():
    """The first node pointer of a non-leaf page routes minus infinity, so its key may be stale
    (after a discard or merge hands its child a lower range).  Make the root's first key stale
    on purpose, with the redo records the engine itself uses, then split that first child
    below the stale key: the split's node pointer must land after the first record (which is
    re-keyed to 0), not before it."""
    disk, eng, idx = _engine()
    keys = list(range(1000, 1400, 10))
    live = _build(eng, idx, keys, lambda k: 300)
    root = eng.buf.get(idx.space, idx.root)
    recs = bp.records(root.data)
    assert bp.level(root.data) == 1 and bp.rec_key(recs[0]) == 0
    stale = bp.rec_key(recs[1]) - 1
    with eng.mtr() as m:
        r = m.page(idx.space, idx.root)
        m.log(r, mtr_log.RedoRecord(mtr_log.MLOG_REC_DELETE, idx.space, idx.root,
                                    mtr_log.key_body(0)))
        m.log(r, mtr_log.RedoRecord(mtr_log.MLOG_REC_INSERT, idx.space, idx.root,
                                    bp.make_node_ptr(stale, bp.node_child(recs[0]))))
    _check(eng, idx, live)
    # keys below every existing one go to the first leaf and split it below ``stale``
    for k in range(0, 40):
        _insert(eng, idx, k, 300)
        live.add(k)
        _check(eng, idx, live)
    assert bp.rec_key(bp.records(root.data)[0]) == 0
    assert _keys(eng, idx) == live
    for k in sorted(live):
        with eng.mtr() as m:
            assert idx.get(m, k) is not None, k


# --------------------------------------------------------------------------------------------
# non-leaf levels on small pages
# --------------------------------------------------------------------------------------------

SMALL_CAPACITY = 340        # bytes of records per page: 24 node pointers, 4 leaf records


@pytest.fixture
def small_pages(monkeypatch):
    """Shrink the record area of index pages to SMALL_CAPACITY bytes (the B+tree reads page
    capacity only through btr_page), so a few dozen records make a three-level tree whose
    non-leaf pages fill up, the only way to reach non-leaf discards quickly with 4 KiB pages.
    Returns the largest leaf value (bytes) that keeps a record within max_record_size."""
    monkeypatch.setattr(bp, "FIL_PAGE_END_LSN_OLD_CHKSUM",
                        PS - bp.PAGE_DATA - SMALL_CAPACITY)
    assert bp.capacity(PS) == SMALL_CAPACITY
    return btr.max_record_size(PS) - bp.REC_VALUE


def _children(eng, idx, pno: int) -> list[int]:
    return [bp.node_child(r) for r in bp.records(eng.buf.get(idx.space, pno).data)]


def test_a_non_leaf_page_that_cannot_merge_is_discarded_with_its_last_child(small_pages):
    """Root (level 2) -> [P0, P1] with P1 full: P0 can never merge into it, so deleting P0's
    keys empties P0 down to one leaf, then discards that leaf and P0 itself; the root, left
    with P1 only, takes P1's records.  The root's first node pointer keeps P1's key (stale:
    it now routes every key below it); inserting those keys again splits its first leaf below
    that key, and the split's node pointer must land after the first record."""
    disk, eng, idx = _engine()
    root = eng.buf.get(idx.space, idx.root)
    live: set[int] = set()
    k = 0
    while not (bp.level(root.data) == 2 and
               bp.n_recs(eng.buf.get(idx.space, _children(eng, idx, idx.root)[-1]).data) == 24):
        _insert(eng, idx, k, small_pages)
        live.add(k)
        k += 10
    assert _check(eng, idx, live)["height"] == 3 and bp.n_recs(root.data) == 2
    bound = bp.rec_key(bp.records(root.data)[1])
    for key in sorted(x for x in live if x < bound):
        _delete(eng, idx, key)
        live.discard(key)
        _check(eng, idx, live)
    st = _btr_stats(eng)
    assert st["btr_pages_discarded"] == 2 and st["btr_tree_shrinks"] == 1
    assert _check(eng, idx, live)["height"] == 2
    assert bp.rec_key(bp.records(root.data)[0]) == bound         # stale first key
    for key in range(1, bound, 7):
        _insert(eng, idx, key, small_pages)
        live.add(key)
        _check(eng, idx, live)
    assert _keys(eng, idx) == live and _check(eng, idx, live)["height"] == 3
    for key in sorted(live):
        with eng.mtr() as m:
            assert idx.get(m, key) is not None, key
    # and everything goes away again, down to the root leaf
    for key in sorted(live, reverse=True):
        _delete(eng, idx, key)
        live.discard(key)
        _check(eng, idx, live)
    assert _check(eng, idx) == {"pages": 1, "records": 0, "height": 1, "page_set": [idx.root]}


def test_a_right_merge_rekeys_the_right_pages_first_node_pointer(small_pages):
    """A non-leaf page whose first node pointer key is stale (here: lower than its bound, set
    on purpose with the engine's own redo records) absorbs its left sibling: its old first
    record must take its exact bound as key before the sibling's records go in front of it."""
    disk, eng, idx = _engine()
    live = _build(eng, idx, range(0, 700, 10), lambda k: small_pages)
    root = eng.buf.get(idx.space, idx.root)
    assert _check(eng, idx, live)["height"] == 3 and bp.n_recs(root.data) == 2
    bound = bp.rec_key(bp.records(root.data)[1])
    p1 = bp.node_child(bp.records(root.data)[1])
    first = bp.records(eng.buf.get(idx.space, p1).data)[0]
    assert bp.rec_key(first) == bound
    with eng.mtr() as m:
        f = m.page(idx.space, p1)
        m.log(f, mtr_log.RedoRecord(mtr_log.MLOG_REC_DELETE, idx.space, p1,
                                    mtr_log.key_body(bound)))
        m.log(f, mtr_log.RedoRecord(mtr_log.MLOG_REC_INSERT, idx.space, p1,
                                    bp.make_node_ptr(bound - 1, bp.node_child(first))))
    _check(eng, idx, live)
    for key in sorted(x for x in live if x < bound):
        _delete(eng, idx, key)
        live.discard(key)
        if _check(eng, idx, live)["height"] == 2:
            break
    # P0 merged into P1 (P1's old first record re-keyed to ``bound``) and the root took P1's
    # records: the re-keyed pointer is there, the stale key is not
    keys = [bp.rec_key(r) for r in bp.records(root.data)]
    assert bound in keys and bound - 1 not in keys
    assert _btr_stats(eng)["btr_tree_shrinks"] == 1
    assert _keys(eng, idx) == live
    for key in sorted(live):
        with eng.mtr() as m:
            assert idx.get(m, key) is not None, key


# --------------------------------------------------------------------------------------------
# recovery: merges are rebuilt from redo alone
# --------------------------------------------------------------------------------------------


def _drop_all(b: CrashStateBuilder, pos: int) -> CrashPlan:
    return CrashPlan(pos, tuple((i, Choice(DROP)) for i in b.pending(pos)))


def test_recovery_rebuilds_the_merged_tree_from_redo_alone():
    """Build and checkpoint sharply, then merge and shrink with nothing flushed: every page the
    merges changed is rebuilt by redo on the checkpointed image, page for page."""
    disk, eng, idx = _engine()
    keys = list(range(0, 1200, 2))
    live = _build(eng, idx, keys, lambda k: 200 + k % 300)
    eng.make_checkpoint(flush=True)
    for k in _order("random", keys)[:560]:
        _delete(eng, idx, k)
        live.discard(k)
    assert _btr_stats(eng)["btr_page_merges"] > 20
    eng.log.write_up_to(eng.log.end_lsn, flush=True)
    want = _pages(eng, idx)
    b = CrashStateBuilder(disk.base, disk.trace, disk.profile)
    eng2 = Engine.open(SimDisk(disk.profile, b.build(_drop_all(b, len(disk.trace)))), eng.config)
    idx2 = eng2.tables[T]
    assert eng2.stats["recv_records_applied"] > 0
    assert _pages(eng2, idx2) == want
    assert _keys(eng2, idx2) == live
    _check(eng2, idx2, live)
    assert check_quiesced(eng2) == []


def test_crash_states_recover_to_the_tree_after_a_prefix_of_the_deletes():
    """Crash at several points of a delete run with log writes and page flushes in between:
    each recovered tree is structurally sound and holds the keys after exactly the deletes
    whose mtr the recovered log covers (a merge is atomic with its delete)."""
    disk, eng, idx = _engine(buffer_pool_pages=24)
    keys = list(range(0, 900, 3))
    live = _build(eng, idx, keys, lambda k: 150 + k % 400)
    eng.make_checkpoint(flush=True)
    start = len(disk.trace)
    states = [(eng.log.end_lsn, frozenset(live))]
    rng = random.Random(5)
    for k in _order("random", keys)[:260]:
        m = _delete(eng, idx, k)
        live.discard(k)
        states.append((m.end_lsn, frozenset(live)))
        if rng.random() < 0.2:
            eng.log.write_up_to(m.end_lsn, flush=True)
        if rng.random() < 0.1:
            eng.buf.flush_batch(rng.randrange(1, 5))
    eng.log.write_up_to(eng.log.end_lsn, flush=True)
    assert _btr_stats(eng)["btr_page_merges"] > 10
    b = CrashStateBuilder(disk.base, disk.trace, disk.profile)
    end = len(disk.trace)
    positions = sorted({start + (end - start) * j // 7 for j in range(1, 8)})
    seen = set()
    for pos in positions:
        eng2 = Engine.open(SimDisk(disk.profile, b.build(_drop_all(b, pos))), eng.config)
        idx2 = eng2.tables[T]
        expect = [s for lsn, s in states if lsn <= eng2.recovered_lsn][-1]
        _check(eng2, idx2, expect)
        assert _keys(eng2, idx2) == expect
        assert check_quiesced(eng2) == []
        seen.add(len(expect))
    assert len(seen) >= 5                  # the crash points really differ


# --------------------------------------------------------------------------------------------
# the planted bug is caught
# --------------------------------------------------------------------------------------------


def _merge_run(disk, eng, idx, merges: int) -> None:
    """Build a two-level tree, checkpoint, then delete until ``merges`` page merges happened."""
    keys = list(range(0, 600, 3))
    _build(eng, idx, keys, lambda k: 250)
    eng.make_checkpoint(flush=True)
    for k in _order("every-other-first", keys):
        _delete(eng, idx, k)
        if eng.stats["btr_page_merges"] >= merges:
            return
    raise AssertionError("not enough merges")


def test_mutant_merge_without_sibling_link_fix_is_caught_live_and_after_recovery():
    disk, eng, idx = _engine()
    with planted(MUTANT):
        _merge_run(disk, eng, idx, merges=1)
    with pytest.raises(Corruption, match=BROKEN_LINK):
        idx._check(eng.buf)
    eng.log.write_up_to(eng.log.end_lsn, flush=True)
    b = CrashStateBuilder(disk.base, disk.trace, disk.profile)
    eng2 = Engine.open(SimDisk(disk.profile, b.build(_drop_all(b, len(disk.trace)))), eng.config)
    problems = check_quiesced(eng2)
    assert any(re.search(BROKEN_LINK, p) for p in problems), problems


def test_mutant_merge_without_sibling_link_fix_makes_a_later_merge_refuse():
    """A merge checks that the parent's adjacent children are linked siblings: the broken link
    stops the engine (EnginePanic) instead of merging across it."""
    disk, eng, idx = _engine()
    with planted(MUTANT):
        with pytest.raises(Corruption, match="not linked siblings"):
            _merge_run(disk, eng, idx, merges=10)
    assert eng.panicked
    with pytest.raises(EnginePanic):
        eng.mtr()


def test_without_the_mutant_the_same_run_is_clean():
    disk, eng, idx = _engine()
    _merge_run(disk, eng, idx, merges=10)
    _check(eng, idx)
    assert check_quiesced(eng) == []
