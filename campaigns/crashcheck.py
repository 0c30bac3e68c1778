"""Turn one recorded workload into crash states and judge each one.

Which crash states a campaign tries is :mod:`faultfs.search`'s job (driven by
``campaigns.runner.check_workload``); :func:`check_crash_state` builds the durable image a plan
describes, recovers it with the engine, finishes background rollback and hands the result to
the oracles.

XA: the committed state handed to the oracle is what a new transaction's consistent read sees
(so a prepared transaction's writes must not show); the transactions found PREPARED are judged
against the markers (checkers.oracle.check_prepared: found, with their writes, holding their
locks), then resolved, XA COMMIT when the trx id is even and XA ROLLBACK when odd, and the
result checked (checkers.oracle.check_xa_resolution).

Open before recovery is finished (``new_work``, a seed, or None): the first recovery then runs
new transactions (:func:`run_new_work`) while background rollback of the resurrected ones is
still in progress, one background step between statements.  A row a resurrected transaction
still holds must refuse their locks (LockConflict is expected, not a finding); their consistent
reads must see only committed rows; what they commit must show once rollback finished.  With
crashes during recovery, the first such crash cuts the trace of this recovery, new work
included: the recovery after it must give the uninterrupted recovery's state with a prefix of
the new commits, holding every one acknowledged before the crash (flush_log_at_trx_commit=1).
"""
from __future__ import annotations

import random
import traceback
from collections import Counter
from dataclasses import dataclass, field

from tornpage.checkers import probes as probes_mod
from tornpage.checkers.oracle import (check_committed_state, check_ddl_rows, check_dictionary,
                                     check_prepared, check_xa_resolution, describe_value,
                                     xa_promised)
from tornpage.checkers.structure import check_after_recovery, check_quiesced
from tornpage.checkers.verdict import (CORRUPT, ENGINE_ERROR, HANG, ISOLATION, LOST, REFUSED,
                                       UNCOMMITTED,
                              Verdict)
from tornpage.engine import Engine, undo
from tornpage.engine.errors import (Corruption, EngineError, LockConflict, RecoveryError,
                                   WatchdogExpired)
from tornpage.faultfs import (DROP, KEEP, SIZE_ONLY, TEAR, CrashPlan, CrashPlanError,
                     CrashStateBuilder, Image, InjectedIOError,
                     MediaFault, OpBudgetExceeded, SimDisk, Write, get_device)
from tornpage.faultfs import search

from tornpage.campaigns.workload import TABLE, WorkloadRun, row_value

MAX_CHOICES = 48   # pending operations beyond this many (the oldest) are kept


@dataclass
class CrashResult:
    plan: CrashPlan
    verdict: Verdict
    probes: dict = field(default_factory=dict)
    nested: list = field(default_factory=list)   # plans of crashes during recovery, in order
    new_work: int | None = None     # seed of the new work run during background rollback


def _markers(run: WorkloadRun) -> list:
    """The workload trace's markers, ``(index, marker)``, read once per workload (every crash
    state's oracle reads them)."""
    if not hasattr(run, "_markers"):
        run._markers = run.trace.markers()
    return run._markers


def builder_for(run: WorkloadRun) -> CrashStateBuilder:
    if not hasattr(run, "_builder"):
        run._builder = CrashStateBuilder(run.base, run.trace, get_device(run.settings.device))
    return run._builder


PROMISE_LABELS = ("commit-ack",)   # markers after which a crash point is placed


def nested_drawer(rng, max_depth: int):
    """A ``draw_nested`` for :func:`check_crash_state`: up to ``max_depth`` crashes during
    recovery, the seeded ``rng`` (a :class:`random.Random`) deciding at each level whether to
    crash again and, with :func:`faultfs.search.sample_plan`, where and what is lost."""
    def decide(depth: int):
        if depth >= max_depth or (depth > 0 and rng.random() < 0.5):
            return None
        return lambda b: search.sample_crash(b, 0, len(b.trace), rng, max_choices=MAX_CHOICES)
    return decide


