"""The committed-state oracle (checkers/oracle.py) on hand-made marker lists and row states.

Markers are emitted through a real :class:`faultfs.SimDisk` (``disk.mark``), exactly as
campaigns/workload.py emits them (``initial-state`` with ``rows``, ``commit-begin`` with ``trx``
and ``writes``, ``commit-ack`` with ``trx`` and ``lsn``), and read back with
``trace.markers()``, which is what campaigns/crashcheck.py hands the oracle.
"""
from __future__ import annotations

import pytest

from tornpage.campaigns.workload import TABLE, WorkloadSettings, run_workload
from tornpage.checkers.oracle import MarkerError, check_committed_state, check_ddl_rows, promised
from tornpage.checkers.verdict import KIND_NAMES, LOST, UNCOMMITTED, Verdict
from tornpage.engine import Engine
from tornpage.faultfs import SimDisk

T = TABLE


def v(tag: str) -> bytes:
    """A distinct, recognisable row value."""
    return f"value-{tag}".encode()


class Script:
    """Builds a trace of oracle markers on a real SimDisk; every call returns its trace index."""

    def __init__(self, initial: dict[int, bytes]) -> None:
        self.disk = SimDisk()
        self.disk.mark("initial-state", rows=tuple((T, k, val) for k, val in sorted(initial.items())))

    def begin(self, trx: int, writes: dict[int, bytes | None]) -> int:
        self.disk.mark("commit-begin", trx=trx,
                       writes=tuple(sorted((T, k, val) for k, val in writes.items())))
        return len(self.disk.trace) - 1

    def ack(self, trx: int, lsn: int = 1000) -> int:
        self.disk.mark("commit-ack", trx=trx, lsn=lsn)
        return len(self.disk.trace) - 1

    @property
    def end(self) -> int:
        return len(self.disk.trace)

    def markers(self):
        return self.disk.trace.markers()

    def judge(self, rows: dict[int, bytes], position: int | None = None,
              writers: dict | None = None) -> Verdict:
        return check_committed_state(self.markers(), self.end if position is None else position,
                                     {(T, k): val for k, val in rows.items()}, writers)


INITIAL = {1: v("1-init"), 2: v("2-init"), 3: v("3-init")}


def two_acked() -> Script:
    """initial; trx 10 (acked) sets row 1; trx 11 (acked) sets row 2 and inserts row 4."""
    s = Script(INITIAL)
    s.begin(10, {1: v("1-t10")})
    s.ack(10)
    s.begin(11, {2: v("2-t11"), 4: v("4-t11")})
    s.ack(11)
    return s


AFTER_10 = {**INITIAL, 1: v("1-t10")}
AFTER_11 = {**AFTER_10, 2: v("2-t11"), 4: v("4-t11")}


# -- positive cases ---------------------------------------------------------------------------
def test_exact_committed_state_passes():
    verdict = two_acked().judge(AFTER_11)
    assert verdict.ok, verdict.explain()
    assert verdict.explain() == "ok"


def test_initial_state_passes_when_nothing_committed():
    s = Script(INITIAL)
    assert s.judge(INITIAL).ok
    initial, commits = promised(s.markers(), s.end)
    assert initial == {(T, k): val for k, val in INITIAL.items()}
    assert commits == []


def test_promised_reads_the_real_marker_format():
    s = two_acked()
    s.begin(12, {3: None})                      # in doubt: begun, never acknowledged
    initial, commits = promised(s.markers(), s.end)
    assert [c.trx for c in commits] == [10, 11, 12]
    assert [c.acked for c in commits] == [True, True, False]
    assert commits[1].writes == ((T, 2, v("2-t11")), (T, 4, v("4-t11")))
    assert commits[2].writes == ((T, 3, None),)


def test_markers_at_or_after_the_crash_position_did_not_happen():
    s = Script(INITIAL)
    s.begin(10, {1: v("1-t10")})
    ack = s.ack(10)
    # crash exactly at the ack's index: the ack had not happened, so trx 10 is in doubt
    _, commits = promised(s.markers(), ack)
    assert [(c.trx, c.acked) for c in commits] == [(10, False)]
    assert s.judge(INITIAL, position=ack).ok
    assert s.judge(AFTER_10, position=ack).ok
    # one operation later the ack happened: only the committed state is allowed
    assert not s.judge(INITIAL, position=ack + 1).ok
    assert s.judge(AFTER_10, position=ack + 1).ok


