"""Crash-test anyone's storage code: run an operation once on a traced disk, then recover and check
every crash state of its trace.

    from tornpage.campaigns.crashtest import ack, crash_test

    def operation(root):                      # plain open/os code (vfs_kind="pyfakefs")
        store = KVStore.open(root)
        store.put("k", "v")
        ack(key="k", value="v")               # put returned: the store promised "k" = "v"

    def check(root, promised):                # after recovery: every promise kept?
        store = KVStore.open(root)
        for key, value in promised.items():
            assert store.get(key) == value

    crash_test(operation, None, check, vfs_kind="pyfakefs")

``vfs_kind="vfs"`` hands the operation a :class:`~faultfs.simdisk.SimDisk` (code written against
the VFS protocol); ``"pyfakefs"`` hands it the path of a directory in a fake file system
(:mod:`faultfs.pyfakefs_vfs`) where ``open``/``os`` calls are traced and nothing reaches the real
disk.  Either way the operation runs **once**; its trace is cut into crash states by
:class:`~faultfs.crash.CrashStateBuilder` (ALICE's and CrashMonkey's approach).

Which states, in this order (the first failure found is already a small one):

* every position ``p`` of the trace in order (``p`` operations issued, then the power went);
* at most positions only the state that kept every issued operation;
* at a *crash point* (just before an ``fsync``/``fsync_dir``, just after an ``ack``, the end)
  every state of :func:`faultfs.search.enumerate_plans` (fewest losses first) when the space has
  at most ``exhaustive_bound`` states; beyond it the all-kept state, each pending operation
  dropped alone, then ``samples_per_point`` plans drawn by ``random.Random(f"{seed}:{p}")``,
  fewest losses first.

States already judged (same durable image, same promises) are not run again.  A failing state is
shrunk by giving back its lost operations one at a time while it still fails, then reported as
:class:`CrashConsistencyError`: the crash position and the last operation, one line per lost or
torn operation (:meth:`CrashStateBuilder.explain`), the promises, what recovery or the check said, the plan
as JSON and the reproduction command.  Same seed, same operation: same states, same report.
"""
from __future__ import annotations

import hashlib
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from tornpage.faultfs import search
from tornpage.faultfs.crash import DROP, SIZE_ONLY, TEAR, Choice, CrashPlan, CrashStateBuilder, tear_units
from tornpage.faultfs.devices import DEFAULT_DEVICE, DeviceProfile, get_device
from tornpage.faultfs.simdisk import Image, SimDisk
from tornpage.faultfs.trace import Fsync, FsyncDir, Marker, Trace, Write

__all__ = ["crash_test", "ack", "begin", "mark", "Promised", "CrashConsistencyError", "CrashTestResult",
           "ACK"]

ACK, BEGIN = "ack", "begin"


class CrashConsistencyError(AssertionError):
    """A crash state in which recovery or the check failed.  ``str()`` explains it in words.

    Attributes:
        plan: the (shrunk) :class:`CrashPlan`; ``lines``: the explanation lines;
        seed: the seed; ``reproduce``: the reproduction command (or None); ``trace``: the trace.
    """

    def __init__(self, message: str, *, plan: CrashPlan, lines: list[str], seed: int,
                 reproduce: str | None, trace: Trace) -> None:
        super().__init__(message)
        self.plan, self.lines, self.seed = plan, lines, seed
        self.reproduce, self.trace = reproduce, trace


class Promised(dict):
    """What the operation had promised before the crash.

    As a dict: ``key → value`` of every ``ack`` marker with a ``key`` (a later ack of the same key
    wins; ``value`` None when not given).  ``acks``: every ack's attributes, in order.
    ``in_flight``: the attributes of every ``begin`` marker not yet matched by an ``ack`` with
    the same attributes (an operation issued but not acknowledged: its effect may or may not
    survive).
    """

    def __init__(self, acks: list[dict], in_flight: list[dict] = ()) -> None:
        super().__init__()
        self.acks = acks
        self.in_flight = list(in_flight)
        for a in acks:
            if "key" in a:
                self[a["key"]] = a.get("value")

    def allowed(self, key: object) -> list:
        """Values ``key`` may have after recovery: the acknowledged one (None if never
        acknowledged), then those of in-flight operations on ``key``."""
        return [self.get(key)] + [a.get("value") for a in self.in_flight if a.get("key") == key]

    def _key(self) -> str:
        return repr((self.acks, self.in_flight))


