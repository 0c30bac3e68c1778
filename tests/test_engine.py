"""Engine behaviour over faultfs.SimDisk: transactions, locks, a seeded stress against a dict
model, crash recovery from CrashStateBuilder images, the doublewrite buffer, idempotent recovery
and deterministic traces.

Crash images are built the way campaigns/crashcheck.py builds them: run a workload once on a
SimDisk, then ``CrashStateBuilder(base, trace, profile).build(CrashPlan(position, choices))``
and ``Engine.open`` a fresh SimDisk over the image.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from tornpage.checkers import probes as probes_mod
from tornpage.engine import (Corruption, DuplicateKey, Engine, EngineConfig, EngineError, EnginePanic,
                    LockConflict, PageFromFuture, RecoveryError, TornPageUnrepairable,
                    TrxStateError)
from tornpage.engine import btr, btr_page as bp, log as L, trx_sys
from tornpage.engine.config import ConfigError
from tornpage.engine import page as P
from tornpage.faultfs import (DROP, KEEP, TEAR, Choice, CrashPlan, CrashStateBuilder, SimDisk, Write,
                     tear_units)
from tornpage.faultfs.trace import Create, Fsync

T = "t"
PS = 4096


def _cfg(**kw) -> EngineConfig:
    base = dict(page_size=PS, buffer_pool_pages=16, log_file_size=96 * 1024,
                doublewrite_batch_pages=8, page_cleaner_batch=4)
    base.update(kw)
    return EngineConfig(**base)


def _new_engine(**kw):
    disk = SimDisk()
    eng = Engine.create(disk, _cfg(**kw))
    eng.create_table(T)
    return disk, eng


def _probes(eng) -> dict:
    return dict(probes_mod.collect(eng.stats))


# --------------------------------------------------------------------------------------------
# a seeded workload driver and a committed-prefix oracle
# --------------------------------------------------------------------------------------------


@dataclass
class Commit:
    trx: int
    begin: int          # trace length when commit was called
    ack: int            # trace length when commit returned (acknowledged)
    writes: dict        # key -> value, None = deleted


@dataclass
class Run:
    disk: SimDisk
    config: EngineConfig
    initial: dict
    setup_end: int
    commits: list = field(default_factory=list)
    open_writes: dict = field(default_factory=dict)    # trx id -> writes, never committed
    engine: Engine | None = None

    def builder(self) -> CrashStateBuilder:
        if not hasattr(self, "_b"):
            self._b = CrashStateBuilder(self.disk.base, self.disk.trace, self.disk.profile)
        return self._b


def _value(rng: random.Random, k: int) -> bytes:
    return bytes([k % 251, rng.randrange(256)]) * rng.randrange(20, 200)


def run_workload(seed: int, config: EngineConfig, n_ops: int = 150, n_initial: int = 40,
                 leave_open: bool = True, device: str = "sector512") -> Run:
    """Create, load ``n_initial`` rows, checkpoint, then ``n_ops`` random statements over three
    interleaved transaction slots plus background steps.  A statement hitting a lock rolls its
    transaction back.  With ``leave_open`` one more transaction's changes are left uncommitted
    (and made durable in the log by a later commit)."""
    rng = random.Random(seed)
    disk = SimDisk(device)
    eng = Engine.create(disk, config)
    eng.create_table(T)
    trx = eng.begin()
    for k in range(n_initial):
        trx.insert(T, k, _value(rng, k))
    trx.commit()
    eng.make_checkpoint(flush=True)
    run = Run(disk, config, eng.all_rows(T), len(disk.trace))
    slots: dict[int, object] = {}
    writes: dict[int, dict] = {}

    def commit(t):
        b = len(disk.trace)
        t.commit()
        run.commits.append(Commit(t.id, b, len(disk.trace), writes.pop(t.id)))

    for _ in range(n_ops):
        op = rng.choice(["ins", "ins", "upd", "upd", "del", "get", "scan", "commit", "commit",
                         "rollback", "bg", "bg"])
        if op == "bg":
            eng.run_background(rng.randrange(1, 4))
            continue
        s = rng.randrange(3)
        if op in ("commit", "rollback"):
            t = slots.pop(s, None)
            if t is None:
                continue
            if op == "commit":
                commit(t)
            else:
                t.rollback()
                writes.pop(t.id)
            continue
        t = slots.get(s)
        if t is None:
            t = slots[s] = eng.begin()
            writes[t.id] = {}
        k = rng.randrange(n_initial * 3)
        try:
            if op == "ins":
                v = _value(rng, k)
                try:
                    t.insert(T, k, v)
                    writes[t.id][k] = v
                except DuplicateKey:
                    pass
            elif op == "upd":
                v = _value(rng, k)
                if t.update(T, k, v):
                    writes[t.id][k] = v
            elif op == "del":
                if t.delete(T, k):
                    writes[t.id][k] = None
            elif op == "get":
                t.get(T, k)
            else:
                t.scan(T, k, k + 10)
        except LockConflict:
            t.rollback()
            slots.pop(s)
            writes.pop(t.id)
    for s in sorted(slots):
        commit(slots.pop(s))
    if leave_open:
        lt = eng.begin()
        writes[lt.id] = {}
        for k in range(10_000, 10_012):
            v = _value(rng, k)
            lt.insert(T, k, v)
            writes[lt.id][k] = v
        for k in (1, 2, 3):
            lt.update(T, k, b"uncommitted %d" % k)
            writes[lt.id][k] = b"uncommitted %d" % k
        lt.delete(T, 4)
        writes[lt.id][4] = None
        t2 = eng.begin()                      # its commit makes lt's redo durable too
        writes[t2.id] = {}
        t2.insert(T, 20_000, b"after")
        writes[t2.id][20_000] = b"after"
        commit(t2)
        run.open_writes = writes
    run.engine = eng
    return run


def allowed_states(run: Run, pos: int) -> list[dict]:
    """Row states a crash at trace position ``pos`` may recover to: the state after a prefix of
    the commits that includes every acknowledged one and no commit not yet begun."""
    state = dict(run.initial)
    states = [dict(state)]
    for c in run.commits:
        if c.begin >= pos and c.ack > pos:     # (a read-only commit has begin == ack)
            break
        for k, v in c.writes.items():
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
        states.append(dict(state))
    must = sum(1 for c in run.commits if c.ack <= pos)
    assert must < len(states)
    return states[must:]


def final_state(run: Run) -> dict:
    return allowed_states(run, len(run.disk.trace) + 1)[-1]


def recover(run: Run, image, config: EngineConfig | None = None):
    """Open a crash image; finish background rollback; return (engine, rows, probes at open).
    The recovery's SimDisk is ``engine.disk``."""
    disk = SimDisk(run.disk.profile, image)
    eng = Engine.open(disk, config or run.config)
    eng.disk = disk
    at_open = _probes(eng)
    eng.finish_background_rollback()
    eng._check()
    return eng, eng.all_rows(T), at_open


def drop_all(run: Run, pos: int) -> CrashPlan:
    return CrashPlan(pos, tuple((i, Choice(DROP)) for i in run.builder().pending(pos)))


# --------------------------------------------------------------------------------------------
# transactions and locks
# --------------------------------------------------------------------------------------------


def test_crud_commit_and_scan():
    disk, eng = _new_engine()
    trx = eng.begin()
    for k in (5, 1, 9, 3):
        trx.insert(T, k, b"v%d" % k)
    assert trx.get(T, 9) == b"v9"
    assert trx.get(T, 2) is None
    assert trx.update(T, 3, b"three") is True
    assert trx.update(T, 4, b"nope") is False
    assert trx.delete(T, 5) is True
    assert trx.delete(T, 5) is False
    trx.put(T, 7, b"seven")                    # insert through put
    trx.put(T, 7, b"SEVEN")                    # update through put
    assert trx.scan(T, 0, 100) == [(1, b"v1"), (3, b"three"), (7, b"SEVEN"), (9, b"v9")]
    assert trx.scan(T, 2, 8) == [(3, b"three"), (7, b"SEVEN")]
    assert trx.scan(T, 0, 100, limit=2) == [(1, b"v1"), (3, b"three")]
    lsn = trx.commit()
    assert lsn > 0 and eng.log.flushed_lsn >= lsn        # durable when commit returns
    with pytest.raises(TrxStateError):
        trx.get(T, 1)
    with pytest.raises(TrxStateError):
        trx.commit()
    assert eng.all_rows(T) == {1: b"v1", 3: b"three", 7: b"SEVEN", 9: b"v9"}
    reader = eng.begin()
    assert reader.get(T, 3) == b"three"
    assert reader.commit() == 0                           # changed nothing: no commit LSN
    eng._check()


