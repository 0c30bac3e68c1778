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

Which states, in this order (the one crash-state search of :mod:`faultfs.search`, its
``positions`` schedule; the first failure found is already a small one):

* every position ``p`` of the trace in order (``p`` operations issued, then the power went);
* at most positions only the state that kept every issued operation;
* at a *crash point* (just before an ``fsync``/``fsync_dir``, just after an ``ack``, the end)
  every state of :func:`faultfs.search.enumerate_plans` (fewest losses first) when the space has
  at most ``exhaustive_bound`` states; beyond it the all-kept state, each pending operation
  dropped alone, then ``samples_per_point`` plans sampled from the seed, fewest losses first.

States already judged (same durable image, same promises) are not run again.  A failing state is
shrunk by :func:`faultfs.search.shrink_plan` (lost operations given back, tears made plain
drops, the crash moved earlier) while it still fails the same way, then reported as
:class:`CrashConsistencyError`: the crash position and the last operation, one line per lost or
torn operation (:meth:`CrashStateBuilder.explain`), the promises, what recovery or the check said, the plan
as JSON and the reproduction command.  Same seed, same operation: same states, same report.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from tornpage.faultfs import search
from tornpage.faultfs.crash import CrashPlan, CrashStateBuilder
from tornpage.faultfs.devices import DEFAULT_DEVICE, DeviceProfile, get_device
from tornpage.faultfs.simdisk import Image, SimDisk
from tornpage.faultfs.trace import Trace

__all__ = ["crash_test", "ack", "begin", "mark", "Promised", "CrashConsistencyError", "CrashTestResult",
           "CrashTestIncomplete",
           "ACK"]

ACK, BEGIN = "ack", "begin"


class CrashConsistencyError(AssertionError):
    """A crash state in which recovery or the check failed.  ``str()`` explains it in words.

    Attributes:
        plan: the (shrunk) :class:`CrashPlan`; ``lines``: the explanation lines;
        seed: the seed; ``reproduce``: the reproduction command (or None); ``trace``: the trace;
        failures: ``(plan, lines)`` of every distinct failure found (the first is ``plan``).
    """

    def __init__(self, message: str, *, plan: CrashPlan, lines: list[str], seed: int,
                 reproduce: str | None, trace: Trace, failures: list | None = None) -> None:
        super().__init__(message)
        self.plan, self.lines, self.seed = plan, lines, seed
        self.reproduce, self.trace = reproduce, trace
        self.failures = failures if failures is not None else [(plan, lines)]


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
    states: int                # distinct crash states recovered and checked
    skipped_duplicates: int    # crash states equal to one already checked (verdict reused)
    complete: bool             # False when the budget ran out first
    planned: int = 0           # crash plans the search had planned in all


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
    nested: CrashPlan | None = None      # the crash during recovery before it, if any


# -- the search: faultfs.search's one crash-state search, driven by a seeded generator ------------

MAX_FAILURES = 3          # distinct failures reported per crash test


class CrashTestIncomplete(AssertionError):
    """The budget ended before every planned crash state was checked: the test did not pass.

    Attributes: ``checked``, ``planned``: crash states checked and planned."""

    def __init__(self, message: str, *, checked: int, planned: int) -> None:
        super().__init__(message)
        self.checked, self.planned = checked, planned


def _failure_signature(err: "_Failure") -> str:
    """The user's rule that failed: the phase, the exception type and where it was raised (the
    innermost frame), so two different assertions are two findings, one assertion hit by many
    crash states is one."""
    tb = err.error.__traceback__
    where = ""
    while tb is not None:
        where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return search.signature(err.phase, f"{type(err.error).__name__}@{where}")


