"""MVCC, purge, the secondary index on k and XA PREPARE, over faultfs.SimDisk.

* read views: REPEATABLE READ keeps one snapshot (taken at the first consistent read), READ
  COMMITTED takes one per statement; own changes are visible, others' uncommitted ones never;
* the secondary index on ``k`` (the value's first 4 bytes, big-endian) agrees with a model
  through updates of k, deletes, inserts over delete-marked records and rollbacks of each, and
  a seeded stress checks every consistent read against a snapshot model of committed versions;
* purge waits for the oldest read view, then removes delete-marked rows and frees undo pages;
* crash cuts during purge and during background rollback recover to the committed state;
* XA: a prepared transaction survives a crash with its locks until committed or rolled back;
* many rollback segments, undo logs spanning many pages;
* the MVCC mutants of campaigns.mutants are caught (and the clean runs are clean).

Crash images: ``disk.live_image()`` (a process kill after the log was written) or
``CrashStateBuilder(base, trace, profile).build(CrashPlan(position, choices))`` (a power loss
at a trace position), then ``Engine.open`` on a fresh SimDisk, as tests/test_engine.py does.
"""
from __future__ import annotations

import random
import re
import struct

import pytest

from tornpage.campaigns.mutants import planted
from tornpage.campaigns.workload import WorkloadSettings, run_workload
from tornpage.checkers.structure import check_quiesced
from tornpage.engine import (Corruption, DuplicateKey, Engine, EngineConfig, LockConflict,
                    TrxStateError)
from tornpage.engine import btr_page as bp, fsp, trx_sys, undo
from tornpage.engine.read_view import READ_COMMITTED as RC, REPEATABLE_READ as RR
from tornpage.faultfs import DROP, Choice, CrashPlan, CrashStateBuilder, SimDisk

T = "t"
PS = 4096
BIG = (1 << 64) - 1


def _cfg(**kw) -> EngineConfig:
    base = dict(page_size=PS, buffer_pool_pages=64, log_file_size=1 << 20,
                doublewrite_batch_pages=8, page_cleaner_batch=4)
    base.update(kw)
    return EngineConfig(**base)


def _new_engine(**kw):
    disk = SimDisk()
    eng = Engine.create(disk, _cfg(**kw))
    eng.create_table(T, k_index=True)
    return disk, eng


def val(k: int, tag: bytes = b"", size: int = 0) -> bytes:
    """A row value whose k is ``k``."""
    v = struct.pack(">I", k) + tag
    return v + b"." * max(0, size - len(v))


def k_of(v: bytes) -> int:
    return struct.unpack_from(">I", v, 0)[0]


def _load(eng, rows: dict) -> None:
    t = eng.begin()
    for key, v in sorted(rows.items()):
        t.insert(T, key, v)
    t.commit()


def _reopen(disk, eng) -> tuple[SimDisk, Engine]:
    """A process kill now: everything written so far (with flush_log_at_trx_commit=1 the log
    is durable up to the last commit or prepare); then recovery."""
    d2 = SimDisk(image=disk.live_image())
    return d2, Engine.open(d2, eng.config)


def _clust(eng) -> list[bytes]:
    return eng.tables[T].scan(eng.buf, 0, BIG, 1 << 62)


def _sec(eng) -> list[tuple[int, int, bool]]:
    """(k, pk, delete-marked) of every secondary index entry."""
    sidx = eng.sec_index_by_space(eng.tables[T].space)
    return [bp.sec_key_parts(bp.rec_key(e)) + (bp.is_delete_marked(e),)
            for e in sidx.scan(eng.buf, 0, BIG, 1 << 62)]


def _delete_marked(eng) -> tuple[list[int], list[tuple[int, int]]]:
    return ([bp.rec_key(r) for r in _clust(eng) if bp.is_delete_marked(r)],
            [(k, pk) for k, pk, dm in _sec(eng) if dm])


def _assert_sec_agrees(eng) -> None:
    """At any moment the secondary index's entries that are not delete-marked are exactly
    (k, pk) of the latest version of every clustered record that is not delete-marked
    (committed or not); delete-marked entries are old versions' (k, pk), left for purge."""
    want = sorted((k_of(bp.leaf_value(r)), bp.rec_key(r)) for r in _clust(eng)
                  if not bp.is_delete_marked(r))
    assert sorted((k, pk) for k, pk, dm in _sec(eng) if not dm) == want


def _sys_used(eng) -> set[int]:
    return set(fsp.used_pages(eng.buf.get(0, 0).data))


def _by_k(rows: dict) -> dict[int, list]:
    out: dict[int, list] = {}
    for key in sorted(rows):
        out.setdefault(k_of(rows[key]), []).append((key, rows[key]))
    return out


def _assert_reads(eng, rows: dict, ks=None) -> None:
    """A new transaction (RR and RC) reads exactly ``rows``: point gets, a scan and lookup_k
    of every k in ``ks`` (default: every k of ``rows`` plus a few absent ones)."""
    by_k = _by_k(rows)
    ks = sorted(set(by_k) | {0, 1, 7777} if ks is None else ks)
    for iso in (RR, RC):
        t = eng.begin(iso)
        assert t.scan(T, 0, BIG) == sorted(rows.items())
        for key in sorted(rows)[:20]:
            assert t.get(T, key) == rows[key]
        for k in ks:
            assert t.lookup_k(T, k) == by_k.get(k, []), k
        t.commit()


def _assert_clean(eng, rows: dict) -> None:
    """Purge everything, then the structure is clean and the rows (and index) are ``rows``."""
    assert check_quiesced(eng) == []
    assert _delete_marked(eng) == ([], [])
    assert eng.all_rows(T) == rows
    assert sorted((k, pk) for k, pk, _ in _sec(eng)) == sorted((k_of(v), key)
                                                               for key, v in rows.items())
    _assert_reads(eng, rows)


# --------------------------------------------------------------------------------------------
# 1. read views
# --------------------------------------------------------------------------------------------

ROWS = {key: val(key * 10, b"v0-%d" % key, 40) for key in range(1, 21)}