@dataclass
class CrashTestResult:
    """What a passing :func:`crash_test` explored."""
    operations: int            # length of the operation's trace
    trace_hash: str
    positions: int             # crash positions visited
    crash_points: int
    exhaustive_points: int     # crash points whose whole space was enumerated
    states: int                # crash states recovered and checked (duplicates skipped)
    skipped_duplicates: int
    complete: bool             # False when the budget ran out first


# -- acks: the operation's promises -------------------------------------------------------------

_RECORDERS: list = []


@contextmanager
def _recording(target) -> Iterator[None]:
    _RECORDERS.append(target)
    try:
        yield
    finally:
        _RECORDERS.pop()


def mark(label: str, **attrs: object) -> None:
    """Record a labelled event in the trace of the disk the running operation uses.

    Raises:
        RuntimeError: called outside an operation, recovery or check of :func:`crash_test`.
    """
    if not _RECORDERS:
        raise RuntimeError("tornpage mark()/ack() called outside crash_test()")
    _RECORDERS[-1].mark(label, **attrs)


def ack(**attrs: object) -> None:
    """The operation acknowledged something durable (e.g. ``ack(key="k", value="v")`` once
    ``put`` returned): every crash state after this point must keep it.  Recorded as an ``ack``
    marker (:class:`faultfs.trace.Marker`)."""
    mark(ACK, **attrs)


def begin(**attrs: object) -> None:
    """The operation is about to do something it will :func:`ack` with the same attributes once
    done (e.g. ``begin(key="k", value="v")`` before ``put``).  Until then a crash may keep or lose
    it: :attr:`Promised.in_flight`.  Recorded as a ``begin`` marker."""
    mark(BEGIN, **attrs)


def promised_at(trace: Trace, position: int) -> Promised:
    """The promises of the ``ack`` (and open ``begin``) markers among the first ``position``
    operations."""
    acks: list[dict] = []
    open_: list[tuple] = []
    for i, m in trace.markers():
        if i >= position:
            break
        if m.label == ACK:
            acks.append(dict(m.attrs))
            if m.attrs in open_:
                open_.remove(m.attrs)
        elif m.label == BEGIN:
            open_.append(m.attrs)
    return Promised(acks, [dict(a) for a in open_])


# -- the plans, in order ------------------------------------------------------------------------

def crash_points(trace: Trace) -> set[int]:
    """Positions where a crash is most telling: just before each barrier (everything since the
    previous one pending), just after each ack (the promise is due), and the end."""
    pts = {len(trace)}
    for i, op in enumerate(trace.ops):
        if isinstance(op, (Fsync, FsyncDir)):
            pts.add(i)
        elif isinstance(op, Marker) and op.label == ACK:
            pts.add(i + 1)
    return pts


def _random_loss(b: CrashStateBuilder, i: int, rng: random.Random) -> Choice:
    op = b.trace.ops[i]
    if not isinstance(op, Write):
        return Choice(DROP)
    n = len(tear_units(op.offset, len(op.data), b.profile.tear_unit))
    kinds = [DROP] + ([TEAR] if n >= 2 else [])
    if not b.profile.safe_append and i in b.appends():
        kinds.append(SIZE_ONLY)
    kind = rng.choice(kinds)
    if kind == DROP:
        return Choice(DROP)
    if kind == SIZE_ONLY:
        return Choice(SIZE_ONLY, (), rng.choice(["zeros", "garbage"]))
    mask = rng.randint(1, (1 << n) - 2)
    return Choice(TEAR, tuple(u for u in range(n) if mask >> u & 1),
                  rng.choice(b.profile.torn_fills))


