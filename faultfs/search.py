"""The one crash-state search: which crash states to try, in what order, each once, and how to
shrink a failing one.  Knows no database; the campaign and the pytest plugin both drive it.

What a search covers (DESIGN.md, faultfs):

* **Crash points** (:func:`crash_points`): the positions where a crash is most telling: just
  before each barrier (``fsync`` or ``fsync_dir``: everything since the previous barrier is
  pending), just after each directory operation (create, mkdir, rename, unlink: it is pending
  and nothing the program does after it has been issued), just after each *promise* marker (an
  ``ack``: the promise is now due), and the end.
* **The space of a point** (:func:`space_size`, :func:`enumerate_plans`): the product of each
  pending operation's fates, enumerated fewest losses first (CrashMonkey's and ALICE's bounded
  exhaustive exploration):

  - a metadata operation or a truncate: kept or dropped (2 fates);
  - a write of ``n`` tear units: kept, dropped, or torn into any proper non-empty subset of
    its units, each torn shape once per fill the device can show in the lost units
    (``2 + (2**n - 2) * len(torn_fills)`` fates; a one-unit write cannot tear that way), plus,
    on a device with ``sub_sector_cuts``, every tear that cuts inside one unit ``u`` at one of
    the cuts shorter than the unit, with any subset of the other units kept and each fill
    (``sum_u cuts(u) * 2**(n-1) * len(torn_fills)``: a one-sector write can tear), plus the two
    size-only fates of an append on a device without safe append;
  - on an ``ordered`` device a crash keeps a prefix of the pending operations and the first one
    not kept is dropped or torn, so the fates do not multiply: ``1 + sum(fates(op) - 1)``;
  - on a process-kill device nothing is pending: one state.

* **Sampling** (:func:`sample_plan`): where a space is too big to enumerate, plans drawn from a
  :class:`random.Random`, biased towards states that lose something (a crash that keeps every
  issued operation is one state, however often it is drawn): a few losses (1 to 4 operations),
  or every pending operation lost independently with a drawn probability (many losses at once,
  as a torn doublewrite batch needs), torn writes in the shapes real tears take (a prefix, a
  suffix or any subset of the tear units; where the device allows it, a tear inside one unit,
  most often after a prefix of whole units, as a write cut off mid-sector).
* **Order** (:class:`CrashSearch`): ``"sample"`` (the campaign's default) starts with the
  all-kept state at the end, then the crash points right after directory operations (few, and
  where ALICE found many of the vulnerabilities it reports): at each, the crash that keeps
  every pending operation and, for each pending directory operation, the crash that loses it
  (on an ``ordered`` device, with everything issued after it); then it walks the crash points
  in a seeded order, enumerating a small point whole before sampling the large ones;
  ``"positions"`` (the plugin, the campaign's ``systematic`` mode) visits every position in
  trace order, the all-kept state at each and every crash point's plans there, so the first
  failure found is the earliest.
* **Canonical form and dedupe** (:func:`canonical`, :func:`image_key`, :class:`Seen`): a plan
  is reduced to the choices that can change the state; two plans that build the same durable
  image with the same promises are one state: the second reuses the first's verdict and is
  counted as reused, never as checked.
* **Shrinking** (:func:`shrink_plan`): greedy, deterministic, bounded by a number of steps
  (never by wall-clock time): give back lost operations, then turn tears into whole losses
  (and a tear inside a sector into one at its edge), then crash earlier, keeping only the
  candidates that still fail the same way.
* **Signatures** (:func:`signature`): a finding's identity is its kind and the id of the
  checker rule that failed, so two bugs caught by different rules are never merged.

Every function is deterministic: the same builder, seed and bounds give the same plans in the
same order.
"""
from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, TypeVar

from tornpage.faultfs.crash import (DROP, KEEP, SIZE_ONLY, TEAR, Choice, CrashPlan, CrashStateBuilder,
                                    tear_units)
from tornpage.faultfs.simdisk import Image
from tornpage.faultfs.trace import META_OPS, Fsync, FsyncDir, Marker, Trace, Write