def test_rollback_restores_the_rows():
    disk, eng = _new_engine()
    t = eng.begin()
    for k in range(50):
        t.insert(T, k, b"orig%d" % k * 30)
    t.commit()
    before = eng.all_rows(T)
    t = eng.begin()
    for k in range(0, 50, 2):
        t.update(T, k, b"changed" * 30)
    for k in range(1, 50, 4):
        t.delete(T, k)
    for k in range(100, 160):
        t.insert(T, k, b"new" * 40)
    assert t.get(T, 100) == b"new" * 40
    assert eng.stats["undo_pages_added"] > 0               # an undo log of several pages
    t.rollback()
    assert t.state == "ROLLED_BACK"
    assert eng.all_rows(T) == before
    with pytest.raises(TrxStateError):
        t.insert(T, 1000, b"x")
    eng._check()
    # the undo log is gone: every rollback segment slot free, every undo page freed
    from tornpage.engine import fsp
    cfg = eng.config
    for r in range(cfg.n_rollback_segments):
        rseg = eng.buf.get(0, trx_sys.FIRST_RSEG_PAGE_NO + r).data
        assert set(trx_sys.rseg_slots(rseg, PS)) == {P.FIL_NULL}
    reserved = trx_sys.first_free_page(cfg.n_rollback_segments,
                                       trx_sys.dblwr_area_pages(cfg.doublewrite_batch_pages))
    assert fsp.used_pages(eng.buf.get(0, 0).data) == list(range(reserved))


def test_second_writer_of_a_row_gets_lock_conflict():
    disk, eng = _new_engine()
    t0 = eng.begin()
    t0.insert(T, 1, b"one")
    t0.commit()
    a, b = eng.begin(), eng.begin()
    a.update(T, 1, b"by a")
    with pytest.raises(LockConflict) as ei:
        b.update(T, 1, b"by b")
    assert ei.value.holder == a.id and ei.value.key == 1 and ei.value.table == T
    with pytest.raises(LockConflict):
        b.delete(T, 1)
    with pytest.raises(LockConflict):
        b.get_for_update(T, 1)                            # a locking read against a's X lock
    assert b.get(T, 1) == b"one"                          # a consistent read takes no lock
    a.insert(T, 2, b"two")
    with pytest.raises(LockConflict):
        b.insert(T, 2, b"two by b")
    # b is still usable on other rows
    b.insert(T, 3, b"three")
    a.commit()
    assert b.get(T, 1) == b"one"                          # b's snapshot (REPEATABLE READ)
    assert b.get_for_update(T, 1) == b"by a"              # the current version
    b.update(T, 1, b"by b")
    b.commit()
    assert eng.all_rows(T) == {1: b"by b", 2: b"two", 3: b"three"}


def test_consistent_reads_take_no_locks_and_keep_their_snapshot():
    disk, eng = _new_engine()
    t = eng.begin()
    t.insert(T, 1, b"x")
    t.commit()
    r1, r2 = eng.begin(), eng.begin("READ-COMMITTED")
    assert r1.get(T, 1) == b"x" and r2.get(T, 1) == b"x"
    w = eng.begin()
    assert w.update(T, 1, b"y") is True                   # readers hold no lock
    assert r1.get(T, 1) == b"x" and r2.get(T, 1) == b"x"  # uncommitted: invisible
    w.commit()
    assert r1.get(T, 1) == b"x"                           # REPEATABLE READ: its snapshot
    assert r2.get(T, 1) == b"y"                           # READ COMMITTED: the latest commit
    assert eng.stats["mvcc_versions_built"] >= 2
    r1.commit()
    r2.commit()
    assert eng.trx_sys.lock_sys.locks == {}


def test_duplicate_key():
    disk, eng = _new_engine()
    t = eng.begin()
    t.insert(T, 1, b"a")
    with pytest.raises(DuplicateKey):
        t.insert(T, 1, b"b")                              # own row
    t.commit()
    t = eng.begin()
    with pytest.raises(DuplicateKey):
        t.insert(T, 1, b"c")                              # committed row
    t.delete(T, 1)
    t.insert(T, 1, b"reinserted")                         # after delete it is free again
    t.commit()
    assert eng.all_rows(T) == {1: b"reinserted"}


def test_a_transaction_sees_its_own_changes():
    disk, eng = _new_engine()
    t = eng.begin()
    t.insert(T, 10, b"ten")
    t.insert(T, 20, b"twenty")
    t.commit()
    w = eng.begin()
    w.update(T, 10, b"TEN")
    w.delete(T, 20)
    w.insert(T, 30, b"thirty")
    assert w.get(T, 10) == b"TEN"
    assert w.get(T, 20) is None
    assert w.get(T, 30) == b"thirty"
    assert w.scan(T, 0, 100) == [(10, b"TEN"), (30, b"thirty")]
    other = eng.begin()
    assert other.get(T, 10) == b"ten"                     # not visible to others
    assert other.scan(T, 0, 100) == [(10, b"ten"), (20, b"twenty")]
    with pytest.raises(LockConflict):
        other.get_for_update(T, 10)                       # locked
    w.rollback()
    assert other.get(T, 10) == b"ten"
    assert other.scan(T, 0, 100) == [(10, b"ten"), (20, b"twenty")]


def test_engine_api_errors():
    disk, eng = _new_engine()
    with pytest.raises(EngineError):
        eng.create_table(T)                               # exists
    with pytest.raises(EngineError):
        eng.create_table("bad name")
    t = eng.begin()
    with pytest.raises(EngineError):
        t.insert("missing", 1, b"x")
    limit = btr.max_record_size(PS) - bp.REC_VALUE
    t.insert(T, 1, b"x" * limit)                          # the largest value fits
    with pytest.raises(EngineError):
        t.insert(T, 2, b"x" * (limit + 1))
    with pytest.raises(EngineError):
        t.insert(T, 3, "not bytes")
    t.commit()
    with pytest.raises(RecoveryError):
        Engine.create(disk, _cfg())                       # already a database
    with pytest.raises(RecoveryError):
        Engine.open(SimDisk(), _cfg())                    # not a database
    eng.close()
    with pytest.raises(EngineError):
        eng.begin()


@pytest.mark.parametrize("key", [-1, 1 << 64, "5", 2.5])
def test_a_bad_key_is_a_typed_error_not_an_engine_panic(key):
    """Keys are unsigned 64-bit integers.  A key outside that range used to reach
    struct.pack inside the insert's mtr after the undo log had been assigned, so the engine
    panicked (EnginePanic for every later call) instead of rejecting the argument."""
    disk, eng = _new_engine()
    t = eng.begin()
    with pytest.raises(EngineError) as ei:
        t.insert(T, key, b"x")
    assert not isinstance(ei.value, EnginePanic)
    with pytest.raises(EngineError):
        t.put(T, key, b"x")
    with pytest.raises(EngineError):
        t.get(T, key)
    with pytest.raises(EngineError):
        t.update(T, key, b"x")
    with pytest.raises(EngineError):
        t.delete(T, key)
    assert eng.panicked is None
    t.insert(T, 1, b"still usable")                  # the same transaction carries on
    t.commit()
    assert eng.all_rows(T) == {1: b"still usable"}
    eng._check()


def test_the_largest_and_smallest_keys_work():
    disk, eng = _new_engine()
    t = eng.begin()
    for k in (0, (1 << 64) - 1, 1 << 63):
        t.insert(T, k, b"%d" % k)
    t.commit()
    assert sorted(eng.all_rows(T)) == [0, 1 << 63, (1 << 64) - 1]


def test_second_table_and_reopen():
    disk, eng = _new_engine()
    eng.create_table("u")
    t = eng.begin()
    t.insert(T, 1, b"t1")
    t.insert("u", 1, b"u1")
    t.commit()
    eng.close()
    eng2 = Engine.open(disk, _cfg())
    assert sorted(eng2.tables) == ["t", "u"]
    assert eng2.all_rows(T) == {1: b"t1"} and eng2.all_rows("u") == {1: b"u1"}


# --------------------------------------------------------------------------------------------
# seeded random stress against a dict model
# --------------------------------------------------------------------------------------------