def _sampled(b: CrashStateBuilder, p: int, pend: list[int], seed: int, k: int) -> list[CrashPlan]:
    """``k`` random plans at ``p`` (1 to 4 losses each, mostly few), fewest losses first."""
    rng = random.Random(f"{seed}:{p}")
    out: dict = {}
    for _ in range(4 * k):
        if len(out) >= k:
            break
        n = 1 if b.profile.ordered else min(len(pend), rng.choice((1, 1, 1, 2, 2, 3, 4)))
        ops = sorted(rng.sample(pend, n))
        plan = CrashPlan(p, tuple((i, _random_loss(b, i, rng)) for i in ops))
        out.setdefault(plan.dumps(), plan)
    return sorted(out.values(), key=search.plan_losses)


def plans_at(b: CrashStateBuilder, p: int, *, exhaustive_bound: int, samples: int,
             seed: int) -> tuple[bool, Iterator[CrashPlan]]:
    """(exhaustive?, the plans to try at crash point ``p`` in order)."""
    pend = b.pending(p)
    if search.space_size(b, p) <= exhaustive_bound:
        return True, search.enumerate_plans(b, p)
    firsts = [CrashPlan(p)] + [CrashPlan(p, ((i, Choice(DROP)),)) for i in pend]
    return False, iter(firsts + _sampled(b, p, pend, seed, samples))


# -- running the user's code --------------------------------------------------------------------

class _Runner:
    """Runs operation, recovery and check on one kind of disk."""

    def __init__(self, vfs_kind: str, profile: DeviceProfile, root: str) -> None:
        if vfs_kind not in ("vfs", "pyfakefs"):
            raise ValueError(f"vfs_kind must be 'vfs' or 'pyfakefs', not {vfs_kind!r}")
        self.kind, self.profile = vfs_kind, profile
        self.adapter = None
        self.disk: SimDisk | None = None
        self._own_adapter = False
        self._unsupported: tuple = ()        # errors that are the adapter's limits, not failures
        if vfs_kind == "pyfakefs":
            # imported only here: plain VFS users (and every pytest run) need no pyfakefs
            from tornpage.faultfs.pyfakefs_vfs import FakeFSAdapter, UnsupportedIO, active_adapter
            self._unsupported = (UnsupportedIO,)
            self.adapter = active_adapter()
            if self.adapter is None:
                self.adapter = FakeFSAdapter(root, profile)
                self.adapter.start()
                self._own_adapter = True
            self.root = self.adapter.root

    def close(self) -> None:
        if self._own_adapter:
            self.adapter.stop()

    @contextmanager
    def _on(self, image: Image) -> Iterator[object]:
        """The disk (or root path) holding ``image``, with acks recorded on it."""
        if self.adapter is None:
            disk = self.disk = SimDisk(self.profile, image=image)
            with _recording(disk):
                yield disk
        else:
            self.adapter.load(image)
            with self.adapter.guard(), _recording(self.adapter):
                yield self.root

    def _run(self, image: Image, fn) -> SimDisk:
        """``fn(disk or root)`` on ``image``; the disk that traced it."""
        with self._on(image) as target:
            fn(target)
        if self.adapter is None:
            return self.disk
        self.adapter._check()                # every change the program made was traced
        return self.adapter.disk

    def record(self, setup, operation) -> tuple[Image, Trace]:
        """Run ``setup`` (made durable) then ``operation``; (base image, operation's trace)."""
        base = Image() if setup is None else self._run(Image(), setup).live_image()
        return base, self._run(base, operation).trace

    def judge(self, image: Image, promised: Promised, recover, check) -> "_Failure | None":
        """Recover and check one crash state; the failure, or None."""
        __tracebackhide__ = True
        phase = "recovery raised"
        try:
            with self._on(image) as target:
                if recover is not None:
                    recover(target)
                phase = "check said"
                if check is not None:
                    check(target, promised)
        except self._unsupported:
            raise                        # a limit of the adapter, not of the code under test
        except Exception as e:           # noqa: BLE001 - any failure of recovery or check counts
            return _Failure(phase, e)
        return None