def crash_points(run: WorkloadRun) -> list[int]:
    """The workload's crash points (:func:`faultfs.search.crash_points` after the setup): before
    each barrier, after each directory operation, after each commit acknowledgement, and at the
    end."""
    return search.crash_points(run.trace, run.setup_end + 1, len(run.trace), PROMISE_LABELS)


def media_fault_probes(run: WorkloadRun) -> Counter:
    """Probe counts for the media faults injected while the workload ran."""
    out: Counter = Counter()
    for op in run.trace.ops:
        if isinstance(op, MediaFault):
            out["media_" + op.kind.replace("-", "_")] += 1
    if run.stopped and run.disk.faults_injected:
        out["engine_stopped_on_media_fault"] += 1
        if run.stopped.startswith("LostWrite"):
            out["lost_write_detected"] += 1
    return out


def fault_probes(plan: CrashPlan) -> Counter:
    """Probe counts for the faults a crash plan injects (see checkers.probes.FAULT_PROBES)."""
    out: Counter = Counter()
    for _, c in plan.choices:
        if c.kind == DROP:
            out["fault_dropped"] += 1
        elif c.kind == TEAR:
            out["fault_torn_" + c.fill] += 1
            if c.partial is not None:
                out["fault_torn_inside_sector"] += 1
        elif c.kind == SIZE_ONLY:
            out["fault_size_only"] += 1
    return out


def misdirected_writes(run: WorkloadRun, position: int) -> list[MediaFault]:
    """The writes the drive misdirected (or lost) before ``position``.

    One that landed (``length > 0``) damaged the range it landed on (the victim) in a way no
    engine can repair from its own files, so there a loud refusal (R) or a corruption report
    (C) is the right answer; silent wrong answers (L, U) and untyped errors (E) stay findings.
    One that landed nowhere damages nothing: the range it missed still holds data the redo log
    can bring up to date.  Either voids what the OS was trusted with but never fsynced."""
    return [op for op in run.trace.ops[run.setup_end:position]
            if isinstance(op, MediaFault) and op.kind == "misdirected"]


def at_rest_corruption(run: WorkloadRun, plan: CrashPlan, image) -> list[MediaFault]:
    """The media damage at rest before the crash that is in the crash ``image``: an at-rest
    corruption whose damaged sector, as far as the corrupted write covers it, holds what the
    drive stored; bit rot that no later write surely rewrote.

    Like a misdirected write's victim, such a sector is data no engine can rebuild from its own
    files unless it keeps a copy (the doublewrite buffer, redo since the checkpoint), so a loud
    refusal (R) or a corruption report (C) is the right answer there, and nothing that was not
    read back after an fsync was promised; silent wrong answers (L, U) and untyped errors (E)
    stay findings.  A corruption the crash lost (the write dropped, or overwritten later)
    excuses nothing."""
    out = []
    ops = run.trace.ops
    end = min(plan.position, len(ops))
    pend = None
    for j in range(run.setup_end, end):
        op = ops[j]
        if isinstance(op, MediaFault) and op.kind == "bit-rot":
            # bit rot is in every state after it, unless a later write covering the byte
            # surely reached the disk whole (durable, or kept by the plan)
            if pend is None:
                b = builder_for(run)
                pend = set(b.pending(plan.position))
                lost = [i for i, c in plan.choices if c.kind != KEEP]
                # an ordered device drops every pending operation after the first one lost
                first_lost = min(lost) if lost and b.profile.ordered else len(ops)
            if not any(isinstance(w, Write) and w.inode == op.inode and
                       w.offset <= op.offset < w.offset + len(w.data) and
                       (i not in pend or (plan.choice(i).kind == KEEP and i < first_lost))
                       for i, w in enumerate(ops[j + 1:end], j + 1)):
                out.append(op)
            continue
        if not (isinstance(op, MediaFault) and op.kind == "at-rest-corruption") or j + 1 >= end:
            continue
        w = ops[j + 1]
        sec = op.offset // 512
        lo, hi = max(w.offset, sec * 512), min(w.offset + len(w.data), (sec + 1) * 512)
        got = image.files.get(w.path, b"")[lo:hi]
        if got == w.data[lo - w.offset:hi - w.offset]:
            out.append(op)
    return out