def test_repeatable_read_keeps_its_snapshot_across_commits():
    disk, eng = _new_engine()
    _load(eng, ROWS)
    reader = eng.begin(RR)
    assert reader.get(T, 5) == ROWS[5]                       # the snapshot is taken here
    w = eng.begin()
    assert w.update(T, 5, val(999, b"new5"))                 # k 50 -> 999
    assert w.delete(T, 6)
    w.insert(T, 30, val(50, b"new30"))                       # k 50, like row 5 had
    w.commit()
    new = dict(ROWS)
    new[5] = val(999, b"new5")
    del new[6]
    new[30] = val(50, b"new30")
    for _ in range(2):                                       # ... and it stays
        assert reader.get(T, 5) == ROWS[5]
        assert reader.get(T, 6) == ROWS[6]                   # deleted, still visible
        assert reader.get(T, 30) is None
        assert reader.scan(T, 0, 100) == sorted(ROWS.items())
        assert reader.scan(T, 4, 7, limit=2) == [(4, ROWS[4]), (5, ROWS[5])]
        assert reader.lookup_k(T, 50) == [(5, ROWS[5])]
        assert reader.lookup_k(T, 60) == [(6, ROWS[6])]
        assert reader.lookup_k(T, 999) == []
        w2 = eng.begin()                                     # more commits in between
        w2.update(T, 7, val(70, b"again"))
        w2.commit()
        new[7] = val(70, b"again")
    assert eng.stats["mvcc_versions_built"] > 0
    assert eng.stats["read_views_opened"] == 1
    # a transaction that begins now sees every commit
    _assert_reads(eng, new)
    reader.commit()
    _assert_clean(eng, new)


def test_read_committed_sees_each_new_commit():
    disk, eng = _new_engine()
    _load(eng, ROWS)
    reader = eng.begin(RC)
    rr = eng.begin(RR)
    assert reader.get(T, 3) == rr.get(T, 3) == ROWS[3]
    assert reader.lookup_k(T, 30) == [(3, ROWS[3])]
    versions = [val(31, b"a"), val(32, b"b"), None, val(30, b"d")]
    for i, v in enumerate(versions):
        w = eng.begin()
        if v is None:
            assert w.delete(T, 3)
        elif i == 3:
            w.insert(T, 3, v)                               # over the delete-marked record
        else:
            assert w.update(T, 3, v)
        # not yet committed: invisible to both
        assert reader.get(T, 3) == (versions[i - 1] if i else ROWS[3])
        w.commit()
        assert reader.get(T, 3) == v
        assert dict(reader.scan(T, 1, 5)).get(3) == v
        for k in (30, 31, 32):
            assert reader.lookup_k(T, k) == ([(3, v)] if v is not None and k_of(v) == k
                                             else []), (i, k)
        assert rr.get(T, 3) == ROWS[3] and rr.lookup_k(T, 30) == [(3, ROWS[3])]
        assert rr.lookup_k(T, 31) == rr.lookup_k(T, 32) == []
    assert eng.stats["insert_over_delete_marked"] == 1
    reader.commit()
    rr.commit()
    rows = dict(ROWS)
    rows[3] = val(30, b"d")
    _assert_clean(eng, rows)


def test_snapshot_is_taken_at_the_first_read_not_at_begin():
    disk, eng = _new_engine()
    _load(eng, ROWS)
    reader = eng.begin(RR)
    opened = eng.stats["read_views_opened"]
    w = eng.begin()
    w.update(T, 1, val(10, b"first"))
    w.delete(T, 2)
    w.commit()
    assert eng.stats["read_views_opened"] == opened          # begin took no snapshot
    assert reader.get(T, 1) == val(10, b"first")             # the first read takes it now
    assert reader.get(T, 2) is None
    assert eng.stats["read_views_opened"] == opened + 1
    w = eng.begin()
    w.update(T, 1, val(10, b"second"))
    w.insert(T, 2, val(20, b"back"))
    w.commit()
    assert reader.get(T, 1) == val(10, b"first")
    assert reader.get(T, 2) is None
    assert reader.lookup_k(T, 20) == []
    # a writing statement before the first read takes no snapshot either
    rw = eng.begin(RR)
    assert rw.get_for_update(T, 3) == ROWS[3]
    rw.update(T, 3, val(33, b"mine"))
    w = eng.begin()
    w.update(T, 4, val(44, b"later"))
    w.commit()
    assert rw.get(T, 4) == val(44, b"later")
    assert rw.get(T, 3) == val(33, b"mine")
    rw.commit()
    reader.commit()


def test_a_transaction_active_when_the_view_was_taken_stays_invisible_after_it_commits():
    """The view's ``ids``: a writer that began (smaller id) before the reader's first read and
    commits after it stays invisible; one that begins after it too (``low_limit_id``)."""
    disk, eng = _new_engine()
    _load(eng, ROWS)
    early = eng.begin()
    early.update(T, 8, val(80, b"early"))
    reader = eng.begin(RR)
    assert early.id < reader.id
    assert reader.get(T, 8) == ROWS[8]
    late = eng.begin()
    late.update(T, 9, val(90, b"late"))
    early.commit()
    late.commit()
    assert reader.get(T, 8) == ROWS[8] and reader.get(T, 9) == ROWS[9]
    assert reader.scan(T, 8, 9) == [(8, ROWS[8]), (9, ROWS[9])]
    rc = eng.begin(RC)
    assert rc.get(T, 8) == val(80, b"early") and rc.get(T, 9) == val(90, b"late")
    reader.commit()
    rc.commit()


def test_own_changes_visible_and_others_uncommitted_changes_invisible():
    disk, eng = _new_engine()
    _load(eng, ROWS)
    before = eng.begin(RR)
    assert before.scan(T, 0, 100) == sorted(ROWS.items())   # snapshot before the writer
    t = eng.begin(RR)
    assert t.get(T, 1) == ROWS[1]                            # t's snapshot, then its writes
    assert t.update(T, 1, val(777, b"own"))
    assert t.delete(T, 2)
    assert t.get(T, 2) is None
    t.insert(T, 2, val(20, b"reborn"))                       # delete, re-insert: same trx
    assert t.delete(T, 3)
    t.insert(T, 3, val(778, b"reborn3"))                     # ... with another k
    t.insert(T, 40, val(777, b"fresh"))
    assert t.delete(T, 4)
    mine = dict(ROWS)
    mine.update({1: val(777, b"own"), 2: val(20, b"reborn"), 3: val(778, b"reborn3"),
                 40: val(777, b"fresh")})
    del mine[4]
    assert t.get(T, 1) == mine[1] and t.get(T, 2) == mine[2] and t.get(T, 4) is None
    assert t.scan(T, 0, 100) == sorted(mine.items())
    assert t.lookup_k(T, 777) == [(1, mine[1]), (40, mine[40])]
    assert t.lookup_k(T, 778) == [(3, mine[3])]
    assert t.lookup_k(T, 20) == [(2, mine[2])]
    assert t.lookup_k(T, 10) == [] and t.lookup_k(T, 30) == [] and t.lookup_k(T, 40) == []
    # others see none of it: an older snapshot, a newer one, READ COMMITTED
    after_rr, after_rc = eng.begin(RR), eng.begin(RC)
    for o in (before, after_rr, after_rc):
        assert o.scan(T, 0, 100) == sorted(ROWS.items())
        assert o.get(T, 40) is None and o.get(T, 4) == ROWS[4]
        assert o.lookup_k(T, 777) == [] and o.lookup_k(T, 778) == []
        assert o.lookup_k(T, 10) == [(1, ROWS[1])] and o.lookup_k(T, 30) == [(3, ROWS[3])]
    with pytest.raises(LockConflict):
        after_rc.get_for_update(T, 2)
    t.commit()
    assert after_rc.scan(T, 0, 100) == sorted(mine.items())  # RC: the next statement sees it
    assert after_rr.scan(T, 0, 100) == sorted(ROWS.items())
    assert after_rr.lookup_k(T, 777) == []
    for o in (before, after_rr, after_rc):
        o.commit()
    _assert_clean(eng, mine)