def test_delete_is_committed_as_absence():
    s = Script(INITIAL)
    s.begin(10, {2: None})
    s.ack(10)
    after = {k: val for k, val in INITIAL.items() if k != 2}
    assert s.judge(after).ok
    verdict = s.judge(INITIAL)              # the deleted row came back
    assert not verdict.ok and verdict.kind == LOST
    assert "trx [10]" in verdict.summary


def test_commit_order_is_commit_begin_order_not_trx_id_order():
    s = Script(INITIAL)
    s.begin(20, {1: v("1-t20")})             # higher id commits first
    s.begin(15, {2: v("2-t15")})
    assert s.judge({**INITIAL, 1: v("1-t20")}).ok
    verdict = s.judge({**INITIAL, 2: v("2-t15")})   # 15 without 20 is a hole
    assert not verdict.ok, "trx 15 applied without the earlier trx 20 was accepted"


# -- acknowledged commit lost -------------------------------------------------------------------
def test_lost_acknowledged_commit_is_LOST_and_names_trx_and_row():
    verdict = two_acked().judge(AFTER_10)
    assert not verdict.ok
    assert verdict.kind == LOST
    assert "acknowledged commit lost" in verdict.summary
    assert "trx [11]" in verdict.summary
    assert "state after commit 1" in verdict.summary
    text = verdict.explain()
    assert text.startswith(f"[{LOST}] {KIND_NAMES[LOST]}: ")
    assert f"{T}:2 expected" in text and f"{T}:4 expected" in text
    assert "found absent" in text                   # row 4 was inserted by trx 11
    row4 = next(d for d in verdict.details if d.startswith(f"{T}:4 "))
    assert "no committed trx" not in row4, row4     # absent before trx 11: the initial state
    assert "trx 11 (acknowledged, commit #2)" in row4, row4
    assert "allowed states: after commit 2..2" in text
    assert verdict.rule == "oracle.durable_commit_lost"
    assert verdict.signature() == f"{LOST}:oracle.durable_commit_lost"


def test_all_acknowledged_commits_lost_names_every_trx():
    verdict = two_acked().judge(INITIAL)
    assert not verdict.ok and verdict.kind == LOST
    assert "trx [10, 11]" in verdict.summary


def test_lost_row_of_an_acknowledged_commit_is_LOST():
    # not an older prefix state: row 2 reverted, row 4 kept
    verdict = two_acked().judge({**AFTER_11, 2: v("2-init")})
    assert not verdict.ok
    assert verdict.kind == LOST
    assert verdict.rule == "oracle.partial_transaction"
    assert f"trx 11 (commit #2) is half applied: {T}:4 hold its values, {T}:2 do not" \
        in verdict.details
    assert "matches no committed prefix" in verdict.summary
    assert f"{T}:2 expected" in verdict.explain()


def test_explanation_attributes_the_acknowledged_value_and_the_initial_value():
    """Row 2 reverted to its initial (committed, loaded at setup) value: the explanation must
    not call that value "written by no committed trx" (it is the committed initial state), and
    it names the acknowledged transaction whose write is missing."""
    verdict = two_acked().judge({**AFTER_11, 2: v("2-init")})
    line = next(d for d in verdict.details if d.startswith(f"{T}:2 "))
    assert "found 'value-2-init'" in line
    assert "no committed trx" not in line, line
    assert "initial state" in line, line
    assert "trx 11 (acknowledged, commit #2)" in line, line


# -- uncommitted data visible -------------------------------------------------------------------
def test_uncommitted_write_visible_is_UNCOMMITTED():
    s = two_acked()
    rows = {**AFTER_11, 3: v("3-t12-never-committed")}
    verdict = s.judge(rows, writers={(T, 3, v("3-t12-never-committed")):
                                     "trx 12 (never committed)"})
    assert not verdict.ok
    assert verdict.kind == UNCOMMITTED and verdict.rule == "oracle.uncommitted_visible"
    assert "1 rows differ" in verdict.summary
    text = verdict.explain()
    assert f"{T}:3 expected" in text
    assert "trx 12 (never committed)" in text


def test_uncommitted_insert_visible_without_writers_says_no_committed_trx():
    verdict = two_acked().judge({**AFTER_11, 99: v("phantom")})
    assert not verdict.ok and verdict.kind == UNCOMMITTED
    assert f"{T}:99 expected absent" in verdict.explain()
    assert "no committed trx" in verdict.explain()