def test_seeded_stress_against_a_dict_model():
    rng = random.Random(20240517)
    cfg = _cfg(buffer_pool_pages=16, log_file_size=EngineConfig.min_log_file_size(PS))
    disk = SimDisk()
    eng = Engine.create(disk, cfg)
    eng.create_table(T)
    idx = eng.tables[T]
    assert idx._check(eng.buf)["height"] == 1
    committed: dict[int, bytes] = {}
    slots: dict[int, tuple] = {}           # slot -> (trx, its writes)
    ops = conflicts = commits = 0
    for step in range(700):
        s = rng.randrange(4)
        if s not in slots:     # READ COMMITTED: every read sees the latest commits
            slots[s] = (eng.begin("READ-COMMITTED"), {})
        t, w = slots[s]
        r = rng.random()
        k = rng.randrange(400)

        def expect(key):
            return w[key] if key in w else committed.get(key)
        try:
            if r < 0.40:
                v = bytes([k % 256]) * rng.randrange(30, 600)
                if expect(k) is None:
                    t.insert(T, k, v)
                    w[k] = v
                else:
                    with pytest.raises(DuplicateKey):
                        t.insert(T, k, v)
            elif r < 0.55:
                v = bytes([(k + step) % 256]) * rng.randrange(1, 700)
                assert t.update(T, k, v) == (expect(k) is not None)
                if expect(k) is not None:
                    w[k] = v
            elif r < 0.65:
                assert t.delete(T, k) == (expect(k) is not None)
                w[k] = None
            elif r < 0.78:
                assert t.get(T, k) == expect(k)
            elif r < 0.83:
                got = t.scan(T, k, k + 25)
                keys = [x for x, _ in got]
                assert keys == sorted(keys)
                for x, v in got:
                    assert v == expect(x)
            elif r < 0.93:
                t.commit()
                for x, v in w.items():
                    if v is None:
                        committed.pop(x, None)
                    else:
                        committed[x] = v
                del slots[s]
                commits += 1
            elif r < 0.99:
                t.rollback()
                del slots[s]
            else:
                eng.run_background(rng.randrange(1, 5))
        except LockConflict:
            conflicts += 1
            t.rollback()
            del slots[s]
        ops += 1
        eng._check()                                          # after every operation
    for s in sorted(slots):
        slots[s][0].rollback()
    eng._check()
    assert eng.all_rows(T) == committed
    eng.purge_all()                      # no read view open: the whole history list goes
    assert eng.purge.history_length() == 0
    eng._check()
    info = idx._check(eng.buf)
    assert eng.all_rows(T) == committed
    assert info["records"] == len(committed) > 60       # no delete-marked record left
    assert info["height"] >= 2                                 # the root was raised
    assert eng.stats["btr_page_splits"] >= 10
    assert eng.stats["btr_root_raises"] >= 1
    assert eng.stats["buf_lru_evictions"] > 0                  # a 16-page pool overflowed
    assert eng.stats["log_sync_checkpoints"] > 0               # the small log filled up
    assert conflicts > 0 and commits > 20
    assert eng.log.lsn - L.LOG_START_LSN > eng.log.capacity    # and wrapped
    # everything survives a clean restart
    eng.close()
    eng2 = Engine.open(disk, cfg)
    assert eng2.all_rows(T) == committed
    assert eng2.stats["recv_records_applied"] == 0
    eng2._check()


# --------------------------------------------------------------------------------------------
# recovery
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run1() -> Run:
    return run_workload(1, _cfg())


def test_clean_close_and_reopen_keeps_every_committed_row():
    run = run_workload(2, _cfg(), leave_open=False)
    expect = final_state(run)
    run.engine.close()
    eng = Engine.open(run.disk, run.config)
    assert eng.all_rows(T) == expect
    assert eng.stats["recv_records_applied"] == 0              # a sharp checkpoint at close
    assert eng.stats["recv_trx_resurrected"] == 0
    eng._check()
    # and again, after more work
    t = eng.begin()
    t.insert(T, 99_999, b"more")
    t.commit()
    eng.close()
    assert Engine.open(run.disk, run.config).all_rows(T) == {**expect, 99_999: b"more"}


def test_close_with_an_open_transaction_then_reopen_rolls_it_back():
    run = run_workload(3, _cfg(), leave_open=True)
    assert len(run.engine.trx_sys.active) == 1
    run.engine.close()                   # flushes the open transaction's changes too
    eng = Engine.open(run.disk, run.config)
    assert eng.stats["recv_trx_resurrected"] == 1
    assert eng.finish_background_rollback() == 1
    assert eng.all_rows(T) == final_state(run)
    eng._check()


def test_crash_keeping_everything_recovers_committed_and_rolls_back_uncommitted(run1):
    b = run1.builder()
    pos = len(run1.disk.trace)
    eng, rows, at_open = recover(run1, b.build(CrashPlan(pos)))
    assert rows == final_state(run1)
    assert at_open.get("trx_resurrected") == 1
    assert _probes(eng).get("background_rollback") == 1
    lt = next(iter(run1.open_writes.values()))
    assert all(k not in rows for k in lt if k >= 10_000)        # its inserts are gone
    assert rows[1] != b"uncommitted 1" and 4 in rows            # its update and delete undone


@pytest.mark.parametrize("mode", ["keep", "drop"])
def test_crash_at_many_positions(run1, mode):
    """Crash after every 5th operation, keeping every pending write (a process kill) or
    dropping all of them: the recovered rows are a committed prefix with every acknowledged
    commit, and nothing uncommitted."""
    b = run1.builder()
    totals = probes_mod.Counter()
    n = 0
    for pos in range(run1.setup_end + 1, len(run1.disk.trace) + 1, 5):
        plan = CrashPlan(pos) if mode == "keep" else drop_all(run1, pos)
        eng, rows, at_open = recover(run1, b.build(plan))
        assert rows in allowed_states(run1, pos), (mode, pos)
        totals.update(_probes(eng))
        n += 1
    assert n > 30
    assert totals["redo_applied"] > 0
    assert totals["redo_skipped_by_page_lsn"] > 0
    assert totals["trx_resurrected"] > 0
    assert totals["background_rollback"] == totals["trx_resurrected"]
    assert totals["page_recreated_from_redo"] > 0
    assert totals["doublewrite_copy_ignored_page_valid"] > 0


def test_crash_states_across_a_wrapped_log():
    cfg = _cfg(log_file_size=EngineConfig.min_log_file_size(PS))
    run = run_workload(31, cfg, n_ops=700)
    log = run.engine.log
    assert log.lsn - L.LOG_START_LSN > log.capacity                 # the circular file wrapped
    assert _crash_all_along(run, 13) > 60


def _crash_all_along(run: Run, step: int, check=lambda eng, pos: None) -> int:
    """Crash after every ``step``-th operation of the workload, alternately keeping every
    pending write and dropping them all; each recovery must give an allowed state and pass
    ``check(engine, position)``.  Returns how many crash states were recovered."""
    b = run.builder()
    n = 0
    for pos in range(run.setup_end + 1, len(run.disk.trace) + 1, step):
        plan = drop_all(run, pos) if n % 2 else CrashPlan(pos)
        eng, rows, _ = recover(run, b.build(plan))
        assert rows in allowed_states(run, pos), pos
        check(eng, pos)
        n += 1
    return n


def _aged_run(bits: int, trx_ids: bool) -> Run:
    """run1's workload on a database created aged so that its LSN crosses ``2**bits`` in the
    middle of the workload (and, with ``trx_ids``, its trx ids cross 2**32 early in it).  The
    offset is measured on a new database running the same workload: the LSN it reaches halfway
    between the end of the setup and the end."""
    fresh = run_workload(1, _cfg())
    setup = fresh.builder().build(CrashPlan(fresh.setup_end))
    setup_lsn = Engine.open(SimDisk(image=setup), fresh.config).log.lsn
    mid = (setup_lsn + fresh.engine.log.lsn) // 2
    start = (1 << bits) - (mid - L.LOG_START_LSN)
    start -= start % 512
    first_id = (1 << 32) - 12
    cfg = _cfg(initial_lsn=start, initial_trx_id=first_id - trx_sys.TRX_SYS_TRX_ID_WRITE_MARGIN
               if trx_ids else 0)
    run = run_workload(1, cfg)
    assert run.engine.log.lsn > 1 << bits
    if trx_ids:
        assert run.engine.trx_sys.max_trx_id > 1 << 32
    return run


