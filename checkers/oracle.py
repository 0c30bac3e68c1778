"""The committed-state oracle.

It knows nothing of how the workload was made.  It reads, from the trace markers before the
crash position, what had been promised:

  * ``commit-begin`` (``trx``, ``writes``): the transaction entered commit with these writes,
    a tuple of ``(table, key, value or None)`` (None: deleted), final value per row;
  * ``commit-ack`` (``trx``, ``lsn``: the commit LSN, ``mode``: the
    flush_log_at_trx_commit it was acknowledged under, absent for 1): commit returned;
  * ``log-written`` / ``log-durable`` (``lsn``): the redo log had been written to the OS /
    fsynced up to this LSN (emitted with modes 0 and 2 when the value changed);
  * ``initial-state`` (``rows``): the committed rows when the crash window opens,
    ``(table, key, value)``.

What an acknowledged commit promises depends on the mode and on the crash:
  * mode 1 (or no ``mode``): durable, whatever the crash;
  * mode 2: written to the OS at commit, so it survives a process kill (the OS keeps what was
    written); after a power loss only if the log was durable to its LSN (``log-durable``);
  * mode 0: nothing at commit; it survives a process kill if the log had been written to its
    LSN (``log-written`` or ``log-durable``), a power loss if it had been made durable.
"Process kill" here means any crash that lost nothing the OS had: a device without power loss,
or a power loss whose crash plan kept every pending operation (the disk then holds exactly
what a process kill leaves).

Commits are numbered in commit-begin order, which the engine's commit serialises.  The
recovered state must equal the state after some prefix of that order (no holes, no partial
transactions, nothing uncommitted) and the prefix must include every commit that must survive.
A commit that began but was not acknowledged, or was acknowledged without that promise, is in
doubt: present or absent, never half.

The rules a failed verdict names (checkers.rules.RULES), first match wins:
  * ``oracle.durable_commit_lost`` (L): the state is an older prefix, without commits that had
    to survive;
  * ``oracle.uncommitted_visible`` (U): a row holds a value no commit before the crash wrote;
  * ``oracle.partial_transaction`` (L): a commit is half there: of the rows it wrote last (no
    later commit wrote them), some hold its value and some do not;
  * ``oracle.no_committed_prefix`` (L): any other state that is no allowed prefix, such as a
    later commit present whole and an earlier one absent.

XA (:func:`check_prepared`, :func:`check_xa_resolution`).  Markers: ``xa-prepare-begin``
(``trx``, ``writes``) before XA PREPARE, ``xa-prepare`` (``trx``, ``lsn``, ``mode``) once it
returned; ``xa-rollback-begin`` / ``xa-rollback`` (``trx``, ``lsn``, ``mode``) around XA
ROLLBACK; XA COMMIT is an ordinary ``commit-begin`` / ``commit-ack``.  A prepared transaction is
no commit: its writes are in no committed prefix, so :func:`check_committed_state` (given the
state a new transaction's consistent read sees) already fails when they show.  What a prepare
promises follows the commit rules (mode, crash).  After recovery:
  * ``oracle.xa_prepared_lost`` (L): a transaction whose prepare was promised to survive, and
    which no XA COMMIT or XA ROLLBACK had begun to resolve, is not found PREPARED;
  * ``oracle.xa_prepared_unexpected`` (U): a transaction is found PREPARED that never began to
    prepare before the crash, or whose XA COMMIT or XA ROLLBACK was promised to survive;
  * ``oracle.xa_prepared_changed`` (L): a transaction found PREPARED does not hold its writes
    (the latest versions of the rows it wrote differ from what it wrote);
  * ``oracle.xa_prepared_unlocked`` (U): another transaction could lock a row a transaction
    found PREPARED wrote;
and once the campaign resolved each transaction found PREPARED (commit or rollback):
  * ``oracle.xa_commit_lost`` (L): a committed one's writes do not all show;
  * ``oracle.xa_rollback_visible`` (U): after a rollback the state is not the committed state
    it had before (its writes show, or rows changed).

DDL (:func:`check_dictionary`).  Markers: ``initial-state`` (``tables``), ``ddl-begin`` (``op``,
``table``, ``new``) before CREATE / DROP / RENAME TABLE, ``ddl-ack`` once it returned.  The
recovered tables must be those after every acknowledged statement, or after the one in doubt
too: ``oracle.ddl_lost`` (L) when an acknowledged statement is undone, ``oracle.ddl_not_atomic``
(C) for any other set of tables.  The rows of the tables DDL made (:func:`check_ddl_rows`):
each is filled by one load transaction (``load-begin``: ``table``, ``trx``, ``rows``;
``load-ack`` as ``commit-ack``), follows its table through RENAME, and must be found whole or
not at all, whole when its commit was promised (the commit rules above):
``oracle.ddl_load_lost`` (L), ``oracle.ddl_table_rows_wrong`` (C).
"""
from __future__ import annotations