# --------------------------------------------------------------------------------------------
# 2. the secondary index on k
# --------------------------------------------------------------------------------------------


def test_secondary_index_through_k_changes_deletes_reinserts_and_rollbacks():
    """A scripted sequence, each step committed or rolled back; after every statement the
    engine's invariants hold and lookup_k agrees with the model, inside the transaction (own
    changes) and outside (the committed state)."""
    disk, eng = _new_engine()
    rows = {key: val(key % 4, b"r%d" % key, 30) for key in range(1, 25)}
    _load(eng, rows)
    KS = list(range(0, 9))

    def check(t, own):
        eng._check()
        _assert_sec_agrees(eng)
        by_k, own_k = _by_k(rows), _by_k(own)
        o = eng.begin(RC)
        for k in KS:
            assert o.lookup_k(T, k) == by_k.get(k, []), k
            assert t.lookup_k(T, k) == own_k.get(k, []), k
        assert o.scan(T, 0, 100) == sorted(rows.items())
        assert t.scan(T, 0, 100) == sorted(own.items())
        o.commit()

    script = [
        [("upd", 1, 5)],                          # k 1 -> 5
        [("upd", 2, 6), ("upd", 2, 2)],           # k 2 -> 6 -> 2 (entry (2, 2) unmarked)
        [("upd", 3, 7), ("upd", 3, 8)],           # k 3 -> 7 -> 8 (entry (7, 3) removed)
        [("del", 4)],
        [("del", 5), ("ins", 5, 5)],              # delete, re-insert, same k
        [("del", 6), ("ins", 6, 0)],              # ... another k
        [("ins", 4, 4)],                          # over the committed delete-marked row 4
        [("upd", 1, 1)],                          # back to the old k: (1, 1) delete-marked
        [("ins", 40, 3), ("upd", 40, 6), ("del", 40)],
        [("del", 7), ("ins", 7, 8), ("upd", 7, 3)],  # k 3 -> 8 -> 3 across delete+insert
        [("upd", 8, 1), ("del", 8), ("ins", 8, 0)],
    ]
    for i, stmts in enumerate(script * 2):
        for outcome in ("rollback", "commit"):
            t = eng.begin(RR)
            own = dict(rows)
            for s in stmts:
                if s[0] == "upd":
                    nv = val(s[2], b"u%d" % i, 30)
                    assert t.update(T, s[1], nv) == (s[1] in own)
                    if s[1] in own:
                        own[s[1]] = nv
                elif s[0] == "del":
                    assert t.delete(T, s[1]) == (s[1] in own)
                    own.pop(s[1], None)
                else:
                    nv = val(s[2], b"i%d" % i, 30)
                    if s[1] in own:
                        with pytest.raises(DuplicateKey):
                            t.insert(T, s[1], nv)
                    else:
                        t.insert(T, s[1], nv)
                        own[s[1]] = nv
                check(t, own)
            if outcome == "rollback":
                t.rollback()
            else:
                t.commit()
                rows = own
            eng._check()
            _assert_sec_agrees(eng)
            t2 = eng.begin(RC)
            assert t2.scan(T, 0, 100) == sorted(rows.items())
            t2.commit()
        if i % 3 == 2:                            # purge now and then, not always
            eng.purge_all()
            eng._check()
    assert eng.stats["sec_index_updates"] > 10
    assert eng.stats["insert_over_delete_marked"] > 0
    assert eng.stats["undo_records_rolled_back"] > 20
    marked = _delete_marked(eng)
    assert marked[0] or marked[1]                 # something left for the final purge
    eng.purge_all()
    assert _delete_marked(eng) == ([], [])
    _assert_clean(eng, rows)