R = TypeVar("R")

DIRECTORY_OPS = META_OPS                    # create, mkdir, rename, unlink
TEAR_SHAPES = ("prefix", "suffix", "subset")
FEW_LOSSES = (1, 1, 1, 2, 2, 3, 4)          # sampled loss counts, mostly few
LOSS_PROBABILITIES = (0.25, 0.5, 0.75)      # "many losses": each pending op lost with p


# -- the space of one crash point ---------------------------------------------------------------

def fates(builder: CrashStateBuilder, i: int) -> int:
    """How many distinct things the device may do with pending operation ``i`` (keep included)."""
    op = builder.trace.ops[i]
    if not isinstance(op, Write):
        return 2
    units = tear_units(op.offset, len(op.data), builder.profile.tear_unit)
    n = len(units)
    if n == 0:
        return 2            # an empty write: kept or dropped, nothing to tear
    extra = 2 if _size_only_allowed(builder, i) else 0
    fills = len(builder.profile.torn_fills)
    inside = sum(len(_cuts(builder, a, b)) for a, b in units) << (n - 1)
    return 2 + ((1 << n) - 2) * fills + inside * fills + extra


def _cuts(builder: CrashStateBuilder, a: int, b: int) -> tuple[int, ...]:
    """The byte counts at which the device may cut inside the unit ``[a, b)`` of a write."""
    return tuple(c for c in builder.profile.sub_sector_cuts if c < b - a)


def _size_only_allowed(builder: CrashStateBuilder, i: int) -> bool:
    return not builder.profile.safe_append and i in builder.appends()


def space_size(builder: CrashStateBuilder, position: int) -> int:
    """Number of distinct crash plans at ``position`` (states, counting equal images apart).

    Python integers: a 16 KiB doublewrite batch alone has ``2**32`` tear shapes.  O(pending).

    Raises:
        CrashPlanError: ``position`` is outside the trace.
    """
    pend = builder.pending(position)
    if builder.profile.ordered:
        return 1 + sum(fates(builder, i) - 1 for i in pend)
    size = 1
    for i in pend:
        size *= fates(builder, i)
    return size


def _losses(builder: CrashStateBuilder, i: int) -> Iterator[Choice]:
    """Every fate of operation ``i`` except keep: drop, then each tear shape and fill."""
    yield Choice(DROP)
    op = builder.trace.ops[i]
    if not isinstance(op, Write):
        return
    if _size_only_allowed(builder, i):
        yield Choice(SIZE_ONLY, (), "zeros")
        yield Choice(SIZE_ONLY, (), "garbage")
    units_ = tear_units(op.offset, len(op.data), builder.profile.tear_unit)
    n = len(units_)
    for mask in range(1, (1 << n) - 1):
        units = tuple(u for u in range(n) if mask >> u & 1)
        for fill in builder.profile.torn_fills:
            yield Choice(TEAR, units, fill)
    for u, (a, b) in enumerate(units_):          # torn inside unit u, others kept or not
        others = [v for v in range(n) if v != u]
        for cut in _cuts(builder, a, b):
            for mask in range(1 << (n - 1)):
                units = tuple(v for k, v in enumerate(others) if mask >> k & 1)
                for fill in builder.profile.torn_fills:
                    yield Choice(TEAR, units, fill, (u, cut))


def enumerate_plans(builder: CrashStateBuilder, position: int) -> Iterator[CrashPlan]:
    """Every crash plan at ``position``, each once, ordered by the number of operations lost or
    torn (0, then 1, ...).  ``len(list(...)) == space_size(builder, position)``.

    The caller bounds the work with :func:`space_size` first; this generator never checks.
    """
    pend = builder.pending(position)
    yield CrashPlan(position)
    if builder.profile.ordered:
        for i in pend:           # the first operation not kept; the builder drops the rest
            for c in _losses(builder, i):
                yield CrashPlan(position, ((i, c),))
        return
    for k in range(1, len(pend) + 1):
        for ops in itertools.combinations(pend, k):
            for cs in itertools.product(*(list(_losses(builder, i)) for i in ops)):
                yield CrashPlan(position, tuple(zip(ops, cs)))