from dataclasses import dataclass

from tornpage.checkers.verdict import CORRUPT, LOST, UNCOMMITTED, Verdict

Row = tuple[str, int]


class MarkerError(ValueError):
    """Trace markers that contradict each other (a commit-ack with no commit-begin)."""


@dataclass
class Commit:
    trx: int
    writes: tuple          # ((table, key, value | None), ...)
    acked: bool
    lsn: int = 0           # the commit LSN from commit-ack (0: none given, or read-only)
    mode: int = 1          # flush_log_at_trx_commit the commit was acknowledged under
    must_survive: bool = False   # acknowledged with a promise that holds for this crash


@dataclass
class LogMarks:
    """The redo log LSNs the markers before the crash reported (0: none reported)."""
    written: int = 0       # written to the OS (``log-written``)
    durable: int = 0       # fsynced (``log-durable``)


def _must_survive(c: Commit, power_loss: bool, log: LogMarks) -> bool:
    """Whether acknowledged commit ``c`` was promised to survive this crash (module docstring)."""
    if not c.acked:
        return False
    if c.mode == 1:
        return True
    if c.lsn <= 0:
        return False       # changed nothing: it promises nothing, not even earlier commits
    if not power_loss:
        return c.mode == 2 or c.lsn <= max(log.written, log.durable)
    return c.lsn <= log.durable


def promised(markers, position: int, power_loss: bool = True,
             log: LogMarks | None = None) -> tuple[dict[Row, bytes], list[Commit]]:
    """(initial rows, commits in commit order) from ``(index, Marker)`` pairs before
    ``position``; ``power_loss`` as for :func:`check_committed_state`.  ``log``, if given, is
    filled with the log LSNs the markers reported.

    Raises:
        MarkerError: a ``commit-ack`` with no ``commit-begin`` before it.
    """
    initial: dict[Row, bytes] = {}
    commits: list[Commit] = []
    by_trx: dict[int, Commit] = {}
    log = log if log is not None else LogMarks()
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
            if c is None:       # markers are input (a trace, an artifact): refuse, loudly
                raise MarkerError(f"commit-ack for trx {m.get('trx')} without commit-begin "
                                  f"(marker {i})")
            c.acked = True
            c.lsn = int(m.get("lsn", 0) or 0)
            c.mode = int(m.get("mode", 1))
        elif m.label == "log-written":
            log.written = max(log.written, int(m.get("lsn")))
        elif m.label == "log-durable":
            log.durable = max(log.durable, int(m.get("lsn")))
    for c in commits:
        c.must_survive = _must_survive(c, power_loss, log)
    return initial, commits


def describe_value(v) -> str:
    """A row's value for an explanation: "absent", or its first bytes and its length."""
    if v is None:
        return "absent"
    b = bytes(v)
    return repr(b[:24])[1:] + ("…" if len(b) > 24 else "") + f" ({len(b)} bytes)"