@dataclass
class _Failure:
    phase: str                           # "recovery raised" or "check said"
    error: BaseException


# -- the search ---------------------------------------------------------------------------------

def _state_key(image: Image, promised: Promised) -> str:
    h = hashlib.sha256()
    for p in sorted(image.files):
        h.update(p.encode() + b"\0" + hashlib.sha256(image.files[p]).digest())
    h.update(repr(sorted(image.dirs)).encode())
    h.update(repr(sorted(image.bad_sectors.items())).encode())
    h.update(promised._key().encode())
    return h.hexdigest()


def crash_test(operation: Callable, recover: Callable | None = None,
               check: Callable | None = None, *, vfs_kind: str = "vfs",
               device: DeviceProfile | str = DEFAULT_DEVICE, seed: int = 0,
               budget: float | None = None, max_states: int = 2000,
               exhaustive_bound: int = 256, samples_per_point: int = 16,
               setup: Callable | None = None, root: str = "/tornpage",
               reproduce: str | None = None) -> CrashTestResult:
    """Run ``operation`` once on a traced disk, then ``recover`` and ``check`` every crash state.

    Args:
        operation: ``operation(disk)`` (``vfs_kind="vfs"``: a fresh :class:`SimDisk`) or
            ``operation(root)`` (``"pyfakefs"``: the path of the traced directory).  It calls
            :func:`ack` for what it acknowledged.  It must be deterministic.
        recover: ``recover(disk_or_root)`` on each crash state (may be None).
        check: ``check(disk_or_root, promised)`` after recovery; raise (assert) on a violation.
            ``promised`` is a :class:`Promised` built from the acks before the crash.
        device: the device profile (its name or a :class:`DeviceProfile`).
        seed: seeds the sampling where a crash point's space exceeds ``exhaustive_bound``.
        budget: wall-clock seconds for the crash states (None: no time limit; a time limit makes
            the coverage depend on the machine).
        max_states: crash states to recover and check at most (deterministic budget).
        exhaustive_bound: crash points with at most this many states are enumerated whole.
        samples_per_point: random plans per crash point beyond the bound.
        setup: ``setup(disk_or_root)`` run first; what it leaves is durable before the operation.
        root: the traced directory for ``"pyfakefs"``.
        reproduce: the command that reruns this test, quoted in the failure.

    Returns:
        :class:`CrashTestResult` (what was explored) when every state passed.

    Raises:
        CrashConsistencyError: the first failing crash state, shrunk and explained.
        faultfs.pyfakefs_vfs.UnsupportedIO: the code did IO the pyfakefs adapter cannot fake.
        Anything ``operation`` or ``setup`` raises, unchanged.
    """
    __tracebackhide__ = True     # pytest: show the user's frames and the explanation
    profile = get_device(device) if isinstance(device, str) else device
    runner = _Runner(vfs_kind, profile, root)
    try:
        base, trace = runner.record(setup, operation)
        return _search(runner, base, trace, profile, recover, check, seed=seed, budget=budget,
                       max_states=max_states, exhaustive_bound=exhaustive_bound,
                       samples=samples_per_point, reproduce=reproduce)
    finally:
        runner.close()