def plan_losses(plan: CrashPlan) -> int:
    """Operations the plan loses or tears (its distance from the all-kept state)."""
    return sum(1 for _, c in plan.choices if c.kind != KEEP)


def canonical(builder: CrashStateBuilder, plan: CrashPlan) -> CrashPlan:
    """The plan with choices that cannot change the state removed: keeps, and on an ordered
    device every choice after the first loss (the builder drops those operations anyway)."""
    out = []
    for i, c in sorted(plan.choices):
        if c.kind == KEEP:
            continue
        out.append((i, c))
        if builder.profile.ordered:
            break
    return CrashPlan(plan.position, tuple(out))


# -- crash points -------------------------------------------------------------------------------

def crash_points(trace: Trace, lo: int = 0, hi: int | None = None,
                 promise_labels: Iterable[str] = ()) -> list[int]:
    """Positions in ``[lo, hi]`` where a crash is most telling, ascending: just before each
    barrier (``Fsync``/``FsyncDir``: the barrier not issued, everything since the previous one
    pending), just after each directory operation (:func:`directory_points`), just after each
    marker whose label is in ``promise_labels`` (the promise is due), and ``hi`` (default: the
    end of the trace).  O(hi - lo)."""
    hi = len(trace) if hi is None else hi
    labels = frozenset(promise_labels)
    pts = {hi}
    pts.update(directory_points(trace, lo, hi))
    for i in range(lo, hi):
        op = trace.ops[i]
        if isinstance(op, (Fsync, FsyncDir)):
            pts.add(i)
        elif labels and isinstance(op, Marker) and op.label in labels and i + 1 <= hi:
            pts.add(i + 1)
    return sorted(p for p in pts if lo <= p <= hi)


def directory_points(trace: Trace, lo: int = 0, hi: int | None = None) -> list[int]:
    """Positions in ``[lo, hi]`` just after a directory operation (``Create``, ``Mkdir``,
    ``Rename``, ``Unlink``): the operation issued, not yet made durable by its ``FsyncDir``,
    and nothing after it issued, ascending.  O(hi - lo)."""
    hi = len(trace) if hi is None else hi
    return [i + 1 for i in range(lo, hi) if isinstance(trace.ops[i], DIRECTORY_OPS)]


# -- sampling -----------------------------------------------------------------------------------

def random_loss(builder: CrashStateBuilder, i: int, rng: random.Random) -> Choice:
    """A random fate other than keep for pending operation ``i``: drop, size-only (appends on a
    device without safe append), for a write of two or more tear units a tear shaped as a
    prefix, a suffix or any proper subset of its units, and on a device with sub-sector cuts a
    tear inside one unit (after a prefix, before a suffix or among any subset of the others),
    each with a fill the device can show."""
    op = builder.trace.ops[i]
    if not isinstance(op, Write):
        return Choice(DROP)
    units_ = tear_units(op.offset, len(op.data), builder.profile.tear_unit)
    n = len(units_)
    kinds = [DROP] + ([TEAR] if n >= 2 else [])
    if _size_only_allowed(builder, i):
        kinds.append(SIZE_ONLY)
    cuttable = [u for u, (a, b) in enumerate(units_) if _cuts(builder, a, b)]
    if cuttable:
        kinds.append("inside")
    kind = rng.choice(kinds)
    if kind == DROP:
        return Choice(DROP)
    if kind == SIZE_ONLY:
        return Choice(SIZE_ONLY, (), rng.choice(("zeros", "garbage")))
    if kind == "inside":
        u = rng.choice(cuttable)
        cut = rng.choice(_cuts(builder, *units_[u]))
        shape = rng.choice(TEAR_SHAPES)
        if shape == "prefix":            # written in order, cut off inside unit u
            units = tuple(range(u))
        elif shape == "suffix":
            units = tuple(range(u + 1, n))
        else:
            units = tuple(v for v in range(n) if v != u and rng.random() < 0.5)
        return Choice(TEAR, units, rng.choice(builder.profile.torn_fills), (u, cut))
    shape = rng.choice(TEAR_SHAPES)
    if shape == "prefix":
        units = tuple(range(rng.randint(1, n - 1)))
    elif shape == "suffix":
        units = tuple(range(rng.randint(1, n - 1), n))
    else:
        mask = rng.randint(1, (1 << n) - 2)
        units = tuple(u for u in range(n) if mask >> u & 1)
    return Choice(TEAR, units, rng.choice(builder.profile.torn_fills))