def check_committed_state(markers, position: int, recovered: dict[Row, bytes],
                          writers: dict | None = None, power_loss: bool = True) -> Verdict:
    """Demand that ``recovered`` ((table, key) → value) is a committed prefix state.

    Args:
        markers: ``(trace index, Marker)`` pairs, in trace order.
        position: the crash position; markers at or after it had not happened.
        recovered: every row of the recovered database.
        writers: optional ``(table, key, value) → description`` of who wrote a value (used only
            to explain a failure, e.g. "trx 17, rolled back").
        power_loss: whether the crash may have lost what the OS had been given (a power loss
            that dropped or tore a pending operation).  False for a process kill, and for a
            power loss that kept every pending operation.  Matters only for commits
            acknowledged with flush_log_at_trx_commit 0 or 2.

    Returns a failed :class:`Verdict` naming the keys, the expected and found values and the
    transactions involved when no allowed prefix matches.
    """
    log = LogMarks()
    initial, commits = promised(markers, position, power_loss, log)
    must = max((j + 1 for j, c in enumerate(commits) if c.must_survive), default=0)
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
        status = "in doubt" if not c.acked else "acknowledged" if c.mode == 1 else \
            f"acknowledged with flush_log_at_trx_commit={c.mode} at LSN {c.lsn}" + \
            ("" if c.must_survive else ", not promised yet: in doubt")
        for t, k, v in c.writes:
            who_wrote[(t, k, None if v is None else bytes(v))] = \
                f"trx {c.trx} ({status}, commit #{j + 1})"
    if writers:
        for key, desc in writers.items():
            who_wrote.setdefault(key, desc)
    for t, k in d:          # a row absent at the start is absent "by" the initial state
        if (t, k) not in initial:
            who_wrote.setdefault((t, k, None), "the initial state")
    relaxed = [c for c in commits if c.acked and c.mode != 1]
    details = [f"{len(commits)} commits began before the crash, {must} were acknowledged"
               + (" and promised to survive it" if relaxed else "")
               + f"; allowed states: after commit {must}..{len(commits)}"]
    if relaxed:
        crash = "a power loss" if power_loss else \
            "a process kill (or a power loss that lost nothing written)"
        details.append(
            f"flush_log_at_trx_commit={relaxed[-1].mode}: the log was written to the OS up to "
            f"LSN {log.written} and fsynced up to LSN {log.durable} (markers before the "
            f"crash); the crash was {crash}; {sum(c.must_survive for c in relaxed)} of "
            f"{len(relaxed)} acknowledged commits had to survive it")
    for (t, k) in d[:8]:
        exp, got = states[target].get((t, k)), recovered.get((t, k))
        src = who_wrote.get((t, k, None if got is None else bytes(got)), "no committed trx")
        exp_src = who_wrote.get((t, k, None if exp is None else bytes(exp)))
        details.append(f"{t}:{k} expected {describe_value(exp)}, found {describe_value(got)} "
                       f"(found value written by {src}"
                       + (f"; expected value written by {exp_src})" if exp_src else ")"))
    if len(d) > 8:
        details.append(f"... and {len(d) - 8} more rows differ")
    if exact_older:
        lost = [c.trx for c in commits[best_k:must] if c.must_survive]
        return Verdict.failed(LOST, f"acknowledged commit lost: recovered state is the state "
                                    f"after commit {best_k}, but trx {lost} had been "
                                    f"acknowledged", details, rule="oracle.durable_commit_lost")
    committed_values = {(t, k, v) for (t, k), v in initial.items()} | {
        (t, k, None if v is None else bytes(v)) for c in commits for t, k, v in c.writes}
    uncommitted = any(recovered.get(r) is not None and
                      (r[0], r[1], recovered[r]) not in committed_values for r in d)
    half = [] if uncommitted else _half_applied(commits, recovered)
    if half:
        j, c, got, missing = half[0]
        details.insert(1 + bool(relaxed),
                       f"trx {c.trx} (commit #{j + 1}) is half applied: "
                       f"{_rows(got)} hold its values, {_rows(missing)} do not")
    rule = "oracle.uncommitted_visible" if uncommitted else \
        "oracle.partial_transaction" if half else "oracle.no_committed_prefix"
    kind = UNCOMMITTED if uncommitted else LOST
    return Verdict.failed(kind, f"recovered state matches no committed prefix: {len(d)} rows "
                                f"differ from the state after commit {target}", details,
                          rule=rule)


