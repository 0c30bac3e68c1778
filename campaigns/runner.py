"""The campaign runner: Hypothesis draws workloads, the one crash-state search
(:mod:`faultfs.search`) cuts each workload's trace into crash states, every distinct state is
recovered and judged, failures are shrunk and saved as replayable artifacts.

Determinism: examples are generated in chunks, chunk ``i`` seeded from ``(seed, i)``; Hypothesis'
example database is off.  With ``--examples`` (and no time budget cut) the same seed explores the
same workloads and crash states, byte for byte.  The time budget is checked only between chunks.

One Hypothesis example = one workload (settings, steps and a crash search seed, all drawn by
Hypothesis) run once, its trace recorded, then up to ``crash_states_per_workload`` *distinct*
crash states from :class:`faultfs.search.CrashSearch` seeded by that seed (the all-kept end
state once, small crash points whole, then samples that favour losses).  A state equal to one
already checked reuses its verdict and is counted as reused.

A failing state fails the example.  Shrinking is bounded by ``shrink_steps`` runs, never by
wall-clock time, so the same command saves the same artifact: Hypothesis proposes smaller
workloads (each run is a step; a candidate counts only if it fails with the same finding
signature, kind and checker rule), then :func:`faultfs.search.shrink_plan` shrinks the crash
plan with the steps left.  The unshrunk artifact is saved first, so an interrupted shrink loses
nothing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator
from unittest import mock

from hypothesis import HealthCheck, Phase, Verbosity, given, seed as hyp_seed, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis import strategies as st

from tornpage.checkers import probes as probes_mod
from tornpage.checkers.verdict import finding_signature as stored_signature
from tornpage.faultfs import KEEP, CrashPlan, CrashPlanError, search
from tornpage.faultfs.trace import Marker, MediaFault

from tornpage.campaigns import crashcheck
from tornpage.campaigns.artifacts import Artifact, ArtifactError, from_dict, load
from tornpage.campaigns.mutants import planted
from tornpage.campaigns.workload import (SLOTS, TRX_COMMIT_MODES, WorkloadSettings,
                                ISOLATION_LEVELS, isolation_strategy,
                                media_schedule_strategy, prepare_inserts,
                                database_age_strategy, MEDIA_ROTATION, setup_redo_bytes,
                                LOG_FLUSH_EVERY_MTRS,
                                run_workload, settings_strategy, with_prepares,
                                trx_commit_mode_strategy, workload_probes, workload_strategy)
from tornpage.engine.config import EngineConfig

CHUNK_EXAMPLES = 4


class _CrashStateFailed(AssertionError):
    pass


@dataclass
class CampaignConfig:
    seed: int = 0
    budget: float | None = 60.0          # seconds of wall-clock time (checked between chunks)
    examples: int | None = None          # workloads to run at most
    settings: WorkloadSettings = field(default_factory=WorkloadSettings)
    mutant: str | None = None
    crash_states_per_workload: int = 24
    max_steps: int = 60
    vary_settings: bool = True           # draw buffer pool, log and table sizes per workload
    trx_commit_modes: tuple = TRX_COMMIT_MODES   # ... and flush_log_at_trx_commit among these
    isolation_levels: tuple = ISOLATION_LEVELS   # ... and transaction_isolation among these
    recovery_crashes: int = 1            # crashes during recovery, at most, per crash state
    artifacts_dir: str = "tornpage-artifacts"
    max_findings: int = 1
    required_probes: tuple = probes_mod.REQUIRED_DEFAULT
    shard: tuple[int, int] = (1, 1)      # (K, N): this process runs chunks i with i % N == K-1
    search: str = "sample"               # "sample" or "systematic" (see SEARCH_MODES)
    exhaustive_bound: int = 64           # crash points with <= this many states are enumerated whole
    check_determinism: bool = True       # replay every finding twice: same trace hash, verdict
    media_faults: bool = False           # draw a media fault schedule for each workload
    database: str | None = None          # Hypothesis example database directory (nightly)
    shrink: bool = True                  # shrink a failing example (workload, then crash plan)
    shrink_steps: int = 100              # candidate runs spent shrinking one finding, at most
    show_shrink: bool = False            # shrinking progress on stderr


SEARCH_MODES = {
    "sample": "the one crash-state search, seeded per workload: the all-kept end state, small "
              "crash points whole, then samples that favour losses",
    "systematic": "first every prefix of the trace (all issued operations kept) and every crash "
                  "point (before each fsync or fsync_dir, after each commit acknowledgement, "
                  "at the end) enumerated whole when its space has at most --exhaustive-bound "
                  "states, its single drops and samples beyond; then the samples",
}


@dataclass
class Finding:
    verdict: dict
    artifact: str
    seed: int
    explanation: str
    plan_lines: list
    determinism: str | None = None    # None unchecked, "ok", or what differed between replays
    artifact_json: dict | None = None
    shrink_steps: int = 0             # shrink steps spent on it
    unshrunk_artifact: str = ""       # saved before shrinking (removed once the shrunk is saved)

    def signature(self) -> str:
        return stored_signature(self.verdict)

    def to_json(self) -> dict:
        return {"kind": self.verdict["kind"], "summary": self.verdict["summary"],
                "rule": self.verdict.get("rule"),
                "signature": self.signature(), "artifact": self.artifact, "seed": self.seed,
                "reproduce": f"tornpage replay {self.artifact}",
                "explanation": self.explanation, "crash_plan": self.plan_lines,
                "shrink_steps": self.shrink_steps, "determinism": self.determinism}


@dataclass
class CampaignResult:
    workloads: int = 0
    crash_states: int = 0               # distinct crash states checked
    crash_states_reused: int = 0        # repeats of a checked state (verdict reused, not checked)
    shrink_runs: int = 0
    probes: Counter = field(default_factory=Counter)
    findings: list = field(default_factory=list)
    missing_probes: list = field(default_factory=list)
    elapsed: float = 0.0
    chunks: int = 0
    coverage: "Coverage" = field(default_factory=lambda: Coverage())
    interrupted: bool = False           # stopped by SIGINT/SIGTERM before the budget ended
    chunk_ids: list = field(default_factory=list)       # the chunks this run covered
    signatures: set = field(default_factory=set)
    duplicates: dict = field(default_factory=dict)      # signature → further findings dropped

    @property
    def failed(self) -> bool:
        return bool(self.findings) or bool(self.missing_probes) or self.interrupted

    def to_json(self, cfg: CampaignConfig) -> dict:
        return {"tool": "tornpage", "seed": cfg.seed, "mutant": cfg.mutant,
                "settings": cfg.settings.to_json(), "workloads": self.workloads,
                "crash_states": self.crash_states,
                "crash_states_reused": self.crash_states_reused,
                "shrink_runs": self.shrink_runs,
                "crash_states_per_second": round(self.crash_states / self.elapsed, 1)
                if self.elapsed else None,
                "elapsed_seconds": round(self.elapsed, 2),
                "probes": dict(sorted(self.probes.items())),
                "trx_commit_modes": list(cfg.trx_commit_modes) if cfg.vary_settings
                else [cfg.settings.flush_log_at_trx_commit],
                "search": cfg.search, "coverage": self.coverage.to_json(),
                "required_probes": list(cfg.required_probes),
                "missing_probes": self.missing_probes,
                "findings": [f.to_json() for f in self.findings],
                "duplicate_findings": dict(self.duplicates),
                "shard": list(cfg.shard), "chunks": sorted(self.chunk_ids),
                "chunk_seeds": [chunk_seed(cfg.seed, i) for i in sorted(self.chunk_ids)],
                "interrupted": self.interrupted,
                "passed": not self.failed}


@dataclass
class Coverage:
    """How much of each crash point's space of crash states was checked.

    A crash point is one position in one workload's trace; its space is
    :func:`faultfs.search.space_size` there.  ``fractions`` holds checked/space for every point
    that was not covered completely (sampled points).
    """
    prefixes: int = 0              # all-kept crash states at every position (systematic)
    points: int = 0                # crash points with at least one state checked
    exhaustive: int = 0            # ... of which every state was checked
    exhaustive_states: int = 0     # states checked at exhaustively covered points
    largest_exhaustive: int = 0    # the largest space enumerated completely
    fractions: list = field(default_factory=list)

    def add_point(self, checked: int, size: int) -> None:
        self.points += 1
        if checked >= size:
            self.exhaustive += 1
            self.exhaustive_states += size
            self.largest_exhaustive = max(self.largest_exhaustive, size)
        else:
            self.fractions.append(checked / size)

    def median_fraction(self) -> float | None:
        if not self.fractions:
            return None
        xs = sorted(self.fractions)
        return xs[len(xs) // 2]

    def to_json(self) -> dict:
        m = self.median_fraction()
        return {"prefixes": self.prefixes, "crash_points": self.points,
                "crash_points_exhaustive": self.exhaustive,
                "exhaustive_states": self.exhaustive_states,
                "largest_exhaustive_space": self.largest_exhaustive,
                "crash_points_sampled": len(self.fractions),
                "sampled_median_fraction": m}

    def describe(self) -> str:
        m = self.median_fraction()
        s = (f"{self.points} crash points: {self.exhaustive} enumerated exhaustively "
             f"({self.exhaustive_states} states, spaces up to {self.largest_exhaustive}), "
             f"{len(self.fractions)} sampled")
        if m is not None:
            s += f" (median {m:.2g} of their space)"
        if self.prefixes:
            s += f"; {self.prefixes} prefix states"
        return s


def chunk_seed(seed: int, i: int) -> int:
    return int.from_bytes(hashlib.sha256(f"tornpage:{seed}:{i}".encode()).digest()[:8], "big")


def plan_chunks(cfg: CampaignConfig) -> Iterator[tuple[int, int]]:
    """(chunk index, examples in it) in the order this shard runs them.

    With ``examples`` the seed space is chunks ``0 .. ceil(examples/4)-1`` and shard ``K/N`` runs
    those with ``i % N == K-1``, so N shards cover it exactly, without overlap.  Without it the
    chunks go on until the budget ends."""
    k, n = cfg.shard
    if cfg.examples is None:
        i = k - 1
        while True:
            yield i, CHUNK_EXAMPLES
            i += n
    total = -(-cfg.examples // CHUNK_EXAMPLES)
    for i in range(k - 1, total, n):
        yield i, min(CHUNK_EXAMPLES, cfg.examples - i * CHUNK_EXAMPLES)


@contextlib.contextmanager
def _no_local_constants() -> Iterator[None]:
    """Hypothesis (6.131 and later) mixes literals from the source of every *local* module in
    ``sys.modules`` into what it generates, so the same seed would draw other workloads
    depending on what else the process imported (a test module, a user's conftest, an editable
    install of tornpage itself, a Dask worker's imports).  A campaign's examples must be a
    function of its seed alone: while a chunk runs, the pool of local constants is empty
    (Hypothesis's global constants, the same everywhere, stay)."""
    try:
        from hypothesis.internal.conjecture import providers
        empty = providers.Constants()
        cache = providers.CONSTANTS_CACHE
    except (ImportError, AttributeError):    # a Hypothesis without local constants
        yield
        return
    cache.cache.clear()
    with mock.patch.object(providers, "_get_local_constants", lambda: empty):
        try:
            yield
        finally:
            cache.cache.clear()


def run_chunk(cfg: CampaignConfig, i: int, n_examples: int) -> "CampaignResult":
    """Run chunk ``i`` of the campaign (its seed is ``chunk_seed(cfg.seed, i)``) with the mutant
    planted; a pure function of its arguments, so a process pool or a Dask worker can run it.
    Findings come back with their artifacts as JSON; :func:`run_campaign` saves them."""
    res = CampaignResult()
    with planted(cfg.mutant), _no_local_constants():
        _run_chunk(cfg, chunk_seed(cfg.seed, i), n_examples, res, chunk=i)
    res.chunks = 1
    res.chunk_ids = [i]
    return res


class StopRequest:
    """A stop asked for by a signal (the CLI's SIGINT and SIGTERM handlers set it).  A campaign
    running in this process stops cooperatively: it checks the request before every crash
    state and between chunks (:meth:`check`) and raises KeyboardInterrupt there, never from
    inside whatever code the signal interrupted (a KeyboardInterrupt raised in a ``__del__`` or
    a garbage-collector callback, Hypothesis's for one, is printed as "Exception ignored" and
    lost)."""

    def __init__(self) -> None:
        self.requested = False

    def set(self) -> None:
        self.requested = True

    def clear(self) -> None:
        self.requested = False

    def check(self) -> None:
        """Raises KeyboardInterrupt when a stop was requested."""
        if self.requested:
            raise KeyboardInterrupt


STOP = StopRequest()


def run_campaign(cfg: CampaignConfig,
                 progress: Callable[[CampaignResult], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 executor=None, jobs: int = 1) -> CampaignResult:
    """Run a campaign; return its result (findings saved under ``cfg.artifacts_dir``).

    ``executor``: anything with ``submit(fn, *args) -> future`` (a
    ``concurrent.futures.ProcessPoolExecutor`` or a ``distributed.Client``) to run ``jobs``
    chunks at a time; None runs them in this process.  Results are merged in chunk order, so a
    run with ``--examples`` gives the same findings however it is spread.
    """
    res = CampaignResult()
    t0 = clock()
    chunks = plan_chunks(cfg)

    def more() -> bool:
        STOP.check()
        return (cfg.budget is None or clock() - t0 < cfg.budget) and \
            len(res.findings) < cfg.max_findings

    def merge(part: CampaignResult) -> None:
        _merge(cfg, res, part)
        res.elapsed = clock() - t0
        if progress:
            progress(res)

    before = _unshrunk_files(cfg.artifacts_dir)
    inflight: list = []
    try:
        if executor is None:
            for i, n in chunks:
                if not more():
                    break
                merge(run_chunk(cfg, i, n))
        else:
            for i, n in chunks:
                if not more():
                    break
                inflight.append(executor.submit(run_chunk, cfg, i, n))
                if len(inflight) >= jobs:
                    merge(inflight.pop(0).result())
            for fut in inflight:
                part = fut.result()
                if len(res.findings) < cfg.max_findings:
                    merge(part)
    except KeyboardInterrupt:           # SIGINT, or SIGTERM turned into one by the CLI
        res.interrupted = True
        for fut in inflight:
            fut.cancel()
        _keep_interrupted_findings(cfg, res, before)
    res.elapsed = clock() - t0
    if not res.findings and not res.interrupted:
        res.missing_probes = probes_mod.missing(res.probes, cfg.required_probes)
    return res


def _unshrunk_files(directory: str) -> set[str]:
    try:
        return {n for n in os.listdir(directory) if n.endswith("-unshrunk.json")}
    except OSError:
        return set()


def _keep_interrupted_findings(cfg: CampaignConfig, res: CampaignResult, before: set) -> None:
    """After an interrupt: every finding whose shrinking was cut short left its unshrunk
    artifact (saved before shrinking began); report each as a finding, marked unshrunk."""
    for name in sorted(_unshrunk_files(cfg.artifacts_dir) - before):
        path = os.path.join(cfg.artifacts_dir, name)
        try:
            art = load(path)
        except ArtifactError:
            continue                   # cut off while being written
        v = art.finding
        sig = stored_signature(v)
        if sig in res.signatures:
            continue
        res.signatures.add(sig)
        res.findings.append(Finding(v, path, art.seed,
                                    f"[{v.get('kind')}] {v.get('summary')} (interrupted while "
                                    f"shrinking: the artifact is the unshrunk case)",
                                    [], None, art.to_json(), 0, path))


def _merge(cfg: CampaignConfig, into: CampaignResult, part: CampaignResult) -> None:
    into.workloads += part.workloads
    into.crash_states += part.crash_states
    into.crash_states_reused += part.crash_states_reused
    into.shrink_runs += part.shrink_runs
    into.probes.update(part.probes)
    into.chunks += part.chunks
    into.chunk_ids.extend(part.chunk_ids)
    _merge_coverage(into.coverage, part.coverage)
    for f in part.findings:
        sig = f.signature()
        if sig in into.signatures:
            into.duplicates[sig] = into.duplicates.get(sig, 0) + 1
            if f.unshrunk_artifact and os.path.exists(f.unshrunk_artifact):
                os.unlink(f.unshrunk_artifact)
            continue
        into.signatures.add(sig)
        f.artifact = from_dict(f.artifact_json).save(cfg.artifacts_dir)
        if f.unshrunk_artifact and os.path.abspath(f.unshrunk_artifact) != \
                os.path.abspath(f.artifact) and os.path.exists(f.unshrunk_artifact):
            os.unlink(f.unshrunk_artifact)         # the shrunk one replaces it
        into.findings.append(f)


def hypothesis_settings(cfg: CampaignConfig, n_examples: int) -> settings:
    """The Hypothesis settings of one chunk, all explicit, so that no loaded profile (such as
    Hypothesis's automatic ``ci`` profile when ``CI`` is set: derandomize, no database) changes
    what a campaign does: a nightly campaign stays random and keeps its example database."""
    db = DirectoryBasedExampleDatabase(cfg.database) if cfg.database else None
    return settings(max_examples=n_examples, database=db, derandomize=False, deadline=None,
                    suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
                    phases=([Phase.reuse] if db is not None else [])
                    + [Phase.generate] + ([Phase.shrink] if cfg.shrink else []),
                    report_multiple_bugs=False, print_blob=False)


def log_pressure_strategy(table_size: int):
    """Bulk statements and commits (campaigns.workload steps) a campaign appends to a workload
    that runs with the smallest log (drawn after the steps and the flush mode, so the draws
    before it stay as they were).  With a few of them the redo since the last checkpoint
    outgrows the log free check margin, so the log is flushed and checkpointed synchronously
    and wraps after the initial state, where crash states are cut; the few steps of a typical
    workload write far less redo than the log holds.  Shrinking drops them."""
    slot = st.integers(0, SLOTS - 1)
    seed = st.integers(0, 10**6)
    return st.lists(st.one_of(
        st.tuples(st.just("bulk_update"), slot, st.integers(1, table_size),
                  st.integers(20, 40), seed),
        st.tuples(st.just("bulk_insert"), slot, st.integers(table_size + 1, table_size * 4),
                  st.integers(20, 60), seed),
        st.tuples(st.just("commit"), slot)).map(list), max_size=10)


def _state_key(run, plan: CrashPlan, image) -> str:
    """What makes two crash states of one workload the same state for the oracles: the durable
    image, the markers (promises) and media faults issued before the crash, and whether the
    crash lost anything (a lossless crash on a power-loss device is judged like a process kill)."""
    lossy = any(c.kind != KEEP for _, c in plan.choices)
    return search.image_key(image, f"promises:{_events_before(run)[plan.position]}",
                            f"lossy:{lossy}")


def _events_before(run) -> list[int]:
    """``[n]``: markers and media faults among the first ``n`` operations of the workload's
    trace, for every ``n`` (computed once per workload, O(trace))."""
    if not hasattr(run, "_events_before"):
        counts = [0]
        for op in run.trace.ops:
            counts.append(counts[-1] + isinstance(op, (Marker, MediaFault)))
        run._events_before = counts
    return run._events_before


def _crash_search(cfg: CampaignConfig, run, seed: int, schedule: str) -> search.CrashSearch:
    return search.CrashSearch(crashcheck.builder_for(run), run.setup_end + 1, len(run.trace),
                              seed=seed, schedule=schedule, exhaustive_bound=cfg.exhaustive_bound,
                              samples_per_point=max(1, cfg.exhaustive_bound // 4),
                              promise_labels=crashcheck.PROMISE_LABELS,
                              max_choices=crashcheck.MAX_CHOICES)


def check_workload(cfg: CampaignConfig, run, seed: int, res: "CampaignResult | None" = None,
                   want: str | None = None):
    """Check up to ``cfg.crash_states_per_workload`` distinct crash states of one recorded
    workload, taken from :class:`faultfs.search.CrashSearch` seeded by ``seed`` (the
    ``systematic`` search first visits every position and enumerates small crash points whole).

    Each distinct state gets a full recovery, background rollback, purge, the oracles and fsck;
    a repeat (same :func:`_state_key`) reuses its twin's verdict and is counted as reused.  A
    state whose recovery is itself crashed (``cfg.recovery_crashes``; decided per state by the
    seeded generator) is always checked.

    Returns the first failing :class:`crashcheck.CrashResult` (with ``want``: the first whose
    finding has that signature), or None.  Counts and probes go into ``res`` when given."""
    rng = random.Random(f"tornpage-nested:{seed}")
    # new transactions during background rollback: a generator of its own, so that the
    # crashes during recovery stay what the nested generator gave before it existed
    nw_rng = random.Random(f"tornpage-new-work:{seed}")
    seen = search.Seen()
    cov = Coverage()
    searches = [_crash_search(cfg, run, seed, "sample")]
    if cfg.search == "systematic":     # every position first, unbounded; then the samples
        searches.insert(0, _crash_search(cfg, run, seed, "positions"))
    b = crashcheck.builder_for(run)
    found = None
    for n, crashes in enumerate(searches):
        limit = None if n < len(searches) - 1 else cfg.crash_states_per_workload
        start = seen.checked
        for plan in crashes:
            STOP.check()
            nested = cfg.recovery_crashes and rng.random() < 0.5
            new_work = nw_rng.randrange(2 ** 32) if nw_rng.random() < 0.5 else None
            if nested:
                out = crashcheck.check_crash_state(
                    run, plan, new_work=new_work,
                    draw_nested=crashcheck.nested_drawer(rng, cfg.recovery_crashes))
                seen.count_unkeyed()
                reused = False
            else:
                # a repeated state reuses its twin's verdict, new work or not: the distinct
                # states a budget covers stay those it covered before new work existed
                image = b.build(plan)
                out, reused = seen.judge(_state_key(run, plan, image),
                                         lambda: crashcheck.check_crash_state(
                                             run, plan, new_work=new_work, image=image))
            if res is not None and not reused:
                res.probes.update(out.probes)
                res.probes.update(crashcheck.fault_probes(plan))
                for p in out.nested:        # the faults of crashes during recovery too
                    res.probes.update(crashcheck.fault_probes(p))
            if not out.verdict.ok and (want is None or out.verdict.signature() == want):
                found = dataclasses.replace(out, plan=plan)
                break
            if limit is not None and seen.checked - start >= limit:
                break               # before asking the search for a plan it would not check
        if found is not None:
            break
        if crashes.schedule == "positions":
            cov.prefixes += crashes.positions
        for pc in crashes.coverage():
            cov.add_point(pc.tried, pc.space)
    if res is not None:
        res.crash_states += seen.checked
        res.crash_states_reused += seen.reused
        if found is None:
            _merge_coverage(res.coverage, cov)
    return found


def _draw_workload(cfg: CampaignConfig, data, chunk: int = 0):
    """(settings, steps, crash search seed) of one workload of chunk ``chunk``, drawn by
    Hypothesis."""
    s = data.draw(settings_strategy(cfg.settings), label="settings") \
        if cfg.vary_settings else cfg.settings
    if cfg.media_faults:
        # a table larger than the buffer pool, so pages are read back (and can be hit)
        big = data.draw(st.booleans(), label="table larger than the buffer pool")
        # the chunk's kind first: every kind in every campaign, or shard, of enough chunks (a
        # shard K/N runs every N-th chunk: it counts its own, whatever N)
        first = MEDIA_ROTATION[chunk // cfg.shard[1] % len(MEDIA_ROTATION)]
        s = dataclasses.replace(s, media_faults=data.draw(media_schedule_strategy(first),
                                                          label="media faults"),
                                **({"table_size": 400, "buffer_pool_pages": 16}
                                   if big else {}))
    steps = data.draw(workload_strategy(s.table_size, cfg.max_steps), label="steps")
    if cfg.vary_settings:
        s = dataclasses.replace(s, flush_log_at_trx_commit=data.draw(
            trx_commit_mode_strategy(cfg.trx_commit_modes),
            label="flush_log_at_trx_commit"))
        if s.log_file_size == EngineConfig.min_log_file_size(s.page_size):
            steps = steps + data.draw(log_pressure_strategy(s.table_size),
                                      label="log pressure")
        s = dataclasses.replace(
            s, isolation=data.draw(isolation_strategy(cfg.isolation_levels),
                                   label="transaction_isolation"),
            n_rollback_segments=data.draw(st.sampled_from([2, 1, 8]),
                                          label="rollback segments"))
    seed = data.draw(st.integers(0, 2 ** 32 - 1), label="crash search seed")
    if cfg.vary_settings:       # drawn last, so this example's earlier draws are unchanged
        lsn, trx_id = data.draw(database_age_strategy(lambda: setup_redo_bytes(s, cfg.mutant)),
                                label="database age")
        s = dataclasses.replace(s, initial_lsn=lsn, initial_trx_id=trx_id,
                                log_flush_every_mtrs=data.draw(
                                    st.sampled_from(LOG_FLUSH_EVERY_MTRS),
                                    label="log flushes at mtr boundaries"))
    # XA PREPARE steps, placed by a generator seeded with the crash search seed: a Hypothesis
    # draw would change the examples generated after it (workload.prepare_inserts)
    steps = with_prepares(steps, prepare_inserts(seed, len(steps)))
    return s, steps, seed


@dataclass
class _Failing:
    """The smallest failing workload found so far in a chunk, and how shrinking goes."""
    settings: WorkloadSettings
    steps: list
    seed: int
    run: object
    out: object
    signature: str
    budget: search.ShrinkBudget

    def key(self) -> str:
        return repr((self.settings, self.steps, self.seed))


def _failed(signature: str) -> None:
    """Fail the Hypothesis example.  One raise site: Hypothesis tells failures apart by where
    they were raised, and every failure here is the same finding being shrunk."""
    raise _CrashStateFailed(signature)


def _say(cfg: CampaignConfig, line: str) -> None:
    if cfg.show_shrink:
        print(line, file=sys.stderr, flush=True)


def _run_chunk(cfg: CampaignConfig, cseed: int, n_examples: int, res: CampaignResult,
               chunk: int = 0) -> None:
    failing: list[_Failing] = []
    final: list[_Failing] = []          # the failure Hypothesis replayed last: its minimal one
    unshrunk: list[str] = []

    @hypothesis_settings(cfg, n_examples)
    @hyp_seed(cseed)
    @given(st.data())
    def campaign_example(data):
        s, steps, seed = _draw_workload(cfg, data, chunk)
        if failing:
            # shrinking: Hypothesis proposes smaller workloads; each run is one shrink step
            f = failing[-1]
            known = next((g for g in failing if g.key() == repr((s, steps, seed))), None)
            if known is not None:       # a failure already seen (Hypothesis's final replay)
                final[:] = [known]
                _failed(f.signature)
            if not f.budget.take():
                return                                      # budget spent: not run, passes
            res.shrink_runs += 1
            run = run_workload(s, steps)
            out = check_workload(cfg, run, seed, want=f.signature)
            if out is None:
                return
            failing.append(_Failing(s, steps, seed, run, out, f.signature, f.budget))
            _say(cfg, f"  shrink step {f.budget.used}/{f.budget.steps}: {len(steps)} workload "
                      f"steps, {search.plan_losses(out.plan)} faults")
            _failed(f.signature)
        run = run_workload(s, steps)
        res.workloads += 1
        res.probes.update(crashcheck.media_fault_probes(run))
        res.probes.update(workload_probes(run))
        out = check_workload(cfg, run, seed, res)
        if out is None:
            return
        f = _Failing(s, steps, seed, run, out, out.verdict.signature(),
                     search.ShrinkBudget(cfg.shrink_steps if cfg.shrink else 0))
        failing.append(f)
        if cfg.shrink:              # saved before shrinking starts: an interrupt loses nothing
            unshrunk.append(_artifact(cfg, cseed, f, shrunk=False).save(cfg.artifacts_dir))
            _say(cfg, f"finding {f.signature} in workload {res.workloads} ({len(steps)} steps); "
                      f"unshrunk artifact {unshrunk[0]}; shrinking (--shrink-steps "
                      f"{cfg.shrink_steps})")
        _failed(f.signature)

    try:
        campaign_example()
    except _CrashStateFailed:
        pass
    if not failing:
        return
    f = final[0] if final else failing[-1]
    if cfg.shrink:
        _shrink_plan(f, res)
        _say(cfg, f"  shrunk in {f.budget.used} steps: {len(f.steps)} workload steps, "
                  f"{search.plan_losses(f.out.plan)} faults")
    _save_finding(cfg, cseed, f, res, unshrunk[0] if unshrunk else "")


def _shrink_plan(f: _Failing, res: CampaignResult) -> None:
    """Shrink the failing crash plan with what is left of the shrink budget: first without the
    crashes during recovery, then :func:`faultfs.search.shrink_plan` (fewer losses, whole
    losses instead of tears, an earlier crash), keeping the same finding signature."""
    run, out = f.run, f.out

    def still(plan: CrashPlan, nested: list) -> object:
        res.shrink_runs += 1
        STOP.check()
        try:
            o = crashcheck.check_crash_state(run, plan, nested=nested, new_work=out.new_work)
        except CrashPlanError:
            return None          # the nested plans no longer fit the recovery's trace
        return o if not o.verdict.ok and o.verdict.signature() == f.signature else None

    if out.nested and f.budget.take():
        o = still(out.plan, [])
        if o is not None:
            out = o
    _, o, _ = search.shrink_plan(crashcheck.builder_for(run), out.plan,
                                     lambda p: still(p, list(out.nested)), f.budget,
                                     lo=run.setup_end + 1)
    f.out = o if o is not None else out


def _merge_coverage(into: Coverage, c: Coverage) -> None:
    into.prefixes += c.prefixes
    into.points += c.points
    into.exhaustive += c.exhaustive
    into.exhaustive_states += c.exhaustive_states
    into.largest_exhaustive = max(into.largest_exhaustive, c.largest_exhaustive)
    into.fractions.extend(c.fractions)


def _artifact(cfg: CampaignConfig, cseed: int, f: _Failing, shrunk: bool) -> Artifact:
    return Artifact(seed=cseed, settings=f.settings, steps=[list(x) for x in f.steps],
                    plan=f.out.plan, nested=list(f.out.nested), mutant=cfg.mutant,
                    new_work=f.out.new_work,
                    trace_hash=f.run.trace.hash(), finding=f.out.verdict.to_json(),
                    shrunk=shrunk)


def _save_finding(cfg: CampaignConfig, cseed: int, f: _Failing, res: CampaignResult,
                  unshrunk: str) -> None:
    art = _artifact(cfg, cseed, f, shrunk=cfg.shrink)
    plan_lines = crashcheck.explain_plans(f.run, f.out.plan, f.out.nested)
    det = determinism_check(art) if cfg.check_determinism else None
    res.findings.append(Finding(f.out.verdict.to_json(), "", cseed, f.out.verdict.explain(),
                                plan_lines, det, art.to_json(), f.budget.used,
                                unshrunk))


def determinism_check(art: Artifact, runs: int = 2) -> str:
    """Replay ``art`` ``runs`` times (the mutant, if any, must already be planted): ``"ok"``
    when every replay gives the artifact's trace hash and verdict, else what differed."""
    for n in range(1, runs + 1):
        run = run_workload(art.settings, art.steps)
        if run.trace.hash() != art.trace_hash:
            return (f"replay {n} gave trace hash {run.trace.hash()[:16]}, the artifact has "
                    f"{art.trace_hash[:16]}: the workload is not deterministic")
        out = crashcheck.check_crash_state(run, art.plan, nested=art.nested,
                                           new_work=art.new_work)
        if out.verdict.to_json() != art.finding:
            return (f"replay {n} gave verdict {out.verdict.signature()!r}, the artifact has "
                    f"{art.finding.get('kind')}:{art.finding.get('summary')!r}")
    return "ok"