def sample_plan(builder: CrashStateBuilder, position: int, rng: random.Random,
                max_choices: int | None = None) -> CrashPlan:
    """One random plan at ``position`` that loses at least one pending operation when any is
    pending: half the time a few (1 to 4), otherwise each of the newest ``max_choices`` pending
    operations independently with a drawn probability.  Canonical (keeps left out)."""
    pend = builder.pending(position)
    if max_choices is not None:
        pend = pend[-max_choices:]
    if not pend:
        return CrashPlan(position)
    if builder.profile.ordered:
        i = rng.choice(pend)
        return CrashPlan(position, ((i, random_loss(builder, i, rng)),))
    if rng.random() < 0.5:
        ops = sorted(rng.sample(pend, min(len(pend), rng.choice(FEW_LOSSES))))
    else:
        p = rng.choice(LOSS_PROBABILITIES)
        ops = [i for i in pend if rng.random() < p] or [rng.choice(pend)]
    return CrashPlan(position, tuple((i, random_loss(builder, i, rng)) for i in ops))


def sample_crash(builder: CrashStateBuilder, lo: int, hi: int, rng: random.Random,
                 points: list[int] | None = None, max_choices: int | None = None) -> CrashPlan:
    """A random crash in ``[lo, hi]``: at one of ``points`` (default :func:`crash_points`) 70% of
    the time, anywhere otherwise, with :func:`sample_plan`'s losses."""
    if points is None:
        points = crash_points(builder.trace, lo, hi)
    p = rng.choice(points) if rng.random() < 0.7 or hi <= lo else rng.randint(lo, hi)
    return sample_plan(builder, p, rng, max_choices)


def point_plans(builder: CrashStateBuilder, position: int, rng: random.Random, *,
                exhaustive_bound: int, samples: int,
                max_choices: int | None = None) -> tuple[bool, Iterator[CrashPlan]]:
    """(whole?, the plans to try at crash point ``position`` in order).

    A space of at most ``exhaustive_bound`` plans is enumerated whole, fewest losses first.  A
    larger one gives the all-kept plan, each pending operation dropped alone, then ``samples``
    sampled plans (fewest losses first).  Plans may repeat; :class:`Seen` drops repeats."""
    if space_size(builder, position) <= exhaustive_bound:
        return True, enumerate_plans(builder, position)
    pend = builder.pending(position)
    firsts = [CrashPlan(position)] + [CrashPlan(position, ((i, Choice(DROP)),)) for i in pend]
    drawn = sorted((sample_plan(builder, position, rng, max_choices) for _ in range(samples)),
                   key=plan_losses)
    return False, itertools.chain(firsts, drawn)


# -- the search: order, budget, dedupe ----------------------------------------------------------

def image_key(image: Image, *extra: str) -> str:
    """A digest of a durable image (file contents, directories, unreadable sectors) plus
    ``extra`` strings (what was promised, nested crash plans): equal keys, equal states."""
    h = hashlib.blake2b(digest_size=20)
    for p in sorted(image.files):
        h.update(p.encode() + b"\0" + hashlib.blake2b(image.files[p], digest_size=20).digest())
    h.update(repr(sorted(image.dirs)).encode())
    h.update(repr(sorted((p, sorted(s)) for p, s in image.bad_sectors.items())).encode())
    for e in extra:
        h.update(b"\1" + e.encode())
    return h.hexdigest()