def _model_stress(seed: int, n_ops: int, n_keys: int = 90, n_k: int = 6) -> Engine:
    """Random transactions in four slots, REPEATABLE READ and READ COMMITTED mixed, against a
    snapshot model: committed versions per key by commit sequence, an RR snapshot taken at the
    first consistent read, own writes on top; row locks predicted from the write sets."""
    rng = random.Random(seed)
    disk, eng = _new_engine(buffer_pool_pages=24, log_file_size=EngineConfig.min_log_file_size(PS))
    versions: dict[int, list] = {}               # key -> [(commit seq, value or None)]
    init = {key: val(rng.randrange(n_k), b"init", rng.randrange(8, 120))
            for key in range(0, n_keys, 2)}
    _load(eng, init)
    for key, v in init.items():
        versions[key] = [(0, v)]
    seq = 0
    slots: dict[int, dict] = {}                  # slot -> {trx, writes, locks, snap}
    counts = dict(conflicts=0, commits=0, rollbacks=0, reads=0)

    def at(key, s):
        v = None
        for cs, x in versions.get(key, ()):
            if cs > s:
                break
            v = x
        return v

    def latest(key):
        return versions[key][-1][1] if key in versions else None

    def snap(st):
        if st["trx"].isolation == RC:
            return seq
        if st["snap"] is None:
            st["snap"] = seq
        return st["snap"]

    def expect(st, key, s):
        return st["writes"][key] if key in st["writes"] else at(key, s)

    def current(st, key):
        return st["writes"][key] if key in st["writes"] else latest(key)

    def end(slot, committed):
        nonlocal seq
        st = slots.pop(slot)
        if committed:
            seq += 1
            for key, v in st["writes"].items():
                versions.setdefault(key, []).append((seq, v))

    for step in range(n_ops):
        r = rng.random()
        if r < 0.06:                                           # purge catches up
            for _ in range(rng.randrange(1, 12)):
                eng.purge.step(4)
                eng._check()
                _assert_sec_agrees(eng)
            continue
        if r < 0.09:
            eng.run_background(rng.randrange(1, 4))
            eng._check()
            _assert_sec_agrees(eng)
            continue
        s = rng.randrange(4)
        if s not in slots:
            slots[s] = dict(trx=eng.begin(rng.choice((RR, RR, RC))), writes={}, locks=set(),
                            snap=None)
        st = slots[s]
        t = st["trx"]
        key = rng.randrange(n_keys)
        r = rng.random()
        others_lock = any(key in o["locks"] for o2, o in slots.items() if o2 != s)
        if r < 0.42:                                           # a write
            what = rng.choice(("ins", "upd", "upd", "del", "delins"))
            if others_lock:
                with pytest.raises(LockConflict):
                    if what == "upd":
                        t.update(T, key, val(0))
                    elif what == "ins":
                        t.insert(T, key, val(0))
                    else:
                        t.delete(T, key)
                counts["conflicts"] += 1
                t.rollback()
                end(s, False)
                eng._check()
                continue
            st["locks"].add(key)
            nv = val(rng.randrange(n_k), b"s%d" % step, rng.randrange(8, 120))
            cur = current(st, key)
            if what == "ins":
                if cur is None:
                    t.insert(T, key, nv)
                    st["writes"][key] = nv
                else:
                    with pytest.raises(DuplicateKey):
                        t.insert(T, key, nv)
            elif what == "upd":
                assert t.update(T, key, nv) == (cur is not None)
                if cur is not None:
                    st["writes"][key] = nv
            elif what == "del":
                assert t.delete(T, key) == (cur is not None)
                if cur is not None:
                    st["writes"][key] = None
            else:
                assert t.delete(T, key) == (cur is not None)
                t.insert(T, key, nv)
                st["writes"][key] = nv
        elif r < 0.58:
            counts["reads"] += 1
            assert t.get(T, key) == expect(st, key, snap(st)), (step, key)
        elif r < 0.68:
            counts["reads"] += 1
            sn = snap(st)
            hi = key + rng.randrange(1, 30)
            keys = sorted(x for x in set(versions) | set(st["writes"]) if key <= x <= hi)
            want = [(x, v) for x in keys if (v := expect(st, x, sn)) is not None]
            assert t.scan(T, key, hi) == want, step
        elif r < 0.80:
            counts["reads"] += 1
            sn = snap(st)
            k = rng.randrange(n_k + 1)
            want = [(x, v) for x in sorted(set(versions) | set(st["writes"]))
                    if (v := expect(st, x, sn)) is not None and k_of(v) == k]
            assert t.lookup_k(T, k) == want, (step, k)
        elif r < 0.92:
            t.commit()
            counts["commits"] += 1
            end(s, True)
        else:
            t.rollback()
            counts["rollbacks"] += 1
            end(s, False)
        eng._check()                                           # after every operation
        _assert_sec_agrees(eng)
    for s in sorted(slots):
        slots[s]["trx"].rollback()
        end(s, False)
    final = {key: latest(key) for key in versions if latest(key) is not None}
    assert eng.all_rows(T) == final
    assert min(counts.values()) > 10, counts
    for stat in ("purge_del_marked_removed", "purge_sec_entries_removed",
                 "purge_blocked_by_read_view", "mvcc_versions_built", "insert_over_delete_marked",
                 "sec_index_updates", "purge_logs_freed"):
        assert eng.stats[stat] > 0, stat
    _assert_clean(eng, final)
    return eng


@pytest.mark.parametrize("seed", [20261123, 7])
def test_seeded_stress_against_a_snapshot_model(seed):
    _model_stress(seed, 1200)


@pytest.mark.parametrize("mutant", ["purge-ignores-read-view", "rr-read-view-per-statement",
                                    "sec-index-not-rolled-back"])
def test_the_snapshot_model_stress_catches_the_mvcc_mutants(mutant):
    """The stress above has teeth: each MVCC mutant makes it fail (a dangling version chain,
    a read the model disagrees with, or an index the final check finds wrong)."""
    with planted(mutant):
        with pytest.raises((AssertionError, Corruption)):
            _model_stress(7, 1200)


# --------------------------------------------------------------------------------------------
# 3. purge
# --------------------------------------------------------------------------------------------


def test_purge_waits_for_the_oldest_read_view_then_removes_and_frees():
    disk, eng = _new_engine()
    rows = {key: val(key % 7, b"p%d" % key, 150) for key in range(1, 61)}
    _load(eng, rows)
    eng.purge_all()
    baseline = _sys_used(eng)
    cfg = eng.config
    reserved = trx_sys.first_free_page(cfg.n_rollback_segments,
                                       trx_sys.dblwr_area_pages(cfg.doublewrite_batch_pages))
    assert max(baseline) < reserved                     # no undo page in use
    old = eng.begin(RR)
    assert old.get(T, 1) == rows[1]                     # the view purge must respect
    rc = eng.begin(RC)
    assert rc.get(T, 1) == rows[1]                      # RC keeps no view: blocks nothing
    w = eng.begin()
    for key in range(1, 31):
        assert w.delete(T, key)
    for key in range(31, 46):
        assert w.update(T, key, val(100 + key % 3, b"moved", 150))
    w.commit()
    assert eng.stats["undo_pages_added"] > 0            # the undo log spans pages
    new = {key: v for key, v in rows.items() if key > 45}
    new.update({key: val(100 + key % 3, b"moved", 150) for key in range(31, 46)})
    undo_pages = _sys_used(eng) - baseline
    assert len(undo_pages) >= 2
    blocked = eng.stats["purge_blocked_by_read_view"]
    assert eng.purge_all() == 0
    assert eng.purge.history_length() == 1
    assert eng.stats["purge_blocked_by_read_view"] > blocked
    assert _sys_used(eng) - baseline == undo_pages
    dm_rows, dm_entries = _delete_marked(eng)
    assert dm_rows == list(range(1, 31))
    assert len(dm_entries) == 30 + 15                   # deleted rows, old k of moved rows
    # the old snapshot still reads everything, through the index too
    assert old.scan(T, 0, 100) == sorted(rows.items())
    for k in range(7):
        assert old.lookup_k(T, k) == _by_k(rows)[k]
    assert old.lookup_k(T, 100) == []
    # a snapshot taken after the commit does not hold purge back
    young = eng.begin(RR)
    assert young.scan(T, 0, 100) == sorted(new.items())
    old.commit()
    assert eng.purge_all() > 0
    assert eng.purge.history_length() == 0
    assert eng.stats["purge_del_marked_removed"] == 30
    assert eng.stats["purge_sec_entries_removed"] == 45
    assert eng.stats["purge_logs_freed"] == 1
    assert _delete_marked(eng) == ([], [])
    assert [bp.rec_key(r) for r in _clust(eng)] == sorted(new)
    assert _sys_used(eng) == baseline                   # every undo page freed
    assert young.scan(T, 0, 100) == sorted(new.items())
    for k in (100, 101, 102):
        assert young.lookup_k(T, k) == _by_k(new)[k]
    young.commit()
    rc.commit()
    eng._check()
    _assert_clean(eng, new)