def test_write_of_a_trx_that_began_commit_after_the_crash_is_UNCOMMITTED():
    s = two_acked()
    crash = s.end
    s.begin(12, {3: v("3-t12")})                  # commit-begin after the crash position
    s.ack(12)
    assert s.judge(AFTER_11, position=crash).ok
    verdict = s.judge({**AFTER_11, 3: v("3-t12")}, position=crash)
    assert not verdict.ok
    assert verdict.kind == UNCOMMITTED


# -- in-doubt commits -----------------------------------------------------------------------------
def in_doubt() -> Script:
    s = two_acked()
    s.begin(12, {3: v("3-t12"), 5: v("5-t12")})   # commit-begin, no commit-ack
    return s


AFTER_12 = {**AFTER_11, 3: v("3-t12"), 5: v("5-t12")}


def test_in_doubt_commit_accepted_absent():
    verdict = in_doubt().judge(AFTER_11)
    assert verdict.ok, verdict.explain()


def test_in_doubt_commit_accepted_applied():
    verdict = in_doubt().judge(AFTER_12)
    assert verdict.ok, verdict.explain()


@pytest.mark.parametrize("rows", [
    {**AFTER_11, 3: v("3-t12")},                # row 3 applied, row 5 not
    {**AFTER_11, 5: v("5-t12")},                # row 5 applied, row 3 not
], ids=["first-half", "second-half"])
def test_in_doubt_commit_half_applied_is_rejected(rows):
    verdict = in_doubt().judge(rows)
    assert not verdict.ok, "a half-applied in-doubt transaction was accepted"
    assert verdict.kind in (LOST, UNCOMMITTED)
    assert verdict.rule == "oracle.partial_transaction"
    assert "matches no committed prefix" in verdict.summary
    text = verdict.explain()
    assert "trx 12 (in doubt, commit #3)" in text, text      # the half-applied transaction
    assert "allowed states: after commit 2..3" in text


def test_in_doubt_commit_does_not_excuse_losing_acknowledged_ones():
    verdict = in_doubt().judge(AFTER_10)
    assert not verdict.ok and verdict.kind == LOST
    assert "trx [11]" in verdict.summary


# -- non-prefix states ----------------------------------------------------------------------------
def test_later_commit_present_earlier_absent_is_rejected():
    s = two_acked()
    s.begin(12, {3: v("3-t12")})                 # in doubt
    s.begin(13, {5: v("5-t13")})                 # in doubt, later in commit order
    assert s.judge(AFTER_11).ok
    assert s.judge({**AFTER_11, 3: v("3-t12")}).ok
    assert s.judge({**AFTER_11, 3: v("3-t12"), 5: v("5-t13")}).ok
    verdict = s.judge({**AFTER_11, 5: v("5-t13")})     # hole: 13 without 12
    assert not verdict.ok, "a state with a hole in the commit order was accepted"
    assert verdict.rule == "oracle.no_committed_prefix"
    text = verdict.explain()
    assert f"{T}:3 expected" in text or f"{T}:5 expected" in text
    assert "trx 12 (in doubt, commit #3)" in text or "trx 13 (in doubt, commit #4)" in text


def test_acknowledged_later_commit_with_earlier_in_doubt_missing_is_rejected():
    # trx 12 began commit first but was never acknowledged; trx 13 was: 12 must be there too
    s = two_acked()
    s.begin(12, {3: v("3-t12")})
    s.begin(13, {5: v("5-t13")})
    s.ack(13)
    assert s.judge({**AFTER_11, 3: v("3-t12"), 5: v("5-t13")}).ok
    verdict = s.judge({**AFTER_11, 5: v("5-t13")})
    assert not verdict.ok
    assert f"{T}:3 expected" in verdict.explain()


def test_same_row_rewritten_by_successive_commits():
    s = Script(INITIAL)
    s.begin(10, {1: v("1-t10")})
    s.begin(11, {1: v("1-t11")})
    for rows in (INITIAL, {**INITIAL, 1: v("1-t10")}, {**INITIAL, 1: v("1-t11")}):
        assert s.judge(rows).ok
    assert not s.judge({**INITIAL, 1: v("1-other")}).ok