class Seen:
    """The states a search has checked, by key, with the verdict of each: a repeat reuses its
    twin's verdict and is counted in :attr:`reused`, never in :attr:`checked`."""

    def __init__(self) -> None:
        self._verdicts: dict[str, object] = {}
        self.checked = 0
        self.reused = 0

    def judge(self, key: str, check: Callable[[], R]) -> tuple[R, bool]:
        """``(verdict, reused?)``: the verdict of the state ``key``, from ``check()`` the first
        time it is seen, from the cache after."""
        if key in self._verdicts:
            self.reused += 1
            return self._verdicts[key], True
        v = check()
        self._verdicts[key] = v
        self.checked += 1
        return v, False

    def count_unkeyed(self) -> None:
        """Count a state checked without a key (its identity is only known after the check,
        e.g. one whose recovery was crashed at a point drawn from the recovery's own trace):
        never reused, always counted as checked."""
        self.checked += 1


SCHEDULES = ("sample", "positions")
USED_UP_CHECK = 10          # misses in a row after which a sampling search asks _used_up
DRAWABLE_BOUND = 4096       # plans, all positions together, that _used_up will enumerate


@dataclass
class PointCoverage:
    """Plans tried at one crash point, against the size of its space."""
    position: int
    tried: int
    space: int

    @property
    def whole(self) -> bool:
        return self.tried >= self.space