@pytest.mark.parametrize("bits,trx_ids", [(32, True), (39, False)])
def test_an_aged_database_recovers_across_its_counters_width_boundaries(bits, trx_ids):
    """A database created as if in service for years (EngineConfig.initial_lsn and
    initial_trx_id): crashes all along a workload whose LSN crosses 2**32 (the page trailer's
    32 bits) or 2**39 (log block numbers wrap; they once reached 2**30, the run-start flag, and
    the scan stopped there, losing committed redo) recover the committed state, and trx ids
    past 2**32 are not reused."""
    run = _aged_run(bits, trx_ids)

    def no_trx_id_reused(eng, pos):
        assert eng.begin().id > max([c.trx for c in run.commits if c.ack <= pos], default=0)
    assert _crash_all_along(run, 7, no_trx_id_reused) > 20
    eng, rows, _ = recover(run, run.builder().build(CrashPlan(len(run.disk.trace))))
    assert eng.log.lsn > 1 << bits and rows == final_state(run)


@pytest.mark.parametrize("every", [1, 3])
def test_log_flushes_at_mtr_boundaries_make_those_boundaries_durable(every):
    """log_flush_every_mtrs=N: the log is written and fsynced after every N-th mtr commit, as a
    concurrent commit would, so a crash right after such a flush recovers exactly to that mtr's
    end, with no commit involved."""
    disk, eng = _new_engine(log_flush_every_mtrs=every)
    before = eng.stats["log_flushes_at_mtr_boundary"]
    t = eng.begin()
    ends = []
    for k in range(12):
        t.insert(T, k, b"x" * 40)
        if eng.stats["mtr_committed"] % every == 0:       # the insert's last mtr flushed
            assert eng.log.flushed_lsn >= eng.log.end_lsn     # durable without a commit
            ends.append((len(disk.trace), eng.log.end_lsn))
    assert len(ends) >= 12 // (every + 1)
    assert eng.stats["log_flushes_at_mtr_boundary"] - before >= 12 // every
    b = CrashStateBuilder(disk.base, disk.trace, disk.profile)
    for pos, end in ends:
        plan = CrashPlan(pos, tuple((i, Choice(DROP)) for i in b.pending(pos)))
        e2 = Engine.open(SimDisk(image=b.build(plan)), eng.config)
        assert e2.recovered_lsn == end
        e2.finish_background_rollback()
        assert e2.all_rows(T) == {}                # the transaction never committed


def test_log_block_numbers_stay_below_the_run_start_flag():
    """Block numbers run 1..LOG_BLOCK_NO_MASK and wrap after it (InnoDB's reach 2**30, our
    LOG_BLOCK_RUN_START_MASK), and the distance between two numbers wraps with them."""
    for lsn in range((1 << 39) - 4 * 512, (1 << 39) + 4 * 512, 512):
        assert 1 <= L.block_no(lsn) <= L.LOG_BLOCK_NO_MASK
        assert L.blocks_between(L.block_no(lsn + 512), L.block_no(lsn)) == 1
    assert L.blocks_between(L.block_no(1 << 40), L.block_no((1 << 40) - 512 * 9)) == 9


@pytest.mark.parametrize("kw", [{"initial_lsn": 8192 + 100}, {"initial_lsn": 4096},
                                {"initial_lsn": 1 << 63}, {"initial_trx_id": -1},
                                {"initial_trx_id": 1 << 48}, {"log_flush_every_mtrs": -1}])
def test_an_impossible_age_is_a_config_error(kw):
    with pytest.raises(ConfigError):
        _cfg(**kw)


@pytest.mark.parametrize("where", ["in the header", "not a block start", "past the end"])
def test_a_checkpoint_naming_an_offset_outside_the_log_is_refused(where):
    disk, eng = _new_engine()
    eng.close()
    f = disk.open("ib_logfile0")
    ck = L.read_checkpoints(f)[0]
    offset = {"in the header": 1024, "not a block start": ck.offset + 100,
              "past the end": eng.config.log_file_size}[where]
    f.pwrite(L.encode_checkpoint(ck.no, ck.lsn, offset), ck.slot)   # checksum-valid
    with pytest.raises(RecoveryError, match=f"names log file offset {offset},"):
        Engine.open(disk, eng.config)


def test_trx_ids_are_never_reused_after_recovery():
    disk, eng = _new_engine(log_file_size=1 << 20)
    ids = []
    for i in range(700):                     # crosses TRX_SYS_TRX_ID_WRITE_MARGIN twice
        t = eng.begin()
        ids.append(t.id)
        if i % 50 == 0:
            t.insert(T, i, b"x")
        t.commit()
    assert ids == sorted(set(ids))
    b = CrashStateBuilder(disk.base, disk.trace, disk.profile)
    for plan in (CrashPlan(len(disk.trace)), drop_all_plan(disk)):
        e2 = Engine.open(SimDisk(image=b.build(plan)), eng.config)
        assert e2.begin().id > max(ids)


def test_random_crash_plans(run1):
    """Seeded random plans as crashcheck.draw_plan makes them: a position and for each pending
    operation keep / drop / tear (aligned 512-byte units, lost units keep old data)."""
    rng = random.Random(99)
    b = run1.builder()
    unit = b.profile.tear_unit
    tears = 0
    totals = probes_mod.Counter()
    for _ in range(60):
        pos = rng.randrange(run1.setup_end + 1, len(run1.disk.trace) + 1)
        choices = []
        for i in b.pending(pos):
            op = run1.disk.trace.ops[i]
            kind = rng.choice([KEEP, DROP, TEAR] if isinstance(op, Write) else [KEEP, DROP])
            if kind == TEAR:
                n = len(tear_units(op.offset, len(op.data), unit))
                if n < 2:
                    continue
                mask = rng.randrange(1, (1 << n) - 1)
                choices.append((i, Choice(TEAR, tuple(u for u in range(n) if mask >> u & 1))))
                tears += 1
            elif kind == DROP:
                choices.append((i, Choice(DROP)))
        eng, rows, _ = recover(run1, b.build(CrashPlan(pos, tuple(choices))))
        assert rows in allowed_states(run1, pos), pos
        totals.update(_probes(eng))
    assert tears > 10
    assert totals["doublewrite_repair"] > 0
    # a lost log block ends the scan; after a partial (closed) block, the usual case since every
    # fsync closes the block, that is the normal end of the log
    assert totals["redo_scan_stopped_partial_block"] > 0


def test_redo_applied_when_dirty_pages_were_never_flushed():
    disk, eng = _new_engine(log_file_size=1 << 20)
    t = eng.begin()
    for k in range(30):
        t.insert(T, k, b"r%d" % k * 10)
    t.commit()
    assert eng.buf.flush_list                                   # dirty, not written
    image = disk.live_image()
    b = CrashStateBuilder(disk.base, disk.trace, disk.profile)
    for img in (image, b.build(drop_all_plan(disk))):
        eng2 = Engine.open(SimDisk(image=img), eng.config)
        assert eng2.all_rows(T) == {k: b"r%d" % k * 10 for k in range(30)}
        p = _probes(eng2)
        assert p.get("redo_applied", 0) > 0
        assert p.get("redo_skipped_by_page_lsn", 0) == 0
        assert p.get("redo_scan_stopped_partial_block") == 1


def drop_all_plan(disk: SimDisk) -> CrashPlan:
    b = CrashStateBuilder(disk.base, disk.trace, disk.profile)
    pos = len(disk.trace)
    return CrashPlan(pos, tuple((i, Choice(DROP)) for i in b.pending(pos)))


def test_redo_skipped_for_pages_flushed_after_the_checkpoint():
    disk, eng = _new_engine(log_file_size=1 << 20)
    t = eng.begin()
    for k in range(30):
        t.insert(T, k, b"a" * 50)
    t.commit()
    eng.checkpoint()                     # fuzzy: the pages stay dirty, the checkpoint is old
    ck = eng.log.checkpoint_lsn
    t = eng.begin()
    for k in range(30):
        t.update(T, k, b"b" * 60)
    t.commit()
    eng.buf.flush_all()                  # pages now newer than the checkpoint's redo
    assert eng.log.checkpoint_lsn == ck
    expect = {k: b"b" * 60 for k in range(30)}
    eng2 = Engine.open(SimDisk(image=disk.live_image()), eng.config)
    assert eng2.all_rows(T) == expect
    p = _probes(eng2)
    assert p.get("redo_skipped_by_page_lsn", 0) > 0
    assert p.get("redo_applied", 0) == 0