def test_explanation_is_bounded_for_many_differing_rows():
    s = Script(INITIAL)
    s.begin(10, {k: v(f"{k}-t10") for k in range(100, 120)})
    s.ack(10)
    verdict = s.judge(INITIAL)
    assert not verdict.ok and verdict.kind == LOST
    verdict = s.judge({**INITIAL, **{k: v(f"{k}-junk") for k in range(100, 120)}})
    assert not verdict.ok
    assert "... and 12 more rows differ" in verdict.explain()


# -- markers from the real workload ------------------------------------------------------------------
def test_oracle_on_a_real_workload_trace():
    """The workload's markers, read by the oracle, describe what the engine committed."""
    settings = WorkloadSettings(table_size=20)
    steps = [["update_non_index", 0, 5, 11], ["delete_insert", 0, 6, 12], ["commit", 0],
             ["insert", 1, 30, 13], ["commit", 1],
             ["update_non_index", 2, 7, 14]]          # slot 2 never commits
    run = run_workload(settings, steps)
    markers = run.trace.markers()
    labels = [m.label for _, m in markers]
    assert labels == ["initial-state", "commit-begin", "commit-ack", "commit-begin",
                      "commit-ack"]
    initial, commits = promised(markers, len(run.trace))
    assert len(initial) == 20 and all(c.acked for c in commits)
    assert {k for c in commits for _, k, _ in c.writes} == {5, 6, 30}

    # everything the program wrote reaches the disk (a process kill): recovery rolls back slot 2
    eng = Engine.open(SimDisk(settings.device, run.disk.live_image()), settings.engine_config())
    eng.finish_background_rollback()
    rows = {(TABLE, k): val for k, val in eng.all_rows(TABLE).items()}
    verdict = check_committed_state(markers, len(run.trace), rows, run.writers)
    assert verdict.ok, verdict.explain()

    # the uncommitted update of row 7 made visible: named, with its writer
    uncommitted = [val for (t, k, val), who in run.writers.items()
                   if k == 7 and "never committed" in who]
    assert uncommitted
    bad = check_committed_state(markers, len(run.trace), {**rows, (TABLE, 7): uncommitted[0]},
                                run.writers)
    assert not bad.ok and bad.kind == UNCOMMITTED
    assert f"{TABLE}:7" in bad.explain() and "never committed" in bad.explain()

    # the acknowledged insert of row 30 lost
    lost = dict(rows)
    del lost[(TABLE, 30)]
    bad = check_committed_state(markers, len(run.trace), lost, run.writers)
    assert not bad.ok and bad.kind == LOST
    assert f"{TABLE}:30" in bad.explain()


# -- XA ------------------------------------------------------------------------------------------
def _xa_disk(*events):
    d = SimDisk()
    d.mark("initial-state", rows=(("t", 1, b"a"),))
    for label, kw in events:
        d.mark(label, **kw)
    return d


def _xa_verdict(d, found, power_loss=True):
    from tornpage.checkers.oracle import check_prepared
    return check_prepared(d.trace.markers(), len(d.trace), found, power_loss)


W = (("t", 1, b"x"),)
FOUND = {7: {"rows": {("t", 1): b"x"}, "unlocked": []}}


def test_prepares_in_doubt_may_be_found_either_way():
    begun = _xa_disk(("xa-prepare-begin", {"trx": 7, "writes": W}))
    committing = _xa_disk(("xa-prepare-begin", {"trx": 7, "writes": W}),
                          ("xa-prepare", {"trx": 7, "lsn": 10}),
                          ("commit-begin", {"trx": 7, "writes": W}))
    rolling = _xa_disk(("xa-prepare-begin", {"trx": 7, "writes": W}),
                       ("xa-prepare", {"trx": 7, "lsn": 10}), ("xa-rollback-begin", {"trx": 7}))
    mode0 = _xa_disk(("xa-prepare-begin", {"trx": 7, "writes": W}),
                     ("xa-prepare", {"trx": 7, "lsn": 10, "mode": 0}))
    for d in (begun, committing, rolling, mode0):
        assert _xa_verdict(d, {}).ok and _xa_verdict(d, FOUND).ok
    # mode 0 after the log was made durable past the prepare: it must be there
    mode0.mark("log-durable", lsn=20)
    assert _xa_verdict(mode0, {}).rule == "oracle.xa_prepared_lost"