def _rows(rows: list) -> str:
    return ", ".join(f"{t}:{k}" for t, k in rows[:4]) + (" ..." if len(rows) > 4 else "")


def _half_applied(commits: list[Commit], recovered: dict[Row, bytes]) -> list:
    """``(index, commit, rows holding its value, rows not)`` for each commit whose final writes
    (rows no later commit wrote) are partly in ``recovered``."""
    out = []
    later: set[Row] = set()
    for j in range(len(commits) - 1, -1, -1):
        c = commits[j]
        final = {(t, k): v for t, k, v in c.writes if (t, k) not in later}
        got = sorted(r for r, v in final.items()
                     if recovered.get(r) == (None if v is None else bytes(v)))
        missing = sorted(r for r in final if r not in got)
        if got and missing:
            out.append((j, c, got, missing))
        later |= {(t, k) for t, k, _ in c.writes}
    return out[::-1]


# -- XA ------------------------------------------------------------------------------------------
@dataclass
class Prepare:
    """What the markers before the crash say of one XA transaction."""
    trx: int
    writes: tuple                 # ((table, key, value | None), ...), final value per row
    acked: bool = False           # xa-prepare: XA PREPARE returned
    lsn: int = 0
    mode: int = 1
    commit_began: bool = False    # commit-begin (XA COMMIT) seen
    committed: bool = False       # ... acknowledged and promised to survive this crash
    rollback_began: bool = False  # xa-rollback-begin seen
    rolled_back: bool = False     # xa-rollback acknowledged and promised to survive
    must_be_prepared: bool = False

    @property
    def may_be_prepared(self) -> bool:
        return not self.committed and not self.rolled_back


def xa_promised(markers, position: int, power_loss: bool = True) -> dict[int, Prepare]:
    """trx id → :class:`Prepare` for every transaction that began XA PREPARE before
    ``position``; ``power_loss`` as for :func:`check_committed_state`."""
    log = LogMarks()
    out: dict[int, Prepare] = {}
    acks: list[tuple[Prepare, str, Commit]] = []
    for i, m in markers:
        if i >= position:
            break
        label = m.label
        if label == "xa-prepare-begin":
            out[int(m.get("trx"))] = Prepare(int(m.get("trx")), tuple(m.get("writes", ())))
        elif label in ("xa-prepare", "xa-rollback", "commit-ack", "xa-rollback-begin",
                       "commit-begin"):
            p = out.get(int(m.get("trx")))
            if p is None:
                continue
            if label == "commit-begin":
                p.commit_began = True
            elif label == "xa-rollback-begin":
                p.rollback_began = True
            else:
                c = Commit(p.trx, (), True, int(m.get("lsn", 0) or 0), int(m.get("mode", 1)))
                acks.append((p, label, c))
                if label == "xa-prepare":
                    p.acked, p.lsn, p.mode = True, c.lsn, c.mode
        elif label == "log-written":
            log.written = max(log.written, int(m.get("lsn")))
        elif label == "log-durable":
            log.durable = max(log.durable, int(m.get("lsn")))
    for p, label, c in acks:
        promise = _must_survive(c, power_loss, log)
        if label == "xa-prepare":
            p.must_be_prepared = promise and c.lsn > 0 and not p.commit_began and \
                not p.rollback_began      # a prepare that changed nothing leaves nothing
        elif label == "commit-ack":
            p.committed = promise
        else:
            p.rolled_back = promise
    return out