class CrashSearch:
    """The plans to try against one recorded trace, in order, each canonical plan once.

    Args:
        builder: the :class:`CrashStateBuilder` of the trace.
        lo, hi: crash positions considered (``hi`` default: the end of the trace); the campaign
            starts after its setup.
        seed: seeds every random choice (an int or a string).
        schedule: ``"sample"`` or ``"positions"`` (see the module docstring).
        exhaustive_bound: crash points whose space has at most this many plans are enumerated
            whole.
        samples_per_point: sampled plans at a point beyond the bound.
        promise_labels: marker labels after which a crash point is placed.
        max_choices: sampled plans lose only among the newest this many pending operations.

    Iterating yields :class:`CrashPlan` s; :attr:`coverage` then tells, per crash point, how
    many plans were yielded and how big its space is.  ``"sample"`` keeps sampling until the
    caller's budget stops it, or until 1,000 samples in a row were all plans already yielded (a
    small trace whose whole space is used up); sooner, without changing what it yields, once
    every plan a sample can be has been yielded (:meth:`_used_up`).
    """

    def __init__(self, builder: CrashStateBuilder, lo: int = 0, hi: int | None = None, *,
                 seed: int | str = 0, schedule: str = "sample", exhaustive_bound: int = 64,
                 samples_per_point: int = 16, promise_labels: Iterable[str] = (),
                 max_choices: int | None = None) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, not {schedule!r}")
        self.builder = builder
        self.lo, self.hi = lo, len(builder.trace) if hi is None else hi
        self.rng = random.Random(f"tornpage-search:{seed}")
        self.schedule = schedule
        self.exhaustive_bound = exhaustive_bound
        self.samples = samples_per_point
        self.max_choices = max_choices
        self.points = crash_points(builder.trace, lo, self.hi, promise_labels)
        self._point_set = frozenset(self.points)
        self._directory_points = frozenset(directory_points(builder.trace, lo, self.hi))
        self._yielded: set[str] = set()
        self._tried: dict[int, int] = {}
        self.positions = 0          # positions visited ("positions" schedule)
        self.whole_points = 0       # crash points enumerated whole
        self._drawable: frozenset[str] | None = None     # see _used_up

    def _fresh(self, plan: CrashPlan) -> bool:
        key = canonical(self.builder, plan).dumps()
        if key in self._yielded:
            return False
        self._yielded.add(key)
        if plan.position in self._point_set:
            self._tried[plan.position] = self._tried.get(plan.position, 0) + 1
        return True

    def __iter__(self) -> Iterator[CrashPlan]:
        return self._positions() if self.schedule == "positions" else self._sample()

    def _positions(self) -> Iterator[CrashPlan]:
        points = self._point_set
        for p in range(self.lo, self.hi + 1):
            self.positions += 1
            if p not in points:
                if self._fresh(CrashPlan(p)):
                    yield CrashPlan(p)
                continue
            whole, plans = point_plans(self.builder, p, self.rng,
                                       exhaustive_bound=self.exhaustive_bound,
                                       samples=self.samples, max_choices=self.max_choices)
            self.whole_points += whole
            for plan in plans:
                if self._fresh(plan):
                    yield plan

    def _sample(self) -> Iterator[CrashPlan]:
        end = CrashPlan(self.hi)
        if self._fresh(end):
            yield end
        order = list(self.points)
        self.rng.shuffle(order)
        # right after each directory operation: the crash that keeps everything, then each
        # pending directory operation lost alone
        ops = self.builder.trace.ops
        for p in (p for p in order if p in self._directory_points):
            plans = [CrashPlan(p)] + [CrashPlan(p, ((i, Choice(DROP)),))
                                      for i in self.builder.pending(p)
                                      if isinstance(ops[i], DIRECTORY_OPS)]
            for plan in plans:
                if self._fresh(plan):
                    yield plan
        small = [p for p in order if space_size(self.builder, p) <= self.exhaustive_bound]
        # small spaces first, whole, interleaved point by point so a budget reaches them all
        iters = [enumerate_plans(self.builder, p) for p in small]
        while iters:
            nxt = []
            for it in iters:
                plan = next(it, None)
                if plan is None:
                    self.whole_points += 1
                    continue
                nxt.append(it)
                if self._fresh(plan):
                    yield plan
            iters = nxt
        # then samples, forever: at a crash point (mostly) or anywhere in [lo, hi]
        misses = 0
        while misses < 1000:
            plan = sample_crash(self.builder, self.lo, self.hi, self.rng, order, self.max_choices)
            if self._fresh(plan):
                misses = 0
                yield plan
            else:
                misses += 1          # a small trace: its whole space may be used up
                if misses == USED_UP_CHECK and self._used_up():
                    return           # no sample can be fresh again: the misses would run out

    def _used_up(self) -> bool:
        """Whether every plan :func:`sample_crash` can draw in ``[lo, hi]`` has been yielded, so
        no later sample can be fresh: then stopping early yields exactly what sampling on until
        1,000 misses in a row would (nothing more), without the misses.

        The plans a sample can be, at each position ``p``: :func:`sample_plan`'s, whose every
        loss is one of :func:`_losses` of one of the newest ``max_choices`` pending operations
        (:func:`random_loss` draws among those fates), at least one when any is pending; so
        they are the plans of :func:`enumerate_plans` that lose only such operations, and lose
        one when there is one.  Enumerated (canonical keys, as ``_fresh`` files them) once per
        search, only when all positions' spaces hold at most DRAWABLE_BOUND plans together;
        False for a larger trace.  O(drawable plans) per call after the first."""
        if self._drawable is None:
            self._drawable = self._drawable_plans()
        return bool(self._drawable) and self._drawable <= self._yielded

    def _drawable_plans(self) -> frozenset[str]:
        """The canonical keys of the plans a sample can be (see :meth:`_used_up`), or an empty
        set when the spaces hold more than DRAWABLE_BOUND plans."""
        b = self.builder
        total = 0
        for p in range(self.lo, self.hi + 1):
            total += space_size(b, p)
            if total > DRAWABLE_BOUND:
                return frozenset()
        keys = set()
        for p in range(self.lo, self.hi + 1):
            pend = b.pending(p)
            newest = set(pend[-self.max_choices:] if self.max_choices is not None else pend)
            for plan in enumerate_plans(b, p):
                lost = [i for i, c in plan.choices if c.kind != KEEP]
                if (lost or not newest) and all(i in newest for i in lost):
                    keys.add(canonical(b, plan).dumps())
        return frozenset(keys)

    def coverage(self) -> list[PointCoverage]:
        """Per crash point with at least one plan yielded: plans yielded and space size."""
        return [PointCoverage(p, n, space_size(self.builder, p))
                for p, n in sorted(self._tried.items()) if p in self._point_set]