def test_resolved_prepares_must_not_come_back():
    committed = _xa_disk(("xa-prepare-begin", {"trx": 7, "writes": W}),
                         ("xa-prepare", {"trx": 7, "lsn": 10}),
                         ("commit-begin", {"trx": 7, "writes": W}),
                         ("commit-ack", {"trx": 7, "lsn": 12}))
    rolled = _xa_disk(("xa-prepare-begin", {"trx": 7, "writes": W}),
                      ("xa-prepare", {"trx": 7, "lsn": 10}), ("xa-rollback-begin", {"trx": 7}),
                      ("xa-rollback", {"trx": 7, "lsn": 14}))
    for d in (committed, rolled):
        assert _xa_verdict(d, {}).ok
        assert _xa_verdict(d, FOUND).rule == "oracle.xa_prepared_unexpected"
    # a read-only prepare (LSN 0) leaves nothing to find
    ro = _xa_disk(("xa-prepare-begin", {"trx": 8, "writes": ()}), ("xa-prepare", {"trx": 8, "lsn": 0}))
    assert _xa_verdict(ro, {}).ok


# -- the rows of the tables DDL made ----------------------------------------------------------------
def _ddl_markers(*marks):
    d = SimDisk()
    d.mark("initial-state", rows=(), tables=("sbtest1",))
    for label, attrs in marks:
        d.mark(label, **attrs)
    return d.trace.markers(), len(d.trace)


_ROWS = ((1, b"a"), (2, b"b"))


def test_a_load_in_doubt_may_be_whole_or_absent_never_half():
    markers, pos = _ddl_markers(("ddl-begin", {"op": "create", "table": "sbtest2"}),
                                ("ddl-ack", {}),
                                ("load-begin", {"table": "sbtest2", "trx": 7, "rows": _ROWS}))
    assert check_ddl_rows(markers, pos, {"sbtest2": {}}).ok
    assert check_ddl_rows(markers, pos, {"sbtest2": dict(_ROWS)}).ok
    v = check_ddl_rows(markers, pos, {"sbtest2": {1: b"a"}})
    assert v.rule == "oracle.ddl_load_lost" and "half a transaction" in v.summary


def test_a_load_follows_its_table_through_rename_and_ends_with_drop():
    load = [("ddl-begin", {"op": "create", "table": "sbtest2"}), ("ddl-ack", {}),
            ("load-begin", {"table": "sbtest2", "trx": 7, "rows": _ROWS}),
            ("load-ack", {"trx": 7, "lsn": 100})]
    rename = ("ddl-begin", {"op": "rename", "table": "sbtest2", "new": "sbtest3"})
    markers, pos = _ddl_markers(*load, rename)                   # the rename in doubt
    for name in ("sbtest2", "sbtest3"):
        assert check_ddl_rows(markers, pos, {name: dict(_ROWS)}).ok
        assert check_ddl_rows(markers, pos, {name: {}}).rule == "oracle.ddl_load_lost"
    # dropped and created again: the new table starts empty, whatever the old one held
    markers, pos = _ddl_markers(*load, ("ddl-begin", {"op": "drop", "table": "sbtest2"}),
                                ("ddl-ack", {}),
                                ("ddl-begin", {"op": "create", "table": "sbtest2"}),
                                ("ddl-ack", {}))
    assert check_ddl_rows(markers, pos, {"sbtest2": {}}).ok
    assert check_ddl_rows(markers, pos,
                          {"sbtest2": dict(_ROWS)}).rule == "oracle.ddl_table_rows_wrong"


def test_a_load_acknowledged_under_mode_2_survives_a_power_loss_only_if_durable():
    marks = [("ddl-begin", {"op": "create", "table": "sbtest2"}), ("ddl-ack", {}),
             ("load-begin", {"table": "sbtest2", "trx": 7, "rows": _ROWS}),
             ("load-ack", {"trx": 7, "lsn": 100, "mode": 2})]
    markers, pos = _ddl_markers(*marks)
    assert check_ddl_rows(markers, pos, {"sbtest2": {}}, power_loss=True).ok
    assert not check_ddl_rows(markers, pos, {"sbtest2": {}}, power_loss=False).ok
    markers, pos = _ddl_markers(*marks, ("log-durable", {"lsn": 100}))
    assert not check_ddl_rows(markers, pos, {"sbtest2": {}}, power_loss=True).ok


def test_a_load_ack_without_its_begin_is_refused():
    markers, pos = _ddl_markers(("load-ack", {"trx": 9, "lsn": 1}))
    with pytest.raises(MarkerError, match="load-ack for trx 9"):
        check_ddl_rows(markers, pos, {})
