"""The committed-state oracle.

It knows nothing of how the workload was made.  It reads, from the trace markers before the
crash position, what had been promised:

  * ``commit-begin`` (``trx``, ``writes``): the transaction entered commit with these writes,
    a tuple of ``(table, key, value or None)`` (None: deleted), final value per row;
  * ``commit-ack`` (``trx``): commit returned, so the commit was promised durable
    (flush_log_at_trx_commit=1);
  * ``initial-state`` (``rows``): the committed rows when the crash window opens,
    ``(table, key, value)``.

Commits are numbered in commit-begin order, which the engine's commit serialises.  The
recovered state must equal the state after some prefix of that order (no holes, no partial
transactions, nothing uncommitted) and the prefix must include every acknowledged commit.  A
commit that began but was not acknowledged is in doubt: present or absent, never half.
"""
from __future__ import annotations

from dataclasses import dataclass

from checkers.verdict import LOST, UNCOMMITTED, Verdict

Row = tuple[str, int]


@dataclass
class Commit:
    trx: int
    writes: tuple          # ((table, key, value | None), ...)
    acked: bool


def promised(markers, position: int) -> tuple[dict[Row, bytes], list[Commit]]:
    """(initial rows, commits in commit order) from ``(index, Marker)`` pairs before
    ``position``."""
    initial: dict[Row, bytes] = {}
    commits: list[Commit] = []
    by_trx: dict[int, Commit] = {}
    for i, m in markers:
        if i >= position:
            break
        if m.label == "initial-state":
            initial = {(t, k): v for t, k, v in m.get("rows", ())}
        elif m.label == "commit-begin":
            c = Commit(int(m.get("trx")), tuple(m.get("writes", ())), False)
            commits.append(c)
            by_trx[c.trx] = c
        elif m.label == "commit-ack":
            c = by_trx.get(int(m.get("trx")))
            assert c is not None, f"commit-ack for trx {m.get('trx')} without commit-begin"
            c.acked = True
    return initial, commits


def _short(v) -> str:
    if v is None:
        return "absent"
    b = bytes(v)
    return repr(b[:24])[1:] + ("…" if len(b) > 24 else "") + f" ({len(b)} bytes)"


def check_committed_state(markers, position: int, recovered: dict[Row, bytes],
                          writers: dict | None = None) -> Verdict:
    """Demand that ``recovered`` ((table, key) → value) is a committed prefix state.

    Args:
        markers: ``(trace index, Marker)`` pairs, in trace order.
        position: the crash position; markers at or after it had not happened.
        recovered: every row of the recovered database.
        writers: optional ``(table, key, value) → description`` of who wrote a value (used only
            to explain a failure, e.g. "trx 17, rolled back").

    Returns a failed :class:`Verdict` naming the keys, the expected and found values and the
    transactions involved when no allowed prefix matches.
    """
    initial, commits = promised(markers, position)
    must = max((j + 1 for j, c in enumerate(commits) if c.acked), default=0)
    state = dict(initial)
    states = []
    for j in range(len(commits) + 1):
        if j:
            for t, k, v in commits[j - 1].writes:
                if v is None:
                    state.pop((t, k), None)
                else:
                    state[(t, k)] = bytes(v)
        states.append(dict(state))
    for k in range(must, len(commits) + 1):
        if states[k] == recovered:
            return Verdict.passed()
    # no allowed prefix matches: explain against the closest one
    def diff(s):
        return sorted(r for r in set(s) | set(recovered) if s.get(r) != recovered.get(r))
    best_k = min(range(len(states)), key=lambda k: (len(diff(states[k])), -k))
    exact_older = best_k < must and not diff(states[best_k])
    target = max(best_k, must) if not exact_older else must
    d = diff(states[target])
    who_wrote = {(t, k, bytes(v)): "the initial state" for (t, k), v in initial.items()}
    for j, c in enumerate(commits):
        for t, k, v in c.writes:
            who_wrote[(t, k, None if v is None else bytes(v))] = \
                f"trx {c.trx} ({'acknowledged' if c.acked else 'in doubt'}, commit #{j + 1})"
    if writers:
        for key, desc in writers.items():
            who_wrote.setdefault(key, desc)
    for t, k in d:          # a row absent at the start is absent "by" the initial state
        if (t, k) not in initial:
            who_wrote.setdefault((t, k, None), "the initial state")
    details = [f"{len(commits)} commits began before the crash, {must} were acknowledged; "
               f"allowed states: after commit {must}..{len(commits)}"]
    for (t, k) in d[:8]:
        exp, got = states[target].get((t, k)), recovered.get((t, k))
        src = who_wrote.get((t, k, None if got is None else bytes(got)), "no committed trx")
        exp_src = who_wrote.get((t, k, None if exp is None else bytes(exp)))
        details.append(f"{t}:{k} expected {_short(exp)}, found {_short(got)} "
                       f"(found value written by {src}"
                       + (f"; expected value written by {exp_src})" if exp_src else ")"))
    if len(d) > 8:
        details.append(f"... and {len(d) - 8} more rows differ")
    if exact_older:
        lost = [c.trx for c in commits[best_k:must] if c.acked]
        return Verdict.failed(LOST, f"acknowledged commit lost: recovered state is the state "
                                    f"after commit {best_k}, but trx {lost} had been "
                                    f"acknowledged", details)
    committed_values = {(t, k, v) for (t, k), v in initial.items()} | {
        (t, k, None if v is None else bytes(v)) for c in commits for t, k, v in c.writes}
    uncommitted = any(recovered.get(r) is not None and
                      (r[0], r[1], recovered[r]) not in committed_values for r in d)
    kind = UNCOMMITTED if uncommitted else LOST
    return Verdict.failed(kind, f"recovered state matches no committed prefix: {len(d)} rows "
                                f"differ from the state after commit {target}", details)