def check_prepared(markers, position: int, found: dict, power_loss: bool = True) -> Verdict:
    """Demand that the transactions recovery found PREPARED are exactly those the markers
    allow, each holding its writes under its locks.

    Args:
        found: trx id → ``{"rows": {(table, key): latest value or None}, "unlocked":
            [(table, key), ...]}`` for every transaction found PREPARED after recovery: the
            latest versions of the rows its prepare marker says it wrote, and those of them
            another transaction could lock.
    """
    xa = xa_promised(markers, position, power_loss)
    lost = [p for p in xa.values() if p.must_be_prepared and p.trx not in found]
    if lost:
        return Verdict.failed(LOST, f"prepared transaction lost: the XA PREPARE of trx "
                                    f"{lost[0].trx} had been acknowledged (LSN {lost[0].lsn}) "
                                    f"but it is not PREPARED after recovery",
                              [f"prepared before the crash, unresolved: "
                                                  f"{sorted(p.trx for p in lost)}",
                                                  f"found PREPARED: {sorted(found)}"],
                              rule="oracle.xa_prepared_lost")
    extra = [t for t in sorted(found) if t not in xa or not xa[t].may_be_prepared]
    if extra:
        t = extra[0]
        why = "never began XA PREPARE before the crash" if t not in xa else \
            "its XA COMMIT had been acknowledged" if xa[t].committed else \
            "its XA ROLLBACK had returned"
        return Verdict.failed(UNCOMMITTED, f"trx {t} is PREPARED after recovery, but {why}",
                              [f"found PREPARED: {sorted(found)}"],
                              rule="oracle.xa_prepared_unexpected")
    for t in sorted(found):
        rows = found[t].get("rows", {})
        bad = [(tb, k, v) for tb, k, v in xa[t].writes
               if rows.get((tb, k)) != (None if v is None else bytes(v))]
        if bad:
            tb, k, v = bad[0]
            return Verdict.failed(LOST, f"prepared trx {t} lost its writes: {len(bad)} of "
                                        f"{len(xa[t].writes)} rows it wrote hold other values",
                                  [f"{tb}:{k} expected {describe_value(v)}, found "
                                   f"{describe_value(rows.get((tb, k)))}" for tb, k, v in bad[:8]],
                                  rule="oracle.xa_prepared_changed")
        unlocked = list(found[t].get("unlocked", ()))
        if unlocked:
            return Verdict.failed(UNCOMMITTED, f"prepared trx {t} does not hold its locks: "
                                               f"another transaction locked {_rows(unlocked)}",
                                  rule="oracle.xa_prepared_unlocked")
    return Verdict.passed()


def check_xa_resolution(before: dict[Row, bytes], after: dict[Row, bytes],
                        resolved: list) -> Verdict:
    """After the transactions found PREPARED were resolved: ``before`` is the committed state
    before (a consistent read), ``after`` the state after, ``resolved`` ``(trx, "commit" |
    "rollback", writes)`` in the order they were resolved.  A commit's writes must show, a
    rollback must change nothing."""
    want = dict(before)
    for trx, how, writes in resolved:
        if how == "commit":
            for t, k, v in writes:
                if v is None:
                    want.pop((t, k), None)
                else:
                    want[(t, k)] = bytes(v)
    d = sorted(r for r in set(want) | set(after) if want.get(r) != after.get(r))
    if not d:
        return Verdict.passed()
    committed = {(t, k) for trx, how, w in resolved if how == "commit" for t, k, _ in w}
    details = [f"resolved: {', '.join(f'trx {t} by {how}' for t, how, _ in resolved)}"] + [
        f"{t}:{k} expected {describe_value(want.get((t, k)))}, "
        f"found {describe_value(after.get((t, k)))}" for t, k in d[:8]]
    if any(r in committed for r in d):
        trx = next(t for t, how, w in resolved if how == "commit" and
                   any((tb, k) in d for tb, k, _ in w))
        return Verdict.failed(LOST, f"XA COMMIT of recovered prepared trx {trx} lost writes: "
                                    f"{len(d)} rows differ", details,
                              rule="oracle.xa_commit_lost")
    return Verdict.failed(UNCOMMITTED, f"XA ROLLBACK of recovered prepared transactions left "
                                       f"{len(d)} rows changed", details,
                          rule="oracle.xa_rollback_visible")