# -- shrinking ----------------------------------------------------------------------------------

@dataclass
class ShrinkBudget:
    """A deterministic bound on shrinking: at most ``steps`` candidate runs in all, shared by
    every stage that shrinks one finding (workload steps, then the crash plan)."""
    steps: int
    used: int = 0

    @property
    def left(self) -> int:
        return max(0, self.steps - self.used)

    def take(self) -> bool:
        """Spend one step; False when none is left."""
        if self.used >= self.steps:
            return False
        self.used += 1
        return True


def _plan_candidates(builder: CrashStateBuilder, plan: CrashPlan, lo: int) -> Iterator[CrashPlan]:
    """Smaller plans than ``plan``, the biggest cuts first: every loss given back, each loss
    given back alone, each tear or size-only made a plain drop, then an earlier crash (just
    after the last operation the plan loses, or at ``lo``)."""
    ch = plan.choices
    if ch:
        yield CrashPlan(plan.position)
    if len(ch) > 1:
        half = len(ch) // 2
        yield CrashPlan(plan.position, ch[half:])
        yield CrashPlan(plan.position, ch[:half])
    for j in range(len(ch)):
        yield CrashPlan(plan.position, ch[:j] + ch[j + 1:])
    for j, (i, c) in enumerate(ch):
        if c.kind in (TEAR, SIZE_ONLY):
            yield CrashPlan(plan.position, ch[:j] + ((i, Choice(DROP)),) + ch[j + 1:])
    for j, (i, c) in enumerate(ch):         # a tear inside a unit made a tear at its edge
        if c.kind == TEAR and c.partial is not None and c.units:
            yield CrashPlan(plan.position, ch[:j] + ((i, Choice(TEAR, c.units, c.fill)),)
                            + ch[j + 1:])
    earliest = max([i + 1 for i, _ in ch] + [lo])
    if earliest < plan.position:
        yield CrashPlan(earliest, ch)


def _fits(builder: CrashStateBuilder, plan: CrashPlan) -> bool:
    pend = set(builder.pending(plan.position))
    return all(i in pend for i, _ in plan.choices)


def shrink_plan(builder: CrashStateBuilder, plan: CrashPlan, still_fails: Callable[[CrashPlan], R | None],
                budget: ShrinkBudget, lo: int = 0) -> tuple[CrashPlan, R | None, int]:
    """Greedy shrinking of a failing plan (as the delta-debugging passes of Hypothesis's
    shrinker, on crash plans): try :func:`_plan_candidates` in order, take the first that
    ``still_fails`` (it returns the failure, or None when the candidate passes or fails
    differently), start again from it; stop when no candidate fails or the budget is spent.

    Returns:
        ``(smallest failing plan, its failure or None if ``plan``'s own was never re-run,
        candidates accepted)``.  Deterministic: the same inputs give the same plan.
    """
    failure: R | None = None
    accepted = 0
    tried: set[str] = {canonical(builder, plan).dumps()}
    progress = True
    while progress and budget.left:
        progress = False
        for cand in _plan_candidates(builder, plan, lo):
            key = canonical(builder, cand).dumps()
            if key in tried:
                continue
            tried.add(key)
            if not _fits(builder, cand):
                continue             # an operation the plan names is not pending there
            if not budget.take():
                return plan, failure, accepted
            f = still_fails(cand)
            if f is not None:
                plan, failure, progress = cand, f, True
                accepted += 1
                break
    return plan, failure, accepted


def signature(kind: str, rule: str) -> str:
    """A finding's identity: its kind (L, U, C, R, E, I, …) and the checker rule that failed."""
    return f"{kind}:{rule}"