def test_purge_keeps_what_a_view_between_two_commits_needs():
    """Two commits around an RR view's creation: purge frees the first log only, and the
    view reads the version the second commit replaced."""
    disk, eng = _new_engine()
    _load(eng, ROWS)
    w = eng.begin()
    w.update(T, 1, val(11, b"one"))
    w.delete(T, 2)
    w.commit()
    mid = eng.begin(RR)
    assert mid.get(T, 1) == val(11, b"one")
    w = eng.begin()
    w.update(T, 1, val(12, b"two"))
    w.insert(T, 2, val(20, b"again"))                  # over the delete-marked row
    w.delete(T, 3)
    w.commit()
    eng.purge_all()
    assert eng.purge.history_length() == 1
    assert eng.stats["purge_logs_freed"] == 1
    assert mid.get(T, 1) == val(11, b"one") and mid.get(T, 2) is None
    assert mid.get(T, 3) == ROWS[3]
    assert mid.lookup_k(T, 11) == [(1, val(11, b"one"))] and mid.lookup_k(T, 12) == []
    assert mid.lookup_k(T, 20) == [] and mid.lookup_k(T, 30) == [(3, ROWS[3])]
    mid.commit()
    rows = dict(ROWS)
    rows[1], rows[2] = val(12, b"two"), val(20, b"again")
    del rows[3]
    _assert_clean(eng, rows)


# --------------------------------------------------------------------------------------------
# 4. crash cuts during purge and during background rollback
# --------------------------------------------------------------------------------------------


def _drop_all(b: CrashStateBuilder, pos: int) -> CrashPlan:
    return CrashPlan(pos, tuple((i, Choice(DROP)) for i in b.pending(pos)))


def _history_workload(eng, rng) -> dict:
    """Committed transactions that leave purge work: deletes, k changes, inserts over
    delete-marked rows, in several undo logs.  Returns the committed rows."""
    rows = {key: val(key % 5, b"h%d" % key, 90) for key in range(1, 41)}
    _load(eng, rows)
    for n in range(4):
        w = eng.begin()
        for key in rng.sample(range(1, 50), 14):
            op = rng.choice(("del", "upd", "ins"))
            nv = val(rng.randrange(8), b"w%d" % n, 90)
            if op == "del" and key in rows:
                assert w.delete(T, key)
                del rows[key]
            elif op == "upd" and key in rows:
                assert w.update(T, key, nv)
                rows[key] = nv
            elif key not in rows:
                w.insert(T, key, nv)
                rows[key] = nv
        w.commit()
    return rows