# -- DDL ---------------------------------------------------------------------------------------
def ddl_states(markers, position: int) -> tuple[list[frozenset], int]:
    """(the table sets the DDL before ``position`` passes through, the number of them a
    recovery must reach), from ``initial-state`` (``tables``) and ``ddl-begin`` (``op``:
    create, drop or rename; ``table``; ``new`` for a rename) / ``ddl-ack`` markers.  DDL
    statements run one at a time and are durable when they return, so every one but the last
    began was acknowledged, and only the last may be in doubt.

    Raises:
        MarkerError: an unknown DDL operation, or a ``ddl-ack`` with no ``ddl-begin``.
    """
    tables: set[str] = set()
    states: list[frozenset] = []
    acked = 0
    pending = False
    for i, m in markers:
        if i >= position:
            break
        if m.label == "initial-state":
            tables = set(m.get("tables", ())) | {t for t, _, _ in m.get("rows", ())}
            states = [frozenset(tables)]
            acked = 1
        elif m.label == "ddl-begin":
            op, name = m.get("op"), m.get("table")
            if op == "create":
                tables.add(name)
            elif op == "drop":
                tables.discard(name)
            elif op == "rename":
                tables.discard(name)
                tables.add(m.get("new"))
            else:
                raise MarkerError(f"ddl-begin with unknown op {op!r} (marker {i})")
            states.append(frozenset(tables))
            pending = True
        elif m.label == "ddl-ack":
            if not pending:
                raise MarkerError(f"ddl-ack without ddl-begin (marker {i})")
            acked = len(states)
            pending = False
    return states, acked


def check_dictionary(markers, position: int, found: set[str]) -> Verdict:
    """Demand that the recovered tables ``found`` are those after every acknowledged DDL
    statement, or after the one in doubt as well: DDL is atomic and durable on return.

    Rules: ``oracle.ddl_lost`` (L): an acknowledged CREATE / DROP / RENAME TABLE is undone (the
    tables are those of an earlier point); ``oracle.ddl_not_atomic`` (C): the tables are no
    state the DDL passes through (a statement half done, a table no DDL made).
    """
    states, acked = ddl_states(markers, position)
    if not states:
        return Verdict.passed()     # no initial-state marker: the crash came before the setup
    found = frozenset(found)
    allowed = states[acked - 1:acked + 1]
    if found in allowed:
        return Verdict.passed()
    want = " or ".join(str(sorted(s)) for s in allowed)
    if found in states[:acked - 1]:
        return Verdict.failed(LOST, f"an acknowledged DDL statement was undone: tables "
                                    f"{sorted(found)}, expected {want}",
                              [f"{len(states) - 1} DDL statement(s) began before the crash, "
                               f"{acked - 1} were acknowledged"], rule="oracle.ddl_lost")
    return Verdict.failed(CORRUPT, f"the recovered tables {sorted(found)} are no state the DDL "
                                   f"passes through: expected {want}",
                          [f"missing {sorted(set().union(*allowed) - found)}, unexpected "
                           f"{sorted(found - set().union(*allowed))}"],
                          rule="oracle.ddl_not_atomic")


@dataclass
class Load:
    """A DDL table's load (``load-begin`` / ``load-ack``): its rows and whether its commit was
    promised to survive (:func:`_must_survive`)."""
    rows: dict
    commit: Commit