def crash_test(operation: Callable, recover: Callable | None = None,
               check: Callable | None = None, *, vfs_kind: str = "vfs",
               device: DeviceProfile | str = DEFAULT_DEVICE, seed: int = 0,
               budget: float | None = None, max_states: int = 2000,
               exhaustive_bound: int = 256, samples_per_point: int = 16,
               setup: Callable | None = None, root: str = "/tornpage",
               reproduce: str | None = None, incomplete: str = "fail",
               max_failures: int = MAX_FAILURES, shrink_steps: int = 200,
               recovery_crashes: bool = False) -> CrashTestResult:
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
        max_states: distinct crash states to recover and check at most (deterministic budget).
        exhaustive_bound: crash points with at most this many states are enumerated whole.
        samples_per_point: random plans per crash point beyond the bound.
        setup: ``setup(disk_or_root)`` run first; what it leaves is durable before the operation.
        root: the traced directory for ``"pyfakefs"``.
        reproduce: the command that reruns this test, quoted in the failure.
        incomplete: what a budget that ends before every planned state was checked does:
            ``"fail"`` (default: raise :class:`CrashTestIncomplete`) or ``"return"`` (return the
            result with ``complete=False``; the pytest plugin turns that into a skip).  Never a
            silent pass.
        max_failures: distinct failures (by :func:`_failure_signature`) collected before the
            report; 1 stops at the first.
        shrink_steps: recover-and-check runs spent shrinking each failure, at most.
        recovery_crashes: also crash ``recover`` itself: after a crash state passes, ``recover``
            runs once more on it traced, and up to 8 states a crash in that recovery's IO
            leaves (from the same search over the recovery's trace) are recovered again and
            checked.  Recovery must survive its own crashes, as the campaign demands of the
            engine.

    Returns:
        :class:`CrashTestResult` (what was explored) when every checked state passed.

    Raises:
        CrashConsistencyError: failing crash states (up to ``max_failures`` distinct ones, each
            shrunk and explained; the first is the earliest found).
        CrashTestIncomplete: the budget ended first and ``incomplete="fail"``.
        ValueError: ``vfs_kind`` or ``incomplete`` is not one of the values above.
        faultfs.pyfakefs_vfs.UnsupportedIO: the code did IO the pyfakefs adapter cannot fake.
        Anything ``operation`` or ``setup`` raises, unchanged.
    """
    __tracebackhide__ = True     # pytest: show the user's frames and the explanation
    if incomplete not in ("fail", "return"):
        raise ValueError(f"incomplete must be 'fail' or 'return', not {incomplete!r}")
    profile = get_device(device) if isinstance(device, str) else device
    runner = _Runner(vfs_kind, profile, root)
    try:
        base, trace = runner.record(setup, operation)
        result = _search(runner, base, trace, profile, recover, check, seed=seed, budget=budget,
                         max_states=max_states, exhaustive_bound=exhaustive_bound,
                         samples=samples_per_point, reproduce=reproduce,
                         max_failures=max_failures, shrink_steps=shrink_steps,
                         recovery_crashes=recovery_crashes and recover is not None)
    finally:
        runner.close()
    if not result.complete and incomplete == "fail":
        raise CrashTestIncomplete(
            f"crash test incomplete: the budget ended after {result.states} of "
            f"{result.planned} planned crash states ({result.planned - result.states} not "
            f"checked); raise --tornpage-budget / max_states=, or pass incomplete='return' to "
            f"accept a partial run (the plugin then skips the test)",
            checked=result.states, planned=result.planned)
    return result


def _search(runner: _Runner, base: Image, trace: Trace, profile: DeviceProfile, recover, check,
            *, seed: int, budget: float | None, max_states: int, exhaustive_bound: int,
            samples: int, reproduce: str | None, max_failures: int,
            shrink_steps: int, recovery_crashes: bool = False) -> CrashTestResult:
    __tracebackhide__ = True
    b = CrashStateBuilder(base, trace, profile)

    def new_search() -> search.CrashSearch:
        return search.CrashSearch(b, seed=seed, schedule="positions",
                                  exhaustive_bound=exhaustive_bound, samples_per_point=samples,
                                  promise_labels=(ACK,))
    planned = sum(1 for _ in new_search())          # plans only: no state is built
    deadline = None if budget is None else time.monotonic() + budget
    seen = search.Seen()
    failures: dict[str, tuple] = {}
    complete = True

    def judge(plan: CrashPlan) -> _Failure | None:
        promised = promised_at(trace, plan.position)
        image = b.build(plan)
        key = search.image_key(image, promised._key())
        err, reused = seen.judge(key, lambda: runner.judge(image, promised, recover, check))
        if err is None and recovery_crashes and not reused:   # a repeat's were crashed before
            err = _judge_recovery_crashes(runner, image, promised, recover, check, profile,
                                          seen, key)
        return err

    crashes = new_search()
    for plan in crashes:
        if seen.checked >= max_states or (deadline is not None and time.monotonic() > deadline):
            complete = False
            break
        err = judge(plan)
        if err is None:
            continue
        sig = _failure_signature(err)
        if sig in failures:
            continue
        budget_ = search.ShrinkBudget(shrink_steps)

        def same(cand: CrashPlan, sig=sig) -> _Failure | None:
            e = judge(cand)
            return e if e is not None and _failure_signature(e) == sig else None
        small, e, accepted = search.shrink_plan(b, plan, same, budget_)
        failures[sig] = (small, e or err, seen.checked, accepted)
        if len(failures) >= max_failures:
            complete = False
            break
    if failures:
        raise _explain_all(b, list(failures.values()), seed=seed, reproduce=reproduce,
                           planned=planned, checked=seen.checked, max_failures=max_failures)
    return CrashTestResult(len(trace), trace.hash(), crashes.positions, len(crashes.points),
                           crashes.whole_points, seen.checked, seen.reused, complete, planned)


RECOVERY_CRASHES_PER_STATE = 8


def _judge_recovery_crashes(runner: _Runner, image: Image, promised: Promised, recover, check,
                            profile: DeviceProfile, seen: search.Seen,
                            key: str) -> "_Failure | None":
    """Crash ``recover`` itself: run it on ``image`` traced, then recover and check the states
    a crash in its IO leaves, up to :data:`RECOVERY_CRASHES_PER_STATE` of them, taken from the
    same search over the recovery's trace (every position with nothing lost, crash points
    enumerated whole when small); each is one more distinct state."""
    __tracebackhide__ = True
    nb = CrashStateBuilder(image, _recovery_trace(runner, image, recover), profile)
    crashes = search.CrashSearch(nb, seed=key, schedule="positions", exhaustive_bound=16,
                                 samples_per_point=2)
    tried = 0
    for nplan in crashes:
        if tried >= RECOVERY_CRASHES_PER_STATE:
            break
        if not search.plan_losses(nplan) and nplan.position not in crashes.points:
            continue             # a prefix of the recovery with nothing lost: a plain restart
        tried += 1
        nimage = nb.build(nplan)

        def again(nimage=nimage) -> "_Failure | None":
            return runner.judge(nimage, promised, recover, check)
        err = seen.judge(search.image_key(nimage, promised._key()), again)[0]
        if err is not None:
            err.nested = nplan
            return err
    return None


def _recovery_trace(runner: _Runner, image: Image, recover) -> Trace:
    """The trace of ``recover`` run on ``image`` (deterministic: the user's recovery must be)."""
    return runner._run(image, recover).trace


def _explain_all(b: CrashStateBuilder, found: list[tuple], *, seed: int, reproduce: str | None,
                 planned: int, checked: int, max_failures: int) -> "CrashConsistencyError":
    errors = [_explain(b, plan, err, promised_at(b.trace, plan.position), seed=seed,
                       states=states, shrunk=shrunk, reproduce=None)
              for plan, err, states, shrunk in found]
    first = errors[0]
    if len(errors) == 1:
        msg = str(first)
    else:
        msg = (f"{len(errors)} distinct crash-consistency failures (the search stops at "
               f"{max_failures}; {checked} of {planned} planned crash states checked)\n" +
               "\n".join(f"--- failure {n} ---\n{e}" for n, e in enumerate(errors, 1)))
    if any(plan.position <= _first_ack(b.trace) for plan, _, _, _ in found):
        msg += ("\n  hint: a failure lies in a crash before the operation's first ack (while "
                "the store is being created?); pass setup= to run that part first and make it "
                "durable, so the search reaches what the store promises")
    if reproduce:
        msg += f"\n  reproduce: {reproduce}"
    return CrashConsistencyError(msg, plan=first.plan, lines=first.lines, seed=seed,
                                 reproduce=reproduce, trace=b.trace,
                                 failures=[(e.plan, e.lines) for e in errors])


def _first_ack(trace: Trace) -> int:
    for i, m in trace.markers(ACK):
        return i
    return len(trace)


def _preview(v: object, limit: int = 32) -> str:
    """``repr(v)`` cut to ``limit`` characters, with the value's length when cut."""
    r = repr(v)
    if len(r) <= limit:
        return r
    n = f"{len(v)} {'bytes' if isinstance(v, (bytes, bytearray)) else 'items'}" \
        if isinstance(v, (bytes, bytearray, str, list, tuple, dict)) else f"{len(r)} chars"
    return f"{r[:limit]}… ({n})"


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
        shown = ", ".join(f"{_preview(k)}={_preview(v)}" for k, v in list(promised.items())[:8])
        more = f" and {len(promised) - 8} more" if len(promised) > 8 else ""
        lines.append(f"promised before the crash: {shown}{more}")
    elif promised.acks:
        lines.append(f"promised before the crash: {len(promised.acks)} acks")
    else:
        lines.append("promised before the crash: nothing (no ack yet)")
    if err.nested is not None:
        lost = search.plan_losses(err.nested)
        lines.append(f"then a crash during recovery, after recovery operation "
                     f"#{err.nested.position - 1}: {lost} pending operation"
                     f"{'' if lost == 1 else 's'} lost or torn "
                     f"(recovery crash plan {err.nested.dumps()})")
    lines.append(f"{err.phase}: {_one_line(err.error)}")
    msg = [f"crash-consistency failure: recovery or check failed after a crash at position "
           f"{p} of {len(trace)} (seed {seed}, device {b.profile.name})"]
    msg += [f"  {ln}" for ln in lines]
    msg.append(f"  found after {states} crash states" +
               (f"; shrunk in {shrunk} step{'s' if shrunk != 1 else ''}" if shrunk else ""))
    msg.append(f"  crash plan: {plan.dumps()}")
    if reproduce:
        msg.append(f"  reproduce: {reproduce}")
    return CrashConsistencyError("\n".join(msg), plan=plan, lines=lines, seed=seed,
                                 reproduce=reproduce, trace=trace)
