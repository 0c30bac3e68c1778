"""Crash-state search: how big a crash point's space is, and every state in it.

At a crash position the device may do something different with every pending operation, so the
*space* of crash states there is the product of each pending operation's *fates*:

* a metadata operation or a truncate: kept or dropped (2 fates);
* a write of ``n`` tear units: kept, dropped, or torn into any proper non-empty subset of its
  units, each torn shape once per fill the device can show in the lost units
  (``2 + (2**n - 2) * len(torn_fills)`` fates; a one-unit write cannot tear);
* on an ``ordered`` device a crash keeps a prefix of the pending operations and the first one
  not kept is dropped or torn, so the fates do not multiply: the space is
  ``1 + sum(fates(op) - 1)`` over the pending operations;
* on a process-kill device nothing is pending: one state.

:func:`space_size` counts exactly (Python integers; a 16 KiB doublewrite batch alone has
``2**32`` tear shapes).  :func:`enumerate_plans` yields every plan of a space no larger than a
bound, fewest losses first, so the first failing plan found is also a small one.  This is
CrashMonkey's and ALICE's bounded exhaustive exploration; beyond the bound the campaign samples.
"""
from __future__ import annotations

import itertools
from typing import Iterator

from tornpage.faultfs.crash import (DROP, KEEP, SIZE_ONLY, TEAR, Choice, CrashPlan, CrashStateBuilder,
                           tear_units)
from tornpage.faultfs.trace import Write


def fates(builder: CrashStateBuilder, i: int) -> int:
    """How many distinct things the device may do with pending operation ``i`` (keep included)."""
    op = builder.trace.ops[i]
    if not isinstance(op, Write):
        return 2
    n = len(tear_units(op.offset, len(op.data), builder.profile.tear_unit))
    extra = 2 if _size_only_allowed(builder, i) else 0
    return 2 + ((1 << n) - 2) * len(builder.profile.torn_fills) + extra


def _size_only_allowed(builder: CrashStateBuilder, i: int) -> bool:
    return not builder.profile.safe_append and i in builder.appends()


def space_size(builder: CrashStateBuilder, position: int) -> int:
    """Number of distinct crash plans at ``position`` (states, counting equal images apart).

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
    n = len(tear_units(op.offset, len(op.data), builder.profile.tear_unit))
    for mask in range(1, (1 << n) - 1):
        units = tuple(u for u in range(n) if mask >> u & 1)
        for fill in builder.profile.torn_fills:
            yield Choice(TEAR, units, fill)


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