def ddl_loads(markers, position: int, power_loss: bool = True) -> dict[str, Load | None]:
    """Table name → the load of the table that name may hold after recovery (None: the table
    was created and never loaded), for every name a DDL statement before ``position`` made:
    CREATE starts a table empty, its load (``load-begin`` ``table``, ``trx``, ``rows``;
    ``load-ack`` ``trx``, ``lsn``, ``mode``) fills it, RENAME carries it to the new name (the
    old name keeps it while the RENAME is in doubt), DROP ends it (once acknowledged).

    Raises:
        MarkerError: a ``load-ack`` with no ``load-begin``.
    """
    names: dict[str, list] = {}             # name → [Load | None] (a box, shared by a rename)
    loads: dict[int, Load] = {}
    pending: tuple = ()
    log = LogMarks()
    for i, m in markers:
        if i >= position:
            break
        if m.label == "ddl-begin":
            op, name = m.get("op"), m.get("table")
            if op == "create":
                names[name] = [None]
            elif op == "rename" and name in names:
                names[m.get("new")] = names[name]
            pending = (op, name)
        elif m.label == "ddl-ack" and pending:
            op, name = pending
            if op in ("drop", "rename"):
                names.pop(name, None)
            pending = ()
        elif m.label == "load-begin":
            ld = Load({int(k): bytes(v) for k, v in m.get("rows", ())},
                      Commit(int(m.get("trx")), (), False))
            loads[ld.commit.trx] = ld
            names.setdefault(m.get("table"), [None])[0] = ld
        elif m.label == "load-ack":
            ld = loads.get(int(m.get("trx")))
            if ld is None:
                raise MarkerError(f"load-ack for trx {m.get('trx')} without load-begin "
                                  f"(marker {i})")
            ld.commit.acked = True
            ld.commit.lsn = int(m.get("lsn", 0) or 0)
            ld.commit.mode = int(m.get("mode", 1))
        elif m.label == "log-written":
            log.written = max(log.written, int(m.get("lsn")))
        elif m.label == "log-durable":
            log.durable = max(log.durable, int(m.get("lsn")))
    for ld in loads.values():
        ld.commit.must_survive = _must_survive(ld.commit, power_loss, log)
    return {name: box[0] for name, box in names.items()}


def check_ddl_rows(markers, position: int, found: dict[str, dict[int, bytes]],
                   power_loss: bool = True) -> Verdict:
    """Demand that every table DDL made, as recovered (``found``: table → key → value, tables
    no DDL made ignored), holds no rows or exactly the rows its load committed, and those rows
    if the load's commit was promised to survive: a load is one transaction.

    Rules: ``oracle.ddl_load_lost`` (L): a table is missing rows of a load promised to survive,
    or holds only part of its load; ``oracle.ddl_table_rows_wrong`` (C): a table holds a row
    or value its load never wrote.
    """
    loads = ddl_loads(markers, position, power_loss)
    for table in sorted(found):
        if table not in loads:
            continue
        ld, rows = loads[table], found[table]
        want = ld.rows if ld is not None else {}
        if (rows and rows == want) or (not rows and not (ld and ld.commit.must_survive)):
            continue
        wrong = sorted(k for k in rows if want.get(k) != rows[k])
        if wrong:
            return Verdict.failed(CORRUPT, f"table {table} holds {len(wrong)} row(s) its load "
                                           f"never wrote",
                                  [f"{table}:{k}: {describe_value(rows[k])}, the load wrote "
                                   f"{describe_value(want.get(k))}" for k in wrong[:8]],
                                  rule="oracle.ddl_table_rows_wrong")
        missing = sorted(set(want) - set(rows))
        return Verdict.failed(LOST, f"table {table} lost {len(missing)} of the {len(want)} rows "
                                    f"its load committed"
                                    + (" (the load was promised to survive)"
                                       if ld.commit.must_survive else " (half a transaction)"),
                              [f"{table}:{k}: missing" for k in missing[:8]],
                              rule="oracle.ddl_load_lost")
    return Verdict.passed()