OP_BUDGET_PER_SECTOR = 64     # file system calls per 512-byte sector of the crash image
OP_BUDGET_MIN = 100_000


def op_budget(image: Image) -> int:
    """The file system calls one recovery and the checks after it may make on ``image`` before
    they are taken for a hang: ``OP_BUDGET_PER_SECTOR`` per 512-byte sector of the image, at
    least ``OP_BUDGET_MIN`` (measured: the recoveries and checks of ``tornpage run --examples 12
    --seed 1`` made at most 536 per crash state)."""
    sectors = sum(len(d) for d in image.files.values()) // 512
    return max(OP_BUDGET_MIN, OP_BUDGET_PER_SECTOR * sectors)


class _Failed(Exception):
    def __init__(self, verdict: Verdict, probes=None) -> None:
        self.verdict, self.probes = verdict, probes or {}


class _RefusedOnMedia(Exception):
    """The engine refused loudly because the media failed an IO: the right answer."""


def caused_by_media(e: BaseException) -> bool:
    """Whether ``e`` or anything in its ``raise ... from`` chain is an injected media error (an
    exception merely raised while one was being handled does not count: that may be a bug in
    the engine's error handling, which must stay a finding)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, InjectedIOError):
            return True
        seen.add(id(e))
        e = e.__cause__       # explicit chains only: an error raised while handling one is not
    return False


def _open(disk: SimDisk, cfg) -> Engine:
    try:
        return Engine.open(disk, cfg)
    except Exception as e:  # noqa: BLE001
        if caused_by_media(e):
            raise _RefusedOnMedia(str(e)) from None
        if isinstance(e, (RecoveryError, Corruption)):
            raise _Failed(Verdict.failed(REFUSED, f"{type(e).__name__}: {e}",
                                         rule="engine.refused")) from None
        # any other exception is a finding, not a crash of the campaign
        raise _Failed(Verdict.failed(ENGINE_ERROR, f"recovery raised {type(e).__name__}: {e}",
                                     _tb(e), rule="engine.unexpected_error")) from None


def _tb(e: BaseException) -> list[str]:
    return "".join(traceback.format_exception(type(e), e, e.__traceback__)).splitlines()[-6:]


def _finish(eng: Engine, quiesce: bool) -> dict:
    """Finish background rollback (and with ``quiesce``, all background work); return the rows
    of every table, ``(table, key) → value`` (:func:`all_views`)."""
    probes = probes_mod.collect(eng.stats)
    try:
        eng.finish_background_rollback()
        if quiesce:
            while eng.run_background(3):
                pass
        return all_views(eng)
    except Exception as e:  # noqa: BLE001
        if caused_by_media(e):
            raise _RefusedOnMedia(str(e)) from None
        if isinstance(e, EngineError):
            raise _Failed(Verdict.failed(CORRUPT, f"after recovery: {type(e).__name__}: {e}",
                                         rule="engine.background_corruption"),
                          probes) from None
        raise _Failed(Verdict.failed(ENGINE_ERROR, f"background work after recovery raised "
                                     f"{type(e).__name__}: {e}", _tb(e),
                                     rule="engine.background_error"), probes) from None


def committed_view(eng: Engine) -> dict:
    """(table, key) → value of every row of TABLE a new transaction's consistent read sees."""
    return {(TABLE, k): v for k, v in table_view(eng, TABLE).items()}


def all_views(eng: Engine) -> dict:
    """(table, key) → value of every row of every table (:func:`table_view`), TABLE first."""
    out = committed_view(eng)
    for t in sorted(set(eng.tables) - {TABLE}):
        out.update(((t, k), v) for k, v in table_view(eng, t).items())
    return out