def test_crash_during_purge_recovers_and_purge_resumes():
    """A crash image after every purge mtr (log written, pages sometimes flushed: a process
    kill), and power-loss cuts at trace positions across the run (unsynced writes lost): each
    recovers the committed rows, purge resumes where it stopped, the structure is clean."""
    rng = random.Random(3)
    disk, eng = _new_engine(buffer_pool_pages=24)
    rows = _history_workload(eng, rng)
    eng.make_checkpoint(flush=True)
    start = len(disk.trace)
    hist0 = eng.purge.history_length()
    n_dm = tuple(map(len, _delete_marked(eng)))
    assert hist0 == 4 and n_dm[0] > 3 and n_dm[1] > n_dm[0]
    images = [disk.live_image()]
    while eng.purge.step(1):                            # at most one mtr per step
        eng._check()
        eng.log.write_up_to(eng.log.end_lsn, flush=True)
        if rng.random() < 0.3:
            eng.buf.flush_batch(rng.randrange(1, 4))
        images.append(disk.live_image())
    assert eng.purge.history_length() == 0
    assert len(images) > 30
    b = CrashStateBuilder(disk.base, disk.trace, disk.profile)
    end = len(disk.trace)
    for pos in sorted({start + (end - start) * j // 8 for j in range(1, 9)}):
        images.append(b.build(_drop_all(b, pos)))
    seen = set()
    for img in images:
        e2 = Engine.open(SimDisk(image=img), eng.config)
        assert e2.all_rows(T) == rows
        _assert_sec_agrees(e2)
        _assert_reads(e2, rows)
        hist = e2.purge.history_length()
        seen.add((hist, len(_delete_marked(e2)[0]), len(_delete_marked(e2)[1])))
        assert e2.finish_background_rollback() == 0
        e2._check()
        _assert_clean(e2, rows)
        assert e2.stats["purge_logs_freed"] == hist      # purge resumed and finished
    assert (hist0, n_dm[0], n_dm[1]) in seen          # before purge's first mtr
    assert (0, 0, 0) in seen                            # after its last
    assert len(seen) >= 10                              # the cuts really differ


def _loser(eng, rows: dict):
    """An uncommitted transaction that changes k, deletes, inserts over delete-marked rows
    (its own and a committed delete) and inserts new rows."""
    w = eng.begin()
    assert w.delete(T, 9)
    w.commit()
    del rows[9]                                         # delete-marked, not purged
    t = eng.begin()
    for key in (1, 2, 3):
        assert t.update(T, key, val(500 + key, b"L"))   # k changes
    assert t.update(T, 1, val(1, b"back"))              # ... and back to its own k
    assert t.update(T, 4, val(k_of(rows[4]), b"same-k"))
    for key in (5, 6):
        assert t.delete(T, key)
    t.insert(T, 6, val(600, b"reborn"))
    t.insert(T, 9, val(900, b"over-committed-delete"))
    for key in range(100, 106):
        t.insert(T, key, val(key % 3, b"new"))
    t.delete(T, 103)
    return t


def test_crash_after_every_background_rollback_step_recovers_the_committed_state():
    """A loser transaction reaches the data files; recovery resurrects it; then background
    rollback runs one step at a time, each made durable and followed by a crash: every image
    recovers with the loser's undo shortened by exactly the steps done, invisible to
    consistent reads and holding its locks, and rolls back to the committed state (the index
    on k agreeing)."""
    disk, eng = _new_engine()
    rows = {key: val(key % 4, b"c%d" % key, 60) for key in range(1, 31)}
    _load(eng, rows)
    loser = _loser(eng, rows)
    n = len(eng.trx_sys.undo_records(loser))
    assert n == 16
    eng.buf.flush_all()                                 # the loser's changes reach the files
    assert eng.log.flushed_lsn >= eng.log.end_lsn
    img, remaining = disk.live_image(), n
    seen_pending = set()
    for step in range(n + 2):
        d2 = SimDisk(image=img)
        e2 = Engine.open(d2, eng.config)
        e2._check()
        _assert_sec_agrees(e2)                          # index changes atomic with the row's
        if remaining is None:                           # the last step freed the undo log
            assert not e2.trx_sys.active and e2.stats["recv_trx_resurrected"] == 0
            _assert_clean(e2, rows)
            break
        (res,) = e2.trx_sys.active.values()
        assert res.id == loser.id and res.resurrected and res.state == "ACTIVE"
        assert len(e2.trx_sys.undo_records(res)) == remaining
        assert e2.prepared_transactions() == []
        _assert_reads(e2, rows)                         # its changes are invisible
        # its rows stay locked while undo for them remains; the rest are committed again
        pending = {undo.parse_rec(p)[3] for p in e2.trx_sys.undo_records(res)}
        o = e2.begin()
        for key in (1, 2, 5, 6, 9, 100, 103, 105):
            if key in pending:
                with pytest.raises(LockConflict):
                    o.get_for_update(T, key)
            else:
                assert o.get_for_update(T, key) == rows.get(key), key
        o.rollback()
        seen_pending.add(len(pending))
        # this image, rolled back to the end at once, is the committed state
        e3 = Engine.open(SimDisk(image=img), eng.config)
        assert e3.finish_background_rollback() == 1
        e3._check()
        _assert_clean(e3, rows)
        # one background rollback step (the run_background task), made durable, then crash
        done = e2.stats["bg_rollback"]
        while e2.stats["bg_rollback"] == done:
            e2.run_background(1)
        e2._check()
        if res.state == "ACTIVE":
            remaining -= 1
            assert len(e2.trx_sys.undo_records(res)) == remaining
        else:
            assert res.state == "ROLLED_BACK" and remaining == 0
            remaining = None
        e2.log.write_up_to(e2.log.end_lsn, flush=True)
        if step % 3 == 0:
            e2.buf.flush_all()
        img = d2.live_image()
    else:
        raise AssertionError("the rollback never finished")
    assert step == n + 1
    assert len(seen_pending) >= 8                       # locks really went away step by step


# --------------------------------------------------------------------------------------------
# 5. XA PREPARE
# --------------------------------------------------------------------------------------------


def _prepared(eng):
    t = eng.begin()
    assert t.update(T, 1, val(111, b"xa"))
    assert t.delete(T, 2)
    t.insert(T, 50, val(500, b"xa-new"))
    assert t.prepare() > 0
    xa = dict(ROWS)
    xa[1] = val(111, b"xa")
    del xa[2]
    xa[50] = val(500, b"xa-new")
    return t, xa


def test_writes_on_a_prepared_transaction_are_refused():
    disk, eng = _new_engine()
    _load(eng, ROWS)
    t, _ = _prepared(eng)
    assert t.state == "PREPARED"
    for call in (lambda: t.update(T, 3, val(3)), lambda: t.insert(T, 60, val(6)),
                 lambda: t.delete(T, 4), lambda: t.get_for_update(T, 5),
                 lambda: t.get(T, 5), lambda: t.prepare()):
        with pytest.raises(TrxStateError):
            call()
    assert eng.prepared_transactions() == [t]
    nothing = eng.begin()
    assert nothing.prepare() == 0                       # changed nothing: no redo
    assert eng.prepared_transactions() == [t, nothing]
    eng.commit(nothing)
    eng.commit(t)
    assert eng.prepared_transactions() == []


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_prepared_transaction_survives_a_crash_with_its_locks_until_resolved(outcome):
    disk, eng = _new_engine()
    _load(eng, ROWS)
    t, xa = _prepared(eng)
    d2, e2 = _reopen(disk, eng)
    (p,) = e2.prepared_transactions()
    assert p.id == t.id and p.state == "PREPARED" and p.resurrected
    assert e2.stats["recv_trx_prepared"] == 1
    other = e2.begin()
    for key in (1, 2, 50):
        with pytest.raises(LockConflict):
            other.get_for_update(T, key)
    assert other.get_for_update(T, 4) == ROWS[4]
    # consistent reads do not see the prepared changes
    assert other.get(T, 1) == ROWS[1] and other.get(T, 2) == ROWS[2]
    assert other.get(T, 50) is None and other.lookup_k(T, 500) == []
    assert other.lookup_k(T, 10) == [(1, ROWS[1])] and other.lookup_k(T, 111) == []
    other.rollback()
    for call in (lambda: p.update(T, 1, val(1)), lambda: p.insert(T, 70, val(7))):
        with pytest.raises(TrxStateError):
            call()
    # background rollback leaves it alone
    assert e2.finish_background_rollback() == 0
    e2.run_background(40)
    assert e2.prepared_transactions() == [p] and p.state == "PREPARED"
    assert not e2.background_work_pending()
    assert e2.all_rows(T) == xa                         # its changes are still in place
    assert e2.purge_all() == 0
    # ... and so does a second crash
    d3, e3 = _reopen(d2, e2)
    (p3,) = e3.prepared_transactions()
    assert p3.id == t.id
    assert len(e3.trx_sys.undo_records(p3)) == 3
    if outcome == "commit":
        assert e3.commit(p3) > 0
        want = xa
    else:
        e3.rollback(p3)
        want = dict(ROWS)
    assert p3.state == ("COMMITTED" if outcome == "commit" else "ROLLED_BACK")
    assert e3.prepared_transactions() == [] and not e3.trx_sys.active
    assert e3.stats["trx_prepared_committed" if outcome == "commit"
                    else "trx_prepared_rolled_back"] == 1
    _assert_reads(e3, want)
    o = e3.begin()
    assert o.get_for_update(T, 1) == want[1]            # the locks went with it
    o.commit()
    _, e4 = _reopen(d3, e3)
    assert e4.prepared_transactions() == []
    if outcome == "rollback":
        # the XA ROLLBACK is durable, its undo steps need not be: recovery finds the
        # transaction ACTIVE, not prepared, and background rollback finishes it
        assert [(x.id, x.state) for x in e4.trx_sys.active.values()] == [(t.id, "ACTIVE")]
        assert e4.finish_background_rollback() == 1
    assert not e4.trx_sys.active
    assert e4.all_rows(T) == want
    _assert_clean(e4, want)


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_prepared_transaction_resolved_without_a_crash(outcome):
    disk, eng = _new_engine()
    _load(eng, ROWS)
    rr = eng.begin(RR)
    assert rr.get(T, 1) == ROWS[1]
    t, xa = _prepared(eng)
    assert eng.purge_all() == 0
    if outcome == "commit":
        eng.commit(t)
        want = xa
    else:
        eng.rollback(t)
        want = dict(ROWS)
    assert rr.get(T, 1) == ROWS[1] and rr.lookup_k(T, 111) == []   # the old snapshot
    _assert_reads(eng, want)
    rr.commit()
    _, e2 = _reopen(disk, eng)
    assert e2.prepared_transactions() == []
    e2.finish_background_rollback()
    assert e2.all_rows(T) == want and not e2.trx_sys.active
    _assert_clean(e2, want)


@pytest.mark.parametrize("log_written", [True, False])
def test_crash_while_rolling_back_a_prepared_transaction(log_written):
    """Rolling back a prepared transaction first sets its undo log ACTIVE, durably: a crash a
    few steps in recovers it as an ordinary ACTIVE loser (with the undo the steps whose redo
    reached the log left) that background rollback finishes."""
    disk, eng = _new_engine()
    _load(eng, ROWS)
    t, xa = _prepared(eng)
    n = len(eng.trx_sys.undo_records(t))
    for _ in range(2):
        assert eng.trx_sys.rollback_step(t)
    assert t.state == "ACTIVE" and len(eng.trx_sys.undo_records(t)) == n - 2
    if log_written:
        eng.log.write_up_to(eng.log.end_lsn, flush=True)
    else:
        assert eng.log.written_lsn < eng.log.end_lsn    # the two steps' redo is not written
    _, e2 = _reopen(disk, eng)
    (res,) = e2.trx_sys.active.values()
    assert res.id == t.id and res.state == "ACTIVE" and e2.prepared_transactions() == []
    assert len(e2.trx_sys.undo_records(res)) == (n - 2 if log_written else n)
    _assert_reads(e2, ROWS)
    assert e2.finish_background_rollback() == 1
    assert not e2.trx_sys.active
    _assert_clean(e2, dict(ROWS))


def test_xa_rollback_is_durable_when_it_returns():
    """Regression: a prepared transaction rolled back, then a process kill right away (nothing
    written since): it must not come back PREPARED with its changes."""
    disk, eng = _new_engine()
    _load(eng, ROWS)
    t, xa = _prepared(eng)
    eng.rollback(t)
    assert t.state == "ROLLED_BACK" and eng.all_rows(T) == ROWS
    _, e2 = _reopen(disk, eng)
    assert e2.prepared_transactions() == []
    e2.finish_background_rollback()
    assert not e2.trx_sys.active
    _assert_clean(e2, dict(ROWS))


# --------------------------------------------------------------------------------------------
# 6. many rollback segments, undo logs spanning many pages
# --------------------------------------------------------------------------------------------


def test_many_rollback_segments_commit_rollback_and_crash():
    disk, eng = _new_engine(n_rollback_segments=8)
    rows = {key: val(key % 9, b"m", 40) for key in range(0, 200, 2)}
    _load(eng, rows)
    eng.purge_all()
    baseline = _sys_used(eng)
    trxs = [eng.begin() for _ in range(40)]
    for i, t in enumerate(trxs):
        for j in range(3):
            key = 200 * (j + 1) + i                     # new rows
            t.insert(T, key, val(i % 5, b"n%d" % i))
        key = 2 * i                                     # an existing row: update or delete
        if i % 2:
            assert t.update(T, key, val(50 + i % 3, b"u%d" % i))
        else:
            assert t.delete(T, key)
    assert {t.undo.rseg_id for t in trxs} == set(range(8))
    assert sorted(t.undo.rseg_id for t in trxs) == sorted(t.id % 8 for t in trxs)
    committed = dict(rows)
    mid = None
    for i, t in enumerate(trxs):
        if i == 20:
            mid = eng.begin(RR)                         # a view between the commits
            assert mid.get(T, 1) is None
            snap = dict(committed)
        if i % 3 == 0:
            t.commit()
            for j in range(3):
                committed[200 * (j + 1) + i] = val(i % 5, b"n%d" % i)
            if i % 2:
                committed[2 * i] = val(50 + i % 3, b"u%d" % i)
            else:
                del committed[2 * i]
        elif i % 3 == 1:
            t.rollback()
    open_ = [t for i, t in enumerate(trxs) if i % 3 == 2]
    ps = eng.config.page_size
    hist = [trx_sys.rseg_history(eng.buf.get(0, trx_sys.FIRST_RSEG_PAGE_NO + r).data, ps)[0]
            for r in range(8)]
    assert sum(hist) == 14 and sum(1 for h in hist if h) >= 4
    # purge crosses the rollback segments in commit order, up to the view
    eng.purge_all()
    after_mid = sum(1 for i in range(21, 40) if i % 3 == 0)
    assert eng.purge.history_length() == after_mid
    assert mid.scan(T, 0, 1 << 20) == sorted(snap.items())
    mid.commit()
    eng.log.write_up_to(eng.log.end_lsn, flush=True)
    _, e2 = _reopen(disk, eng)
    assert e2.stats["recv_trx_resurrected"] == len(open_)
    assert sorted(e2.trx_sys.active) == sorted(t.id for t in open_)
    assert {t.undo.rseg_id for t in e2.trx_sys.active.values()} == set(range(8))
    assert e2.purge.history_length() == after_mid
    _assert_reads(e2, committed, ks=range(0, 60))
    assert e2.finish_background_rollback() == len(open_)
    assert e2.all_rows(T) == committed
    _assert_clean(e2, committed)
    assert _sys_used(e2) == baseline


def test_undo_log_spanning_many_pages_rolled_back_after_a_crash():
    disk, eng = _new_engine()
    rows = {key: val(key % 3, b"big%d" % key, 900) for key in range(1, 41)}
    _load(eng, rows)
    eng.purge_all()
    baseline = _sys_used(eng)
    added = eng.stats["undo_pages_added"]
    t = eng.begin()
    for key in range(1, 41):
        assert t.update(T, key, val(key % 3 + 10, b"huge", 980))
    for key in range(1, 41, 4):
        assert t.delete(T, key)
    assert eng.stats["undo_pages_added"] - added > 3
    pages = len(eng.trx_sys.undo_pages(t))
    assert pages > 4
    eng.buf.flush_all()
    eng.log.write_up_to(eng.log.end_lsn, flush=True)
    d2, e2 = _reopen(disk, eng)
    (res,) = e2.trx_sys.active.values()
    assert len(e2.trx_sys.undo_pages(res)) == pages
    _assert_reads(e2, rows)
    # roll back half, crash, recover: the undo chain is shorter, the rest rolls back
    for _ in range(25):
        assert e2.trx_sys.rollback_step(res)
    e2._check()
    left = len(e2.trx_sys.undo_pages(res))
    assert 1 < left < pages                             # emptied undo pages were freed
    e2.log.write_up_to(e2.log.end_lsn, flush=True)
    _, e3 = _reopen(d2, e2)
    (res3,) = e3.trx_sys.active.values()
    assert len(e3.trx_sys.undo_pages(res3)) == left
    assert len(e3.trx_sys.undo_records(res3)) == 50 - 25
    assert e3.finish_background_rollback() == 1
    assert e3.all_rows(T) == rows
    _assert_clean(e3, rows)
    assert _sys_used(e3) == baseline


# --------------------------------------------------------------------------------------------
# 7. the MVCC mutants, through the workload runner and the engine
# --------------------------------------------------------------------------------------------


def _workload(mutant, steps):
    with planted(mutant):
        return run_workload(WorkloadSettings(), steps)


PURGE_STEPS = [
    ["point_select", 0, 5],                 # slot 0: a REPEATABLE READ snapshot
    ["bulk_delete", 1, 1, 12],
    ["update_non_index", 1, 20, 3],
    ["update_index", 1, 21, 4],
    ["commit", 1],                          # purge wakes up after the commit
    ["purge", 30],
    ["point_select", 0, 5],
    ["point_select", 0, 20],
    ["range_select", 0, 1, 30],
    ["k_select", 0, 21],
]


def test_mutant_purge_ignores_read_view_is_caught_by_the_workload():
    clean = _workload(None, PURGE_STEPS)
    assert clean.stopped is None and clean.read_anomalies == []
    assert clean.engine_stats["purge_blocked_by_read_view"] > 0
    bad = _workload("purge-ignores-read-view", PURGE_STEPS)
    # purge began on the log of the commit after the snapshot (the runner's purge check, at
    # once), the deleted row 5 vanished from the old snapshot, then the version chain of row
    # 20 led into a freed undo page
    assert len(bad.read_anomalies) == 2, bad.read_anomalies
    assert bad.read_anomalies[0].startswith("step 4: purge began on the undo log of trx ")
    assert bad.read_anomalies[1].startswith("step 6: ") and \
        "SELECT id=5 returned no row" in bad.read_anomalies[1]
    assert (bad.stopped or "").startswith("Corruption: row 1:20: roll pointer"), bad.stopped
    assert bad.engine_stats.get("purge_del_marked_removed", 0) > 0


def test_a_rollback_that_drops_an_entry_an_old_read_view_needs_is_caught_by_the_workload(
        monkeypatch):
    """A planted bug from outside the catalogue: rollback removes the secondary index entry its
    change un-delete-marked, though an older version, still visible to an open read view, has
    it.  The current state stays consistent (fsck finds nothing); only the old view's k lookup
    differs, which the workload runner now makes after every rollback, for every open
    snapshot and every k value the rolled-back rows have had."""
    from unittest import mock

    from tornpage.engine import row, trx

    steps = [["k_select", 0, 3],            # slot 0: a REPEATABLE READ snapshot (row 3, k=3)
             ["update_index", 1, 3, 1],     # k 3 -> 4: entry (3, 3) delete-marked
             ["commit", 1],
             ["delete_insert", 2, 3, 5],    # re-inserted with k=3: (3, 3) un-delete-marked
             ["rollback", 2]]               # (3, 3) must stay, delete-marked, for slot 0
    clean = run_workload(WorkloadSettings(), steps)
    assert clean.stopped is None and clean.read_anomalies == []
    real = trx.TrxSys._undo_row

    def always_remove(m, sidx, clust_rec, space, k, pk, purge_view):
        return "removed" if row.sec_remove(m, sidx, k, pk) else "absent"

    def undo_row(self, *args, **kwargs):
        with mock.patch.object(row, "sec_remove_if_unneeded", always_remove):
            return real(self, *args, **kwargs)
    monkeypatch.setattr(trx.TrxSys, "_undo_row", undo_row)
    bad = run_workload(WorkloadSettings(), steps)
    assert bad.stopped is None
    assert len(bad.read_anomalies) == 1, bad.read_anomalies
    assert re.fullmatch(r"step 4: trx \d+ \(REPEATABLE READ\) SELECT id WHERE k=3 returned \[\], "
                        r"the snapshot model expects \[3\]", bad.read_anomalies[0])


def test_purge_at_the_boundary_of_an_open_view_is_caught_when_it_begins(monkeypatch):
    """A planted bug from outside the catalogue: purge takes its view's low_limit_no as
    exclusive, so the log of a commit numbered exactly that (the first commit after the view
    opened, with no id handed out in between) is purged under an open snapshot.  The runner's
    own model of commits and snapshots flags the purge as it begins; no read of the workload
    reaches what it freed, so nothing else would."""
    import dataclasses

    from tornpage.engine import purge

    steps = [["update_non_index", 1, 5, 3],     # slot 1 writes
             ["point_select", 0, 7],            # slot 0 begins and takes its snapshot
             ["commit", 1],                     # trx_no == slot 0's view's low_limit_no
             ["purge", 10],
             ["commit", 0]]                     # the snapshot ends without reading row 5 again
    clean = run_workload(WorkloadSettings(), steps)
    assert clean.stopped is None and clean.read_anomalies == []
    assert clean.engine_stats["purge_blocked_by_read_view"] > 0
    real = purge.PurgeSys.view
    monkeypatch.setattr(purge.PurgeSys, "view", lambda self: dataclasses.replace(
        real(self), low_limit_no=real(self).low_limit_no + 1))
    bad = run_workload(WorkloadSettings(), steps)
    assert bad.stopped is None
    assert len(bad.read_anomalies) == 1, bad.read_anomalies
    assert re.fullmatch(r"step 2: purge began on the undo log of trx \d+, committed 1 commit\(s\) "
                        r"after the snapshot of trx \d+ \(REPEATABLE READ\), which is still "
                        r"open and may read the versions that log holds", bad.read_anomalies[0])

def test_mutant_rr_read_view_per_statement_is_caught_by_the_workload():
    steps = [["point_select", 0, 5], ["update_non_index", 1, 5, 9], ["commit", 1],
             ["point_select", 0, 5]]
    clean = _workload(None, steps)
    assert clean.stopped is None and clean.read_anomalies == []
    bad = _workload("rr-read-view-per-statement", steps)
    assert bad.stopped is None and len(bad.read_anomalies) >= 2, bad.read_anomalies
    # with no view left open between statements, purge starts on the commit's log at once
    assert bad.read_anomalies[0].startswith("step 2: purge began on the undo log of trx ")
    assert bad.read_anomalies[1].startswith("step 3: ") and "SELECT id=5" in bad.read_anomalies[1]
    # READ COMMITTED is allowed to see the commit: no anomaly, mutant or not
    rc = WorkloadSettings(isolation="READ-COMMITTED")
    for m in (None, "rr-read-view-per-statement"):
        with planted(m):
            assert run_workload(rc, steps).read_anomalies == []


@pytest.mark.parametrize("what", ["delete", "update-k"])
@pytest.mark.parametrize("mutant", [None, "sec-index-not-rolled-back"])
def test_mutant_sec_index_not_rolled_back_is_caught_by_check_quiesced(mutant, what):
    disk, eng = _new_engine()
    _load(eng, ROWS)
    with planted(mutant):
        t = eng.begin()
        if what == "delete":
            assert t.delete(T, 5)
        else:
            assert t.update(T, 5, val(4242))
        t.rollback()
    assert eng.all_rows(T) == ROWS                      # the clustered index is right
    problems = check_quiesced(eng)
    if mutant is None:
        assert problems == []
        _assert_clean(eng, ROWS)
    else:
        assert any("index k" in p and "(50, 5)" in p for p in problems), problems