def _search(runner: _Runner, base: Image, trace: Trace, profile: DeviceProfile, recover, check,
            *, seed: int, budget: float | None, max_states: int, exhaustive_bound: int,
            samples: int, reproduce: str | None) -> CrashTestResult:
    __tracebackhide__ = True
    b = CrashStateBuilder(base, trace, profile)
    points = crash_points(trace)
    deadline = None if budget is None else time.monotonic() + budget
    seen: set[str] = set()
    states = dups = exhaustive = positions = 0
    complete = True

    def fails(plan: CrashPlan) -> _Failure | None:
        promised = promised_at(trace, plan.position)
        return runner.judge(b.build(plan), promised, recover, check)

    for p in range(len(trace) + 1):
        if states >= max_states or (deadline is not None and time.monotonic() > deadline):
            complete = False
            break
        positions += 1
        if p in points:
            whole, plans = plans_at(b, p, exhaustive_bound=exhaustive_bound, samples=samples,
                                    seed=seed)
            exhaustive += whole
        else:
            plans = iter([CrashPlan(p)])
        promised = promised_at(trace, p)
        for plan in plans:
            if states >= max_states or (deadline is not None and time.monotonic() > deadline):
                complete = False
                break
            image = b.build(plan)
            key = _state_key(image, promised)
            if key in seen:
                dups += 1
                continue
            seen.add(key)
            states += 1
            err = runner.judge(image, promised, recover, check)
            if err is not None:
                plan, err, shrunk = _shrink(plan, err, fails)
                raise _explain(b, plan, err, promised_at(trace, plan.position), seed=seed,
                               states=states, shrunk=shrunk, reproduce=reproduce) from err.error
    return CrashTestResult(len(trace), trace.hash(), positions, len(points), exhaustive, states,
                           dups, complete)


def _shrink(plan: CrashPlan, err: _Failure, fails) -> tuple[CrashPlan, _Failure, int]:
    """Give back lost operations one at a time while the state still fails; (plan, its failure,
    operations given back)."""
    given_back = 0
    changed = True
    while changed and plan.choices:
        changed = False
        for j in range(len(plan.choices)):
            smaller = CrashPlan(plan.position, plan.choices[:j] + plan.choices[j + 1:])
            e = fails(smaller)
            if e is not None:
                plan, err, changed = smaller, e, True
                given_back += 1
                break
    return plan, err, given_back


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = text[0] if text else ""
    more = " …" if len(text) > 1 else ""
    return f"{type(e).__name__}: {first}{more}" if first else type(e).__name__


def _explain(b: CrashStateBuilder, plan: CrashPlan, err: _Failure, promised: Promised, *,
             seed: int, states: int, shrunk: int, reproduce: str | None) -> CrashConsistencyError:
    trace = b.trace
    p = plan.position
    head = b.explain(plan)
    lines = []
    if p == 0:
        lines.append("crash before the first operation")
    else:
        lines.append(f"{head[0]}: {trace.describe(p - 1)}")
    losses = head[1:]
    lines += losses if losses else ["nothing lost: every operation issued before the crash "
                                    "reached the disk"]
    lost = {i for i, c in plan.choices if c.kind != "keep"}
    kept = [i for i in b.pending(p) if i not in lost]
    if losses and kept:
        names = "; ".join(trace.describe(i) for i in kept[-4:])
        lines.append(f"not yet durable but kept: {'…; ' if len(kept) > 4 else ''}{names}")
    if promised:
        shown = ", ".join(f"{k!r}={v!r}" for k, v in list(promised.items())[:8])
        more = f" and {len(promised) - 8} more" if len(promised) > 8 else ""
        lines.append(f"promised before the crash: {shown}{more}")
    elif promised.acks:
        lines.append(f"promised before the crash: {len(promised.acks)} acks")
    else:
        lines.append("promised before the crash: nothing (no ack yet)")
    lines.append(f"{err.phase}: {_one_line(err.error)}")
    msg = [f"crash-consistency failure: recovery or check failed after a crash at position "
           f"{p} of {len(trace)} (seed {seed}, device {b.profile.name})"]
    msg += [f"  {ln}" for ln in lines]
    msg.append(f"  found after {states} crash states" +
               (f"; shrunk by giving back {shrunk} lost operations" if shrunk else ""))
    msg.append(f"  crash plan: {plan.dumps()}")
    if reproduce:
        msg.append(f"  reproduce: {reproduce}")
    return CrashConsistencyError("\n".join(msg), plan=plan, lines=lines, seed=seed,
                                 reproduce=reproduce, trace=trace)