def table_view(eng: Engine, table: str) -> dict:
    """key → value of every row of ``table`` a new transaction's consistent read sees: the
    latest versions when no transaction is left (after background rollback, nothing
    PREPARED), else a whole-table read by a new transaction (a prepared transaction's writes
    are not committed)."""
    if not eng.trx_sys.active:
        return eng.all_rows(table)
    t = eng.begin()
    try:
        return dict(t.scan(table, 0, (1 << 64) - 1))
    finally:
        t.rollback()


def _held(eng: Engine) -> set:
    """Keys of TABLE that a resurrected (ACTIVE or PREPARED) transaction still has undo for,
    and so must still lock."""
    space = eng.tables[TABLE].space
    out = set()
    for t in eng.trx_sys.active.values():
        if t.resurrected and t.undo is not None:
            for payload in eng.trx_sys.undo_records(t):
                _, _, sp, key, _ = undo.parse_rec(payload)
                if sp == space:
                    out.add(key)
    return out


@dataclass
class NewWork:
    """What the new transactions did during background rollback."""
    reads: list = field(default_factory=list)     # (j, key, value or None)
    scans: list = field(default_factory=list)     # (j, lo, hi, [(key, value)])
    commits: list = field(default_factory=list)   # (j, {key: pre value}, {key: value},
                                                  #  trace index after commit returned)
    conflicts: int = 0
    lock_ignored: list = field(default_factory=list)    # (trx, key)
    during_rollback: bool = False     # resurrected ACTIVE transactions were left at the start