def test_background_rollback_of_a_resurrected_transaction():
    disk, eng = _new_engine(log_file_size=1 << 20)
    t = eng.begin()
    for k in range(40):
        t.insert(T, k, b"c%d" % k)
    t.commit()
    base_rows = eng.all_rows(T)
    loser = eng.begin()
    for k in range(0, 40, 3):
        loser.update(T, k, b"loser" * 20)
    for k in range(100, 140):
        loser.insert(T, k, b"loser-new" * 10)
    loser.delete(T, 1)
    eng.buf.flush_all()                  # the uncommitted changes even reach the data files
    img = disk.live_image()
    eng2 = Engine.open(SimDisk(image=img), eng.config)
    assert eng2.stats["recv_trx_resurrected"] == 1
    (res,) = [x for x in eng2.trx_sys.active.values() if x.resurrected]
    assert res.id == loser.id
    # a resurrected transaction's rows stay locked against new work until rolled back
    nt = eng2.begin()
    with pytest.raises(LockConflict):
        nt.get_for_update(T, 100)
    assert nt.get(T, 100) is None and nt.get(T, 1) == b"c1"   # consistent reads: committed
    with pytest.raises(TrxStateError):
        eng2.commit(res)                 # nobody can commit a resurrected transaction
    # the background task rolls it back step by step
    steps = 0
    while any(x.resurrected for x in eng2.trx_sys.active.values()):
        assert eng2.run_background(1) == 1
        steps += 1
        assert steps < 1000
    assert eng2.stats["undo_records_rolled_back_background"] == 40 + 14 + 1
    assert _probes(eng2)["background_rollback"] == 1
    assert nt.get(T, 100) is None
    assert eng2.all_rows(T) == base_rows
    nt.commit()
    eng2._check()


def test_crash_in_the_middle_of_a_rollback_resumes_it():
    disk, eng = _new_engine(log_file_size=1 << 20)
    t = eng.begin()
    for k in range(30):
        t.insert(T, k, b"base")
    t.commit()
    base_rows = eng.all_rows(T)
    loser = eng.begin()
    for k in range(30):
        loser.update(T, k, b"x" * 300)
    for k in range(30, 60):
        loser.insert(T, k, b"y" * 300)
    done = 0
    while done < 25:
        assert eng.trx_sys.rollback_step(loser)
        done += 1
    keep = eng.begin()
    keep.insert(T, 500, b"committed after")                # makes the rollback steps durable
    keep.commit()
    eng2 = Engine.open(SimDisk(image=disk.live_image()), eng.config)
    (res,) = [x for x in eng2.trx_sys.active.values() if x.resurrected]
    assert len(eng2.trx_sys.undo_records(res)) == 60 - 25
    eng2.finish_background_rollback()
    assert eng2.all_rows(T) == {**base_rows, 500: b"committed after"}
    assert eng2.stats["undo_records_rolled_back_background"] == 35


def test_page_from_the_future_refused_at_recovery():
    """A data page whose LSN lies beyond the recovered log end (the log lost what the page
    was flushed with: a WAL violation) is refused with PageFromFuture."""
    disk, eng = _new_engine(log_file_size=1 << 20)
    t = eng.begin()
    t.insert(T, 1, b"v" * 900)
    t.commit()
    eng.checkpoint()
    t = eng.begin()
    t.update(T, 1, b"w" * 900)
    t.commit()
    mid = eng.log.lsn
    t = eng.begin()
    t.update(T, 1, b"z" * 900)
    t.commit()
    eng.buf.flush_all()
    root = P.page_lsn(disk.read_file("t.ibd")[PS:2 * PS])
    assert root > mid
    img = disk.live_image()
    logb = bytearray(img.files["ib_logfile0"])
    # destroy the log block holding the middle of the last update: the scan stops there
    blsn = mid + 600 - (mid + 600) % L.BLOCK
    off = L.LOG_FILE_HDR_SIZE + (blsn - L.LOG_START_LSN) % (eng.config.log_file_size - 2048)
    logb[off + 100] ^= 0xFF
    img.files["ib_logfile0"] = bytes(logb)
    with pytest.raises(PageFromFuture):
        Engine.open(SimDisk(image=img), eng.config)


def test_redo_scan_stops_at_a_corrupt_block_and_reports_it():
    disk, eng = _new_engine(log_file_size=1 << 20)
    t = eng.begin()
    for k in range(20):
        t.insert(T, k, b"q" * 200)
    t.commit()
    first = eng.all_rows(T)
    tail = eng.log.lsn
    t = eng.begin()
    for k in range(20, 40):
        t.insert(T, k, b"q" * 200)
    t.commit()
    img = disk.live_image()
    logb = bytearray(img.files["ib_logfile0"])
    blsn = tail - tail % L.BLOCK + L.BLOCK                       # a block of the second trx
    off = L.LOG_FILE_HDR_SIZE + (blsn - L.LOG_START_LSN) % (eng.config.log_file_size - 2048)
    logb[off + 50] ^= 0x01
    img.files["ib_logfile0"] = bytes(logb)
    eng2 = Engine.open(SimDisk(image=img), eng.config)
    assert _probes(eng2).get("redo_scan_stopped_checksum") == 1
    eng2.finish_background_rollback()
    rows = eng2.all_rows(T)
    assert rows == first                   # the second transaction's commit is past the damage
    eng2._check()


def test_no_valid_checkpoint_refuses_to_start():
    disk, eng = _new_engine()
    img = disk.live_image()
    logb = bytearray(img.files["ib_logfile0"])
    logb[L.LOG_CHECKPOINT_1:L.LOG_CHECKPOINT_1 + 512] = bytes(512)
    logb[L.LOG_CHECKPOINT_2:L.LOG_CHECKPOINT_2 + 512] = bytes(512)
    img.files["ib_logfile0"] = bytes(logb)
    with pytest.raises(RecoveryError):
        Engine.open(SimDisk(image=img), eng.config)


