"""Turn one recorded workload into crash states and judge each one.

:func:`draw_plan` lets Hypothesis choose a crash position and a fate for every pending
operation (so failures shrink towards "crash earlier, lose less"); :func:`check_crash_state`
builds the durable image the plan describes, recovers it with the engine, finishes background
rollback and hands the result to the oracles.
"""
from __future__ import annotations

import traceback
from collections import Counter
from dataclasses import dataclass, field

from tornpage.checkers import probes as probes_mod
from tornpage.checkers.oracle import check_committed_state
from tornpage.checkers.structure import check_after_recovery, check_quiesced
from tornpage.checkers.verdict import (CORRUPT, ENGINE_ERROR, ISOLATION, LOST, REFUSED, UNCOMMITTED,
                              Verdict)
from tornpage.engine import Engine
from tornpage.engine.errors import Corruption, EngineError, RecoveryError
from tornpage.faultfs import (DROP, KEEP, SIZE_ONLY, TEAR, CrashPlan, CrashPlanError,
                     CrashStateBuilder, InjectedIOError,
                     MediaFault, SimDisk, Write, get_device)
from tornpage.faultfs import search

from tornpage.campaigns.workload import TABLE, WorkloadRun

MAX_CHOICES = 48   # pending operations beyond this many (the oldest) are kept


@dataclass
class CrashResult:
    plan: CrashPlan
    verdict: Verdict
    probes: dict = field(default_factory=dict)
    nested: list = field(default_factory=list)   # plans of crashes during recovery, in order


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
    each barrier, after each commit acknowledgement, and at the end."""
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
    """Finish background rollback (and with ``quiesce``, all background work); return rows."""
    probes = probes_mod.collect(eng.stats)
    try:
        eng.finish_background_rollback()
        if quiesce:
            while eng.run_background(3):
                pass
        return {(TABLE, k): v for k, v in eng.all_rows(TABLE).items()}
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


def check_crash_state(run: WorkloadRun, plan: CrashPlan, nested: list | None = None,
                      draw_nested=None) -> CrashResult:
    """Recover the crash state ``plan`` describes and judge it.  Never raises for an engine
    failure: every failure is a verdict.

    Crashes during recovery: ``nested`` (plans, e.g. from an artifact) or ``draw_nested``
    (``depth -> None`` to stop, or ``builder -> plan``) crash the recovery run itself, whose trace is the
    engine's recovery plus background rollback plus background work until quiet; the next
    level recovers from that crash image.  The final state must then equal what the
    uninterrupted recovery of the first crash state produced (recovery is idempotent).
    """
    b = builder_for(run)
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
    image = b.build(plan)
    corrupted = at_rest_corruption(run, plan, image)
    reference = None
    try:
        depth = 0
        while True:
            if nested is not None:
                pick = (lambda nb, p=nested[depth]: p) if depth < len(nested) else None
            else:
                pick = draw_nested(depth) if draw_nested is not None else None
            if pick is None:
                break
            disk = SimDisk(b.profile, image)
            eng = _open(disk, cfg)
            rows = _finish(eng, quiesce=True)
            probes.update(probes_mod.collect(eng.stats))
            if reference is None:
                reference = rows
            nb = CrashStateBuilder(image, disk.trace, b.profile)
            nplan = pick(nb)
            used.append(nplan)
            probes["crash_during_recovery"] += 1
            image = nb.build(nplan)
            depth += 1
        disk = SimDisk(b.profile, image)
        eng = _open(disk, cfg)
        problems = check_after_recovery(eng)
        if problems:
            raise _Failed(Verdict.from_problems(CORRUPT, problems),
                          probes_mod.collect(eng.stats))
        rows = _finish(eng, quiesce=False)
        probes.update(probes_mod.collect(eng.stats))
        # what the OS was given but not fsynced survives a process kill, unless the drive
        # misdirected a write: then it may hold anything, and only what was fsynced (and so
        # read back by the engine) was promised, as after a power loss
        v = check_committed_state(run.trace.markers(), plan.position, rows, run.writers,
                                  power_loss=bool(misdirected_writes(run, plan.position)) or
                                  bool(corrupted) or
                                  (b.profile.power_loss and
                                   any(c.kind != KEEP for _, c in plan.choices)))
        if not v.ok:
            raise _Failed(v)
        if reference is not None and rows != reference:
            diff = sorted(r for r in set(rows) | set(reference) if rows.get(r) != reference.get(r))
            raise _Failed(Verdict.failed(
                LOST if any(reference.get(r) is not None and rows.get(r) is None for r in diff)
                else UNCOMMITTED,
                f"recovery is not idempotent: after {len(used)} crash(es) during recovery the "
                f"state differs from the uninterrupted recovery in {len(diff)} rows",
                [f"{t}:{k}: uninterrupted recovery {'present' if reference.get((t, k)) else 'absent'}"
                 f", after the nested crash {'present' if rows.get((t, k)) else 'absent'}"
                 for t, k in diff[:8]], rule="recovery.not_idempotent"))
        problems = check_quiesced(eng)      # runs purge to the end first
        probes["purge_after_recovery"] += eng.stats["purge_logs_freed"]
        if problems:
            raise _Failed(Verdict.from_problems(CORRUPT, problems))
        return CrashResult(plan, Verdict.passed(), probes, used)
    except _RefusedOnMedia:
        probes["refused_on_media_error"] += 1
        return CrashResult(plan, Verdict.passed(), probes, used)
    except _Failed as f:
        probes.update(f.probes)
        if f.verdict.kind in (REFUSED, CORRUPT) and \
                any(op.length for op in misdirected_writes(run, plan.position)):
            probes["refused_on_misdirected_write"] += 1
            return CrashResult(plan, Verdict.passed(), probes, used)
        if f.verdict.kind in (REFUSED, CORRUPT) and corrupted:
            probes["refused_on_at_rest_corruption"] += 1
            return CrashResult(plan, Verdict.passed(), probes, used)
        if used:
            f.verdict.details.append(f"after {len(used)} crash(es) during recovery")
        return CrashResult(plan, f.verdict, probes, used)
    except CrashPlanError:
        raise                   # a plan that does not fit the trace: the caller's input is bad
    except Exception as e:  # noqa: BLE001 - the code under test failed in a checker's phase
        if caused_by_media(e):  # a checker reading an unreadable sector, say
            probes["refused_on_media_error"] += 1
            return CrashResult(plan, Verdict.passed(), probes, used)
        # any other exception of the engine under test, in any phase, is a finding: the
        # campaign never dies on the code it checks
        v = Verdict.failed(ENGINE_ERROR, f"checking the recovered database raised "
                                         f"{type(e).__name__}: {e}", _tb(e),
                           rule="engine.check_error")
        if used:
            v.details.append(f"after {len(used)} crash(es) during recovery")
        return CrashResult(plan, v, probes, used)


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
                if d0 <= first < d0 + run.settings.engine_config().doublewrite_batch_pages + 1:
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