def run_new_work(eng: Engine, seed: int, disk: SimDisk) -> NewWork:
    """New transactions, run while background rollback is in progress (one background step
    between statements): point and range consistent reads, then updates and inserts (locking;
    a LockConflict on a row a resurrected transaction holds fails that statement only), then
    commit (or, now and then, rollback).  Keys are drawn from the rows the resurrected
    transactions hold and the rows there are, by a generator seeded with ``seed``."""
    rng = random.Random(f"tornpage-new-work-run:{seed}")
    nw = NewWork(during_rollback=bool(eng._to_roll_back()))
    held = sorted(_held(eng))
    keys = sorted(eng.all_rows(TABLE))
    top = max(keys + held + [1])
    pool = held + keys[:: max(1, len(keys) // 16)] + [top + 1 + rng.randrange(8)]

    def pick() -> int:
        return held[rng.randrange(len(held))] if held and rng.random() < 0.6 else \
            pool[rng.randrange(len(pool))]
    for j in range(rng.randint(1, 3)):
        t = eng.begin()
        for _ in range(rng.randint(1, 3)):
            k = pick()
            nw.reads.append((j, k, t.get(TABLE, k)))
            eng.run_background(1)
        lo = pick()
        nw.scans.append((j, lo, lo + 6, t.scan(TABLE, lo, lo + 6)))
        pre, wrote = {}, {}
        for _ in range(rng.randint(1, 4)):
            k = pick()
            holding = _held(eng)
            try:
                cur = t.get_for_update(TABLE, k)
            except LockConflict:
                nw.conflicts += 1
                eng.run_background(1)
                continue
            if k in holding:
                nw.lock_ignored.append((t.id, k))
                continue                # writing over it would only muddle the finding
            v = row_value(k, k, 7_000_000 + seed % 1000 + j)
            if cur is None:
                t.insert(TABLE, k, v)
            else:
                t.update(TABLE, k, v)
            pre.setdefault(k, cur)
            wrote[k] = v
            eng.run_background(1)
        if rng.random() < 0.8:
            t.commit()
            nw.commits.append((j, pre, wrote, len(disk.trace)))
        else:
            t.rollback()
    return nw


def _new_work(eng: Engine, seed: int, disk: SimDisk, probes: Counter) -> NewWork:
    """:func:`run_new_work` with its engine failures turned into verdicts, as :func:`_finish`
    does for background rollback."""
    try:
        nw = run_new_work(eng, seed, disk)
    except Exception as e:  # noqa: BLE001
        if caused_by_media(e):
            raise _RefusedOnMedia(str(e)) from None
        kind, rule = (CORRUPT, "engine.background_corruption") if isinstance(e, EngineError) \
            else (ENGINE_ERROR, "engine.background_error")
        raise _Failed(Verdict.failed(kind, f"new transactions during background rollback: "
                                           f"{type(e).__name__}: {e}", _tb(e), rule=rule),
                      probes_mod.collect(eng.stats)) from None
    if nw.lock_ignored:
        raise _Failed(check_new_work(nw, {})[1], probes_mod.collect(eng.stats))
    if nw.during_rollback:
        probes["new_work_during_rollback"] += 1
    if nw.conflicts:
        probes["new_work_lock_conflict"] += nw.conflicts
    return nw


def _new_work_base(nw: NewWork, rows: dict) -> dict:
    """``rows`` (after rollback finished) without the new work's commits: each row a new
    transaction wrote holds what the first of them read under its lock."""
    base = dict(rows)
    for _, pre, _, _ in reversed(nw.commits):
        for k, v in pre.items():
            if v is None:
                base.pop((TABLE, k), None)
            else:
                base[(TABLE, k)] = v
    return base


def _overlay(base: dict, commits) -> dict:
    out = dict(base)
    for _, _, wrote, _ in commits:
        for k, v in wrote.items():
            out[(TABLE, k)] = v
    return out


def check_new_work(nw: NewWork, rows: dict) -> tuple[dict, Verdict]:
    """(the state without the new work, verdict) for new work that ran during background
    rollback, ``rows`` the committed state once rollback finished."""
    base = _new_work_base(nw, rows)
    if nw.lock_ignored:
        trx, k = nw.lock_ignored[0]
        return base, Verdict.failed(
            UNCOMMITTED, f"new trx {trx} locked {TABLE}:{k} during background rollback while "
                         f"a resurrected transaction still held it",
            [f"locked while held: {nw.lock_ignored[:8]}"], rule="recovery.new_work_lock_ignored")
    want = _overlay(base, nw.commits)
    lost = sorted(r for r in set(want) | set(rows) if want.get(r) != rows.get(r))
    if lost:
        return base, Verdict.failed(
            LOST, f"a transaction committed during background rollback lost writes: "
                  f"{len(lost)} rows differ once rollback finished",
            [f"{t}:{k}: committed {_brief(want.get((t, k)))}, found {_brief(rows.get((t, k)))}"
             for t, k in lost[:8]], rule="recovery.new_work_lost")
    bad = []
    for j, k, got in nw.reads:
        exp = _overlay(base, [c for c in nw.commits if c[0] < j]).get((TABLE, k))
        if got != exp:
            bad.append(f"new trx #{j} read {TABLE}:{k} as {_brief(got)}, committed: "
                       f"{_brief(exp)}")
    for j, lo, hi, got in nw.scans:
        snap = _overlay(base, [c for c in nw.commits if c[0] < j])
        exp = [(k, v) for (t, k), v in sorted(snap.items()) if t == TABLE and lo <= k <= hi]
        if got != exp:
            bad.append(f"new trx #{j} scanned {TABLE}:{lo}..{hi} as {[k for k, _ in got]}, "
                       f"committed: {[k for k, _ in exp]}")
    if bad:
        return base, Verdict.failed(
            UNCOMMITTED, f"a consistent read during background rollback saw rows that are not "
                         f"committed: {bad[0]}", bad[1:8], rule="recovery.new_work_dirty_read")
    return base, Verdict.passed()


def _brief(v) -> str:
    return "absent" if v is None else f"{bytes(v)[:12]!r}… ({len(v)} bytes)"


def _prepared_facts(eng: Engine, xa: dict) -> dict:
    """trx id → {"rows", "unlocked"} for every transaction found PREPARED (see
    checkers.oracle.check_prepared): the latest versions of the rows its prepare marker says it
    wrote, and those a new transaction could lock."""
    found = {}
    latest = eng.all_rows(TABLE)
    for p in eng.prepared_transactions():
        writes = xa[p.id].writes if p.id in xa else ()
        rows = {(t, k): latest.get(k) for t, k, _ in writes}
        unlocked = []
        probe = eng.begin()
        for t, k, _ in writes:
            try:
                probe.get_for_update(TABLE, k)
                unlocked.append((t, k))
            except LockConflict:
                pass
        probe.rollback()
        found[p.id] = {"rows": rows, "unlocked": unlocked}
    return found


def resolve_prepared(eng: Engine, xa: dict) -> tuple[list, dict, dict]:
    """XA COMMIT (even trx id) or XA ROLLBACK (odd) of every transaction found PREPARED, by
    id; returns (resolved, committed state before, state after)."""
    before = committed_view(eng)
    resolved = []
    for p in eng.prepared_transactions():
        how = "commit" if p.id % 2 == 0 else "rollback"
        (eng.commit if how == "commit" else eng.rollback)(p)
        resolved.append((p.id, how, xa[p.id].writes if p.id in xa else ()))
    return resolved, before, committed_view(eng)


def check_crash_state(run: WorkloadRun, plan: CrashPlan, nested: list | None = None,
                      draw_nested=None, new_work: int | None = None,
                      image: Image | None = None) -> CrashResult:
    """Recover the crash state ``plan`` describes and judge it.  Never raises for an engine
    failure: every failure is a verdict.  ``image``: the state's durable image when the caller
    built it already (``builder_for(run).build(plan)``), so it is not built twice.

    Crashes during recovery: ``nested`` (plans, e.g. from an artifact) or ``draw_nested``
    (``depth -> None`` to stop, or ``builder -> plan``) crash the recovery run itself, whose trace is the
    engine's recovery plus background rollback plus background work until quiet; the next
    level recovers from that crash image.  The final state must then equal what the
    uninterrupted recovery of the first crash state produced (recovery is idempotent).
    """
    b = builder_for(run)
    if run.hung:
        return CrashResult(plan, Verdict.failed(
            HANG, f"the engine hung during the workload: {run.stopped}", [
                "each opened engine may access buffer pool pages a bounded number of times; a "
                "loop that only touches cached pages is taken for a hang"], rule="engine.hang"))
    if run.crashed:
        return CrashResult(plan, Verdict.failed(
            ENGINE_ERROR, f"the engine crashed during the workload: {run.stopped}",
            rule="workload.engine_crashed"))
    if run.read_anomalies:
        return CrashResult(plan, Verdict.failed(
            ISOLATION, f"a consistent read during the workload: {run.read_anomalies[0]}",
            run.read_anomalies[1:8], rule="workload.read_anomaly"))
    if run.stopped and not run.disk.faults_injected:
        return CrashResult(plan, Verdict.failed(
            ENGINE_ERROR, f"the engine stopped during the workload with no fault injected: "
                          f"{run.stopped}", rule="workload.engine_stopped"))
    cfg = run.settings.engine_config()
    used: list[CrashPlan] = []
    probes: Counter = Counter()
    if image is None:
        image = b.build(plan)
    corrupted = at_rest_corruption(run, plan, image)
    reference = None
    nw = None                   # the new work of the first recovery, if any
    nw_base = None              # ... and its state without the new work
    power_loss = bool(misdirected_writes(run, plan.position)) or bool(corrupted) or \
        (b.profile.power_loss and any(c.kind != KEEP for _, c in plan.choices))
    markers = _markers(run)
    try:
        depth = 0
        while True:
            if nested is not None:
                pick = (lambda nb, p=nested[depth]: p) if depth < len(nested) else None
            else:
                pick = draw_nested(depth) if draw_nested is not None else None
            if pick is None:
                break
            disk = SimDisk(b.profile, image, op_budget=op_budget(image))
            eng = _open(disk, cfg)
            if depth == 0 and new_work is not None:
                nw = _new_work(eng, new_work, disk, probes)
            rows = _finish(eng, quiesce=True)
            probes.update(probes_mod.collect(eng.stats))
            if nw is not None and depth == 0:
                nw_base, v = check_new_work(nw, rows)
                if not v.ok:
                    raise _Failed(v)
            if reference is None:
                reference = rows
            nb = CrashStateBuilder(image, disk.trace, b.profile)
            nplan = pick(nb)
            used.append(nplan)
            probes["crash_during_recovery"] += 1
            if nw is not None and depth == 0:
                probes["crash_after_new_work"] += 1
            image = nb.build(nplan)
            depth += 1
        disk = SimDisk(b.profile, image, op_budget=op_budget(image))
        eng = _open(disk, cfg)
        problems = check_after_recovery(eng)
        if problems:
            raise _Failed(Verdict.from_problems(CORRUPT, problems),
                          probes_mod.collect(eng.stats))
        v = check_dictionary(markers, plan.position, set(eng.tables))
        if not v.ok:
            raise _Failed(v, probes_mod.collect(eng.stats))
        if not used and new_work is not None:
            nw = _new_work(eng, new_work, disk, probes)
        rows = _finish(eng, quiesce=False)
        probes.update(probes_mod.collect(eng.stats))
        judged = rows
        if nw is not None and not used:
            judged, v = check_new_work(nw, rows)
            if not v.ok:
                raise _Failed(v)
        elif nw is not None:
            # the crash after the new work keeps a prefix of its commits: every one acknowledged
            # before it (flush_log_at_trx_commit=1), perhaps more
            cut = used[0].position
            must = sum(1 for c in nw.commits if c[3] <= cut) if cfg.flush_log_at_trx_commit == 1 \
                else 0
            refs = [_overlay(nw_base, nw.commits[:i]) for i in range(must, len(nw.commits) + 1)]
            match = next((r for r in refs if r == rows), None)
            reference = match if match is not None else \
                min(refs, key=lambda r: sum(r.get(k) != rows.get(k) for k in set(r) | set(rows)))
            judged = nw_base
        # what the OS was given but not fsynced survives a process kill, unless the drive
        # misdirected a write: then it may hold anything, and only what was fsynced (and so
        # read back by the engine) was promised, as after a power loss
        v = check_committed_state(markers, plan.position,
                                  {r: val for r, val in judged.items() if r[0] == TABLE},
                                  run.writers, power_loss=power_loss)
        if not v.ok:
            raise _Failed(v)
        ddl_rows: dict = {t: {} for t in eng.tables if t != TABLE}
        for (t, k), val in rows.items():
            if t != TABLE:
                ddl_rows.setdefault(t, {})[k] = val
        checked = sum(1 for found in ddl_rows.values() if found)
        if checked:             # a probe that did not fire is absent, never 0
            probes["ddl_table_rows_checked"] += checked
        v = check_ddl_rows(markers, plan.position, ddl_rows, power_loss=power_loss)
        if not v.ok:
            raise _Failed(v)
        if reference is not None and rows != reference:
            diff = sorted(r for r in set(rows) | set(reference) if rows.get(r) != reference.get(r))
            raise _Failed(Verdict.failed(
                LOST if any(reference.get(r) is not None and rows.get(r) is None for r in diff)
                else UNCOMMITTED,
                f"recovery is not idempotent: after {len(used)} crash(es) during recovery the "
                f"state differs from the uninterrupted recovery in {len(diff)} rows",
                [f"{t}:{k}: uninterrupted recovery {describe_value(reference.get((t, k)))}, "
                 f"after the nested crash {describe_value(rows.get((t, k)))}"
                 for t, k in diff[:8]], rule="recovery.not_idempotent"))
        xa = xa_promised(markers, plan.position, power_loss)
        found = _prepared_facts(eng, xa)
        v = check_prepared(markers, plan.position, found, power_loss)
        if not v.ok:
            raise _Failed(v)
        if found:
            resolved, before, after = resolve_prepared(eng, xa)
            for _, how, _ in resolved:
                probes[f"xa_resolved_{how}"] += 1
            v = check_xa_resolution(before, after, resolved)
            if not v.ok:
                raise _Failed(v)
        problems = check_quiesced(eng)      # runs purge to the end first
        probes["purge_after_recovery"] += eng.stats["purge_logs_freed"]
        if problems:
            raise _Failed(Verdict.from_problems(CORRUPT, problems))
        return CrashResult(plan, Verdict.passed(), probes, used, new_work)
    except _RefusedOnMedia:
        probes["refused_on_media_error"] += 1
        return CrashResult(plan, Verdict.passed(), probes, used, new_work)
    except _Failed as f:
        probes.update(f.probes)
        if f.verdict.kind in (REFUSED, CORRUPT) and \
                any(op.length for op in misdirected_writes(run, plan.position)):
            probes["refused_on_misdirected_write"] += 1
            return CrashResult(plan, Verdict.passed(), probes, used, new_work)
        if f.verdict.kind in (REFUSED, CORRUPT) and corrupted:
            probes["refused_on_at_rest_corruption"] += 1
            return CrashResult(plan, Verdict.passed(), probes, used, new_work)
        if used:
            f.verdict.details.append(f"after {len(used)} crash(es) during recovery")
        return CrashResult(plan, f.verdict, probes, used, new_work)
    except (OpBudgetExceeded, WatchdogExpired) as e:
        v = Verdict.failed(HANG, f"the engine did not finish: {e}", [
            "recovery, background rollback, purge and the checks of one crash state read and "
            "write each page a bounded number of times; a loop that keeps calling the file "
            "system, or keeps touching cached pages, is taken for a hang"], rule="engine.hang")
        if used:
            v.details.append(f"after {len(used)} crash(es) during recovery")
        return CrashResult(plan, v, probes, used, new_work)
    except CrashPlanError:
        raise                   # a plan that does not fit the trace: the caller's input is bad
    except Exception as e:  # noqa: BLE001 - the code under test failed in a checker's phase
        if caused_by_media(e):  # a checker reading an unreadable sector, say
            probes["refused_on_media_error"] += 1
            return CrashResult(plan, Verdict.passed(), probes, used, new_work)
        # any other exception of the engine under test, in any phase, is a finding: the
        # campaign never dies on the code it checks
        v = Verdict.failed(ENGINE_ERROR, f"checking the recovered database raised "
                                         f"{type(e).__name__}: {e}", _tb(e),
                           rule="engine.check_error")
        if used:
            v.details.append(f"after {len(used)} crash(es) during recovery")
        return CrashResult(plan, v, probes, used, new_work)


def describe_write(run: WorkloadRun):
    """A describer for crash plan explanations: names the pages or log blocks a write covers."""
    ps = run.settings.page_size

    def describe(op: Write) -> str:
        if op.path.endswith(".ibd") or op.path == "ibdata1":
            first, last = op.offset // ps, (op.offset + len(op.data) - 1) // ps
            what = f"page {first}" if first == last else f"pages {first}-{last}"
            if op.path == "ibdata1":
                from tornpage.engine import trx_sys
                d0 = trx_sys.doublewrite_first_page(run.settings.engine_config()
                                                    .n_rollback_segments)
                if d0 <= first < d0 + trx_sys.dblwr_area_pages(
                        run.settings.engine_config().doublewrite_batch_pages):
                    what += " (doublewrite area)"
            return what
        if op.path == "ib_logfile0":
            if op.offset < 2048:
                return "checkpoint slot" if op.offset in (512, 1536) else "log header"
            return f"redo blocks at file offset {op.offset}"
        return ""
    return describe


def explain_plans(run: WorkloadRun, plan: CrashPlan, nested: list) -> list[str]:
    """Lines explaining the crash plan, then (without page names: recovery traces are not
    kept) each crash during recovery."""
    lines = builder_for(run).explain(plan, describe_write(run))
    for d, p in enumerate(nested, 1):
        lost = [i for i, c in p.choices if c.kind != KEEP]
        lines.append(f"crash during recovery #{d}: after recovery operation #{p.position - 1}, "
                     f"{len(lost)} pending operation{'' if len(lost) == 1 else 's'} lost or torn")
    return lines