def test_page_size_found_in_the_doublewrite_area_when_the_first_pages_are_torn():
    """Pages 0, 1 and 2 of the system tablespace torn in place in one flush (a crash inside a
    recovery's page cleaner made exactly this): the page size comes from their doublewrite
    copies, which then repair them."""
    disk, eng = _new_engine()
    t = eng.begin()
    t.insert(T, 1, b"committed")
    t.commit()
    with eng.mtr() as m:            # dirty pages 0, 1 and 2 (a byte no structure uses)
        for pno in (0, 1, 2):
            m.write(m.page(0, pno), PS - 100, b"x")
    eng.buf.flush_all()
    img = disk.live_image()
    sys_file = bytearray(img.files["ibdata1"])
    for pno in (0, 1, 2):
        sys_file[pno * PS:(pno + 1) * PS] = bytes(range(256)) * (PS // 256)
    img.files["ibdata1"] = bytes(sys_file)
    e2 = Engine.open(SimDisk(image=img), eng.config)
    assert e2.stats["recv_page_size_from_other_page"] == 1
    assert e2.stats["recv_dblwr_pages_restored"] >= 3
    assert e2.all_rows(T) == {1: b"committed"}
    sys_file[:] = bytes(range(256)) * (len(sys_file) // 256)
    img.files["ibdata1"] = bytes(sys_file)
    with pytest.raises(RecoveryError, match="verifies at any page size"):
        Engine.open(SimDisk(image=img), eng.config)


def test_lost_database_creation_is_refused():
    disk = SimDisk()
    Engine.create(disk, _cfg())
    b = CrashStateBuilder(disk.base, disk.trace, disk.profile)
    with pytest.raises(RecoveryError):
        Engine.open(SimDisk(image=b.build(CrashPlan(0))), _cfg())


def _ddl_setup(cfg: EngineConfig):
    """A database with table ``u`` (one row) and table ``v``, checkpointed, then reopened: the
    DDL under test runs on a fresh engine, after a checkpoint, so its whole redo (and that of
    the tables it follows) lies after the checkpoint recovery starts from."""
    disk = SimDisk()
    eng = Engine.create(disk, cfg)
    eng.create_table("u")
    eng.create_table("v", k_index=True)
    t = eng.begin()
    t.insert("u", 1, b"u-row")
    t.commit()
    eng.close()
    return disk, Engine.open(disk, cfg)


def _ddl_outcomes(op: str):
    """(the DDL, the table sets a crash inside it may leave, the set once it returned)."""
    if op == "create":
        return (lambda e: e.create_table(T)), [{"u", "v"}, {"u", "v", T}], {"u", "v", T}
    if op == "drop":
        return (lambda e: e.drop_table("v")), [{"u", "v"}, {"u"}], {"u"}
    if op == "rename":
        return (lambda e: e.rename_table("v", "w")), [{"u", "v"}, {"u", "w"}], {"u", "w"}
    # a table created, filled and dropped again between two checkpoints: the redo holds page
    # records of a space that no longer exists (INNODB.md bug 19)
    def create_fill_drop(e):
        e.create_table(T, k_index=True)
        t = e.begin()
        for k in range(1, 40):
            t.insert(T, k, (k).to_bytes(4, "big") + bytes(300))
        t.commit()
        e.drop_table(T)
    return create_fill_drop, [{"u", "v"}, {"u", "v", T}], {"u", "v"}


@pytest.mark.parametrize("op", ["create", "drop", "rename", "create-fill-drop"])
def test_crash_anywhere_in_ddl_recovers_to_before_or_after(op):
    """Crash at every position inside CREATE / DROP / RENAME TABLE, keeping or dropping every
    pending operation: the database opens, holds the tables of before or of after the DDL
    (after, once it returned), each table's file and only those, each table usable, and the
    committed row of ``u`` intact."""
    cfg = _cfg()
    disk, eng = _ddl_setup(cfg)
    ddl, allowed, after = _ddl_outcomes(op)
    start = len(disk.trace)
    ddl(eng)
    end = len(disk.trace)
    b = CrashStateBuilder(disk.base, disk.trace, disk.profile)
    problems, seen = [], set()
    for pos in range(start, end + 1):
        for plan in (CrashPlan(pos), CrashPlan(pos, tuple((i, Choice(DROP))
                                                          for i in b.pending(pos)))):
            img = b.build(plan)
            try:
                e2 = Engine.open(SimDisk(image=img), cfg)
                got = set(e2.tables)
                seen.add(frozenset(got))
                if got not in allowed or (pos == end and got != after):
                    problems.append((pos, len(plan.choices), f"tables {sorted(got)}"))
                    continue
                files = {p for p in e2.vfs.listdir("") if p.endswith(".ibd")}
                if files != {n + ".ibd" for n in got}:
                    problems.append((pos, len(plan.choices), f"files {sorted(files)}"))
                assert e2.all_rows("u") == {1: b"u-row"}
                for name in sorted(got - {"u"}):
                    t = e2.begin()
                    t.insert(name, 1000, b"\0\0\0\7x")
                    t.commit()
                    assert e2.all_rows(name)[1000] == b"\0\0\0\7x"
                e2._check()
            except Exception as e:   # noqa: BLE001 - any failure to come back is the finding
                problems.append((pos, len(plan.choices), f"{type(e).__name__}: {e}"))
    assert problems == []
    assert seen == {frozenset(a) for a in allowed}      # both outcomes were reached


def test_ddl_survives_recovery_then_a_second_crash():
    """The DDL's redo, replayed once by recovery (the file created again), holds after a second
    crash before any checkpoint of the running engine."""
    cfg = _cfg()
    disk, eng = _ddl_setup(cfg)
    start = len(disk.trace)
    eng.create_table(T)
    b = CrashStateBuilder(disk.base, disk.trace, disk.profile)
    # the last position at which the new file's creation is still pending: the redo is durable
    pos = max(p for p in range(start, len(disk.trace) + 1)
              if any(isinstance(disk.trace.ops[i], Create) for i in b.pending(p)))
    img = b.build(CrashPlan(pos, tuple((i, Choice(DROP)) for i in b.pending(pos))))
    assert (T + ".ibd") not in img.files
    d2 = SimDisk(image=img)
    e2 = Engine.open(d2, cfg)
    assert T in e2.tables and e2.stats["recv_file_created"] == 1
    e3 = Engine.open(SimDisk(image=d2.live_image()), cfg)
    assert T in e3.tables
    e3._check()


def test_space_ids_are_never_reused():
    disk, eng = _new_engine()
    eng.create_table("a")
    sa = eng.tables["a"].space
    eng.drop_table("a")
    eng.create_table("a")
    assert eng.tables["a"].space > sa
    eng.close()
    assert Engine.open(disk, eng.config).tables["a"].space > sa


def test_drop_table_in_use_is_refused_and_loses_nothing():
    disk, eng = _new_engine()
    t = eng.begin()
    t.insert(T, 5, b"x")
    with pytest.raises(EngineError, match="in use"):
        eng.drop_table(T)
    t.commit()
    assert eng.all_rows(T) == {5: b"x"}
    eng.drop_table(T)
    assert T not in eng.tables and not disk.exists(T + ".ibd")
    with pytest.raises(EngineError):
        eng.drop_table(T)


def test_create_table_over_an_orphan_file_is_refused():
    disk, eng = _new_engine()
    disk.open("orphan.ibd", create=True).close()
    with pytest.raises(EngineError, match="orphan"):
        eng.create_table("orphan")
    with pytest.raises(EngineError, match="orphan"):
        eng.rename_table(T, "orphan")
    with pytest.raises(EngineError, match="bad table name"):
        eng.create_table("no-dash")


def test_missing_checkpoint_marker_refuses_to_start():
    """A log whose block holding the MLOG_CHECKPOINT marker is damaged (while the checkpoint
    slot is intact) is refused: the redo after the checkpoint cannot be trusted to name every
    file it touches (bug 20 silently ignored it)."""
    disk, eng = _new_engine()
    eng.make_checkpoint(flush=True)     # (an earlier marker carrying the same LSN would do)
    for k in range(1, 60):              # dirty pages: the next checkpoint is fuzzy, its LSN
        t = eng.begin()                 # blocks before the end of the log
        t.insert(T, k, b"committed" * 20)
        t.commit()
    lsn = eng.checkpoint()
    marker = eng._marker_end - 1
    assert marker // 512 > lsn // 512 + 1
    img = disk.live_image()
    logb = bytearray(img.files["ib_logfile0"])
    off = eng.log.offset_of(marker - marker % 512)
    logb[off + 20] ^= 0x40              # the block the marker is in, not the checkpoint's
    img.files["ib_logfile0"] = bytes(logb)
    with pytest.raises(RecoveryError, match="MLOG_CHECKPOINT"):
        Engine.open(SimDisk(image=img), eng.config)
    # bug 20's mutant opens the same image and silently loses the commits after the checkpoint
    from tornpage.campaigns.mutants import planted
    with planted("redo-ignored-without-checkpoint-marker"):
        e2 = Engine.open(SimDisk(image=img), eng.config)
    assert len(e2.all_rows(T)) < 59


def _with_logged(records, make_file: str | None = None):
    """A database whose log ends with an mtr of ``records`` (durable), and ``make_file``
    created on disk."""
    from tornpage.engine import mtr_log as ml
    disk, eng = _new_engine()
    eng.make_checkpoint(flush=True)
    eng.log.append(ml.encode_mtr(records))
    eng.log.write_up_to(eng.log.end_lsn, flush=True)
    if make_file:
        disk.open(make_file, create=True).pwrite(disk.read_file(T + ".ibd"), 0)
    return disk, eng


def _file_redo_cases():
    from tornpage.engine import mtr_log as ml
    return {
        # a file the redo names that no table of the recovered dictionary owns
        "unowned": ([ml.file_record(ml.MLOG_FILE_NAME, 9, "x.ibd")], "x.ibd", None, "owns"),
        # the table's file is gone and its creation is not in the redo
        "missing": ([ml.file_record(ml.MLOG_FILE_NAME, 1, T + ".ibd")], None, T + ".ibd",
                    "is missing"),
        "not-utf8": ([ml.RedoRecord(ml.MLOG_FILE_NAME, 9, 0, b"\xff")], None, None, "corrupt"),
        "system-space": ([ml.file_record(ml.MLOG_FILE_DELETE, 0, "ibdata1")], None, None,
                         "system tablespace"),
    }


@pytest.mark.parametrize("case", ["unowned", "missing", "not-utf8", "system-space"])
def test_file_level_redo_that_cannot_be_true_is_refused(case):
    records, make_file, remove_file, words = _file_redo_cases()[case]
    disk, eng = _with_logged(records, make_file)
    assert eng.tables[T].space == 1
    if remove_file:
        disk.unlink(remove_file)
    with pytest.raises(RecoveryError, match=words):
        Engine.open(SimDisk(image=disk.live_image()), eng.config)


def test_redo_for_an_unnamed_space_is_refused():
    """Page redo for a table space that no MLOG_FILE_NAME since the checkpoint names is
    refused, not skipped."""
    from tornpage.engine import fil as fil_mod
    disk, eng = _new_engine()
    eng.make_checkpoint(flush=True)
    assert eng.fil.named == {}
    orig = fil_mod.Fil.name_records
    try:
        fil_mod.Fil.name_records = lambda self, spaces: []
        t = eng.begin()
        t.insert(T, 1, b"x")
        t.commit()
    finally:
        fil_mod.Fil.name_records = orig
    with pytest.raises(RecoveryError, match="MLOG_FILE_NAME"):
        Engine.open(SimDisk(image=disk.live_image()), eng.config)


# --------------------------------------------------------------------------------------------
# doublewrite
# --------------------------------------------------------------------------------------------


def _dblwr_area(config: EngineConfig) -> range:
    first = trx_sys.doublewrite_first_page(config.n_rollback_segments) * PS
    return range(first, first + trx_sys.dblwr_area_pages(config.doublewrite_batch_pages) * PS)


def _in_place_page_writes(run: Run, system: bool = False) -> list[tuple[int, int]]:
    """(write index, index of the next fsync of that file, or the end of the trace when none
    follows, which only a run without the doublewrite buffer may show: its page writes wait
    for the next checkpoint's fsync)
    for every whole-page write to a table tablespace (``system``: to the system tablespace
    outside the doublewrite area: undo log and rollback segment pages) after the setup."""
    ops = run.disk.trace.ops
    area = _dblwr_area(run.config)
    out = []
    for i in range(run.setup_end + 1, len(ops)):
        op = ops[i]
        if not isinstance(op, Write) or len(op.data) != PS:
            continue
        if (op.path == "ibdata1" and op.offset not in area) if system else \
                op.path.endswith(".ibd"):
            j = next((j for j in range(i + 1, len(ops))
                      if isinstance(ops[j], Fsync) and ops[j].inode == op.inode), None)
            if j is None:       # the doublewrite protocol fsyncs every in-place write
                assert not run.config.doublewrite, f"write #{i} is never fsynced"
                j = len(ops)
            out.append((i, j))
    return out


def _dblwr_copy_synced_before(run: Run, i: int) -> bool:
    ops = run.disk.trace.ops
    img = ops[i].data
    first = trx_sys.doublewrite_first_page(run.config.n_rollback_segments) * PS
    end = first + trx_sys.dblwr_area_pages(run.config.doublewrite_batch_pages) * PS
    for w in range(i - 1, run.setup_end, -1):
        op = ops[w]
        if isinstance(op, Write) and op.path == "ibdata1" and first <= op.offset < end and \
                any(op.data[s:s + PS] == img for s in range(0, len(op.data), PS)):
            return any(isinstance(ops[f], Fsync) and ops[f].path == "ibdata1"
                       for f in range(w + 1, i))
    return False


def _tear_first_half(run: Run, i: int, pos: int) -> CrashPlan:
    n = len(tear_units(run.disk.trace.ops[i].offset, PS, run.disk.profile.tear_unit))
    return CrashPlan(pos, ((i, Choice(TEAR, tuple(range(n // 2)), "old")),))


@pytest.fixture(scope="module")
def dw_runs():
    return run_workload(7, _cfg(doublewrite=True)), run_workload(7, _cfg(doublewrite=False))


@pytest.mark.parametrize("system", [False, True], ids=["table-page", "undo-or-rseg-page"])
def test_doublewrite_repairs_a_torn_data_page(dw_runs, system):
    run, _ = dw_runs
    b = run.builder()
    cands = _in_place_page_writes(run, system)
    assert len(cands) >= 10
    for i, pos in cands[:12]:
        assert _dblwr_copy_synced_before(run, i), i
        plan = _tear_first_half(run, i, pos)
        image = b.build(plan)
        op = run.disk.trace.ops[i]
        torn = image.files[op.path][op.offset:op.offset + PS]
        assert P.verify(torn, PS) in (P.PAGE_TORN, P.PAGE_SHORT)
        eng, rows, at_open = recover(run, image)
        assert at_open.get("doublewrite_repair", 0) >= 1, i
        assert rows in allowed_states(run, pos), i
        # the repaired page is valid on disk again
        fixed = eng.fil.space(0 if system else 1).read_page(op.offset // PS)
        assert P.verify(fixed, PS) == P.PAGE_OK


@pytest.mark.parametrize("system", [False, True], ids=["table-page", "undo-or-rseg-page"])
def test_without_doublewrite_a_torn_page_is_refused_never_wrong(dw_runs, system):
    run_on, run_off = dw_runs
    # the same workload: the same page images are written in place
    on = {(run_on.disk.trace.ops[i].offset, run_on.disk.trace.ops[i].data)
          for i, _ in _in_place_page_writes(run_on, system)}
    cands = _in_place_page_writes(run_off, system)
    off = {(run_off.disk.trace.ops[i].offset, run_off.disk.trace.ops[i].data) for i, _ in cands}
    assert on == off
    b = run_off.builder()
    refused = 0
    for i, pos in cands[:12]:
        image = b.build(_tear_first_half(run_off, i, pos))
        try:
            eng, rows, at_open = recover(run_off, image)
        except (TornPageUnrepairable, Corruption) as e:
            refused += isinstance(e, TornPageUnrepairable)
            continue
        # recovered anyway (e.g. the page is re-created by its PAGE_INIT redo): then it is right
        assert at_open.get("doublewrite_repair", 0) == 0
        assert rows in allowed_states(run_off, pos), i
    assert refused >= 6


def test_torn_doublewrite_copy_is_never_used(dw_runs):
    """Tear the doublewrite batch itself (the crash comes before its fsync, so the in-place
    writes never started): recovery ignores the torn copies and the data is right."""
    run, _ = dw_runs
    ops = run.disk.trace.ops
    first = trx_sys.doublewrite_first_page(run.config.n_rollback_segments) * PS
    b = run.builder()
    checked = 0
    for i in range(run.setup_end + 1, len(ops)):
        op = ops[i]
        if isinstance(op, Write) and op.path == "ibdata1" and \
                first <= op.offset < first + run.config.doublewrite_batch_pages * PS and \
                len(op.data) >= 2 * PS:                 # a page-cleaner batch copy
            pos = i + 1
            assert isinstance(ops[pos], Fsync)
            n = len(tear_units(op.offset, len(op.data), 512))
            plan = CrashPlan(pos, ((i, Choice(TEAR, tuple(range(0, n, 2)), "old")),))
            eng, rows, at_open = recover(run, b.build(plan))
            assert rows in allowed_states(run, pos)
            assert at_open.get("doublewrite_repair", 0) == 0
            checked += 1
            if checked == 6:
                break
    assert checked == 6


def test_doublewrite_recover_picks_the_newest_valid_copy_in_the_window():
    """dblwr.recover on a hand-built area: per page the copy with the highest LSN wins
    (MDEV-11799, not the first found); torn copies and copies outside [checkpoint LSN,
    scanned LSN] are never used; a valid data page is kept."""
    from collections import Counter

    from tornpage.engine.dblwr import Doublewrite
    from tornpage.engine.fil import Fil

    disk = SimDisk()
    fil = Fil(disk, PS)
    sys_ts = fil.open_space(0, "ibdata1", create=True)
    tbl = fil.open_space(1, "t.ibd", create=True)

    def image(pno: int, lsn: int, fill: int) -> bytes:
        f = bytearray(PS)
        P.init_frame(f, 1, pno, P.FIL_PAGE_INDEX)
        bp.init(f, 0, 1)
        bp.insert_rec(f, bp.make_leaf_rec(fill, 1, bytes(7), bytes([fill]) * 100))
        return P.stamp_for_write(f, lsn)

    def torn(new: bytes, old: bytes) -> bytes:
        return new[:PS // 2] + old[PS // 2:]

    for pno in range(1, 8):
        tbl.write_pages(pno, image(pno, 40, 0))                  # old valid versions
    slots = [image(2, 100, 1), image(2, 200, 2), image(2, 150, 3),   # newest in the middle
             image(3, 50, 4),                                    # before the checkpoint
             torn(image(4, 120, 5), image(4, 40, 0)),            # a torn copy
             image(5, 130, 6),                                   # data page valid: kept
             image(6, 400, 7),                                   # beyond the scanned log
             image(7, 110, 8)]                                   # restores a zeroed page
    dw = Doublewrite(sys_ts, 10, len(slots) + trx_sys.DBLWR_SINGLE_SLOTS, PS, segment_pages=4)
    sys_ts.write_pages(10, b"".join(slots))
    for pno in (2, 3, 4, 6):
        tbl.write_pages(pno, torn(image(pno, 300, 9), image(pno, 40, 0)))
    tbl.write_pages(7, bytes(PS))
    stats = Counter()
    restored = dw.recover(fil, checkpoint_lsn=60, scanned_lsn=350, stats=stats)
    assert restored == [(1, 2), (1, 7)]
    assert tbl.read_page(2) == slots[1]                          # LSN 200, not 100 or 150
    assert tbl.read_page(7) == slots[7]
    for pno in (3, 4, 6):
        assert P.verify(tbl.read_page(pno), PS) == P.PAGE_TORN    # no usable copy: left torn
    assert tbl.read_page(5) == image(5, 40, 0)
    assert stats["recv_dblwr_pages_restored"] == 2
    assert stats["recv_dblwr_zero_pages_restored"] == 1
    assert stats["recv_dblwr_page_valid_kept"] == 1
    assert not tbl.unsynced                                      # repairs were fsynced


def test_doublewrite_segments_and_single_slots_are_used_in_turn():
    """As InnoDB 8.0.20+'s segment queues: each batch takes the batch segment after the
    previous batch's and each single-page flush the single-page slot after the previous one's,
    wrapping; so the area keeps an older copy of a page before its newest one."""
    from tornpage.engine.dblwr import Doublewrite
    from tornpage.engine.fil import Fil

    fil = Fil(SimDisk(), PS)
    sys_ts = fil.open_space(0, "ibdata1", create=True)
    first, seg = 5, 3
    dw = Doublewrite(sys_ts, first, 2 * seg + 1 + trx_sys.DBLWR_SINGLE_SLOTS, PS,
                     segment_pages=seg)
    assert (dw.batch_pages, dw.n_segments) == (2 * seg + 1, 2)    # the odd slot stays unused

    def img(pno: int, lsn: int) -> bytes:
        f = bytearray(PS)
        P.init_frame(f, 1, pno, P.FIL_PAGE_INDEX)
        return P.stamp_for_write(f, lsn)

    def slot_of(image: bytes) -> int:
        return next(i for i in range(dw.n_pages) if sys_ts.read_page(first + i) == image)

    batches = [[img(1, 100), img(2, 100)], [img(1, 200)], [img(3, 300)]]
    for b in batches:
        dw.write_batch(b)
        dw._check()
    # the third batch reused segment 0 and covered page 1's copy; page 2's is left, and page
    # 1's newer copy is in segment 1
    assert [slot_of(b[-1]) for b in batches] == [1, seg, 0]
    singles = [img(6, 400 + i) for i in range(trx_sys.DBLWR_SINGLE_SLOTS + 1)]
    for s in singles:
        dw.write_single(s)
        dw._check()
    assert [slot_of(s) for s in singles[1:]] == \
        [dw.batch_pages + i for i in range(1, trx_sys.DBLWR_SINGLE_SLOTS)] + [dw.batch_pages]
    assert not sys_ts.unsynced                  # every copy was made durable


# --------------------------------------------------------------------------------------------
# idempotence and determinism
# --------------------------------------------------------------------------------------------


def test_recovery_is_idempotent(run1):
    b = run1.builder()
    rng = random.Random(5)
    for _ in range(6):
        pos = rng.randrange(run1.setup_end + 1, len(run1.disk.trace) + 1)
        image = b.build(drop_all(run1, pos))
        e1, rows1, _ = recover(run1, image)
        e2, rows2, _ = recover(run1, image)
        assert rows1 == rows2
        assert e1.recovered_lsn == e2.recovered_lsn
        # the same image, recovered with the same calls, writes the same bytes
        assert e1.disk.trace_hash() == e2.disk.trace_hash()
        # what the first recovery leaves behind after a clean shutdown reopens to the same rows
        e1.close()
        e3 = Engine.open(SimDisk(run1.disk.profile, e1.disk.live_image()), run1.config)
        assert e3.stats["recv_trx_resurrected"] == 0
        assert e3.stats["recv_records_applied"] == 0
        assert e3.all_rows(T) == rows1


def test_crash_during_recovery_converges(run1):
    """Crash the recovery run itself (dropping everything it had not synced), recover again:
    the result equals the uninterrupted recovery."""
    b = run1.builder()
    pos = len(run1.disk.trace)
    image = b.build(drop_all(run1, pos))
    e1, reference, _ = recover(run1, image)
    rtrace = e1.disk.trace
    assert e1.stats["trx_rolled_back_background"] == 1
    nb = CrashStateBuilder(image, rtrace, run1.disk.profile)
    for p in range(0, len(rtrace) + 1, max(1, len(rtrace) // 12)):
        nplan = CrashPlan(p, tuple((i, Choice(DROP)) for i in nb.pending(p)))
        eng, rows, _ = recover(run1, nb.build(nplan))
        assert rows == reference, p


def test_same_seed_same_trace_hash():
    a = run_workload(11, _cfg())
    b = run_workload(11, _cfg())
    c = run_workload(12, _cfg())
    assert len(a.disk.trace) > 200
    assert a.disk.trace_hash() == b.disk.trace_hash()
    assert dict(a.engine.stats) == dict(b.engine.stats)
    assert a.disk.trace_hash() != c.disk.trace_hash()
    # recovery is deterministic too
    pa = CrashPlan(len(a.disk.trace))
    da = SimDisk(a.disk.profile, a.builder().build(pa))
    db = SimDisk(b.disk.profile, b.builder().build(pa))
    ea, eb = Engine.open(da, a.config), Engine.open(db, b.config)
    ea.finish_background_rollback()
    eb.finish_background_rollback()
    assert len(da.trace) > 0
    assert da.trace_hash() == db.trace_hash()


@pytest.mark.parametrize("ps", [8192, 16384])
def test_other_page_sizes_crash_and_recover(ps):
    cfg = EngineConfig(page_size=ps, buffer_pool_pages=16,
                       log_file_size=EngineConfig.min_log_file_size(ps),
                       doublewrite_batch_pages=8, page_cleaner_batch=4)
    run = run_workload(21, cfg, n_ops=100)
    b = run.builder()
    for pos in range(run.setup_end + 1, len(run.disk.trace) + 1, 17):
        eng, rows, _ = recover(run, b.build(drop_all(run, pos)))
        assert rows in allowed_states(run, pos), pos


def test_the_watchdog_stops_a_scan_that_loops_over_cached_pages():
    """A leaf whose FIL_PAGE_NEXT points back at itself makes a full scan loop for ever over a
    page the buffer pool holds, with no file system call (so no IO budget sees it): the watchdog
    of page accesses expires instead, deterministically, at the same access every time."""
    from tornpage.engine import WatchdogExpired
    from tornpage.engine.page import FIL_PAGE_NEXT
    disk, eng = _new_engine(watchdog_page_accesses=20_000)
    t = eng.begin()
    for k in range(1, 200):
        t.insert(T, k, b"v" * 40)
    t.commit()
    idx = eng._index(T)
    leaf = idx.search_path(eng.buf, 1)[-1]
    assert P.u32(leaf.data, FIL_PAGE_NEXT) != P.FIL_NULL      # more than one leaf
    P.put_u32(leaf.data, FIL_PAGE_NEXT, leaf.page_no)         # a cycle of one leaf
    before = eng.buf.accesses
    with pytest.raises(WatchdogExpired, match="more than 20000 buffer pool page accesses"):
        eng.all_rows(T)
    assert eng.buf.accesses == 20_001 and before < 20_000


def test_without_doublewrite_a_lost_page_write_is_caught_when_the_page_is_read_back():
    """Without the doublewrite buffer a page write waits for the next checkpoint's fsync.  If
    the drive lost it and the page is evicted and read again before then, the old page comes
    back and still verifies: the read is checked against what was written (read your writes)
    and the engine stops with LostWrite instead of carrying on from the stale page."""
    from tornpage.engine.errors import LostWrite
    disk, eng = _new_engine(doublewrite=False)
    t = eng.begin()
    for k in range(1, 40):
        t.insert(T, k, b"old" * 10)
    t.commit()
    eng.make_checkpoint(flush=True)                  # every page durable and verified
    t = eng.begin()
    t.update(T, 1, b"new" * 10)
    t.commit()
    leaf = eng._index(T).search_path(eng.buf, 1)[-1]
    path = eng.fil.space(leaf.space).file.path
    before = disk.read_file(path)
    eng.buf.flush_all()                              # written in place, not yet fsynced
    assert disk.read_file(path) != before
    disk._inodes[disk._names[path]][:] = before      # the drive lost the write
    del eng.buf.frames[leaf.key]                     # evicted (clean)
    with pytest.raises(LostWrite, match="does not return what a write not yet fsynced put"):
        eng.all_rows(T)
    assert eng.panicked
