"""XA PREPARE in the campaigns, and new transactions while background rollback is running.

* workloads prepare transactions (``["prepare", slot]``, placed before a commit step: two phase
  commit; or at the end: prepared up to the crash), with markers the oracle reads;
* every crash state of such a workload recovers each prepared transaction as PREPARED with its
  writes and locks (or, in doubt, either way), and resolving it gives the right state;
* an engine that loses the PREPARED state is caught (``oracle.xa_prepared_lost``);
* new transactions run during background rollback: lock conflicts with resurrected rows are
  expected, consistent reads see committed rows only, their commits survive a crash after them;
* artifacts keep the new-work seed, and replays are deterministic.
"""
from __future__ import annotations

import pytest

from tornpage.campaigns import crashcheck
from tornpage.campaigns.artifacts import Artifact, from_dict
from tornpage.campaigns.workload import (WorkloadSettings, prepare_inserts, run_workload,
                                         validate_steps, with_prepares)
from tornpage.checkers.oracle import xa_promised
from tornpage.engine import trx as trx_mod
from tornpage.faultfs import CrashPlan

S = WorkloadSettings(table_size=20)
STEPS = [["update_non_index", 0, 5, 11], ["insert", 0, 30, 1], ["prepare", 0],
         ["update_non_index", 1, 7, 12], ["prepare", 1], ["commit", 2],      # XA COMMIT
         ["update_index", 2, 9, 3], ["prepare", 2], ["rollback", 0],         # XA ROLLBACK
         ["update_non_index", 0, 11, 4], ["checkpoint"]]


def test_prepare_steps_are_valid_and_placed_before_commits():
    assert validate_steps([["prepare", 1]]) == [["prepare", 1]]
    with pytest.raises(ValueError):
        validate_steps([["prepare"]])
    steps = [["insert", 1, 30, 0], ["commit", 1], ["point_select", 0, 3]]
    assert with_prepares(steps, [(0, 2)]) == [["insert", 1, 30, 0], ["prepare", 1],
                                              ["commit", 1], ["point_select", 0, 3]]
    assert with_prepares(steps, [(2, 0)])[-1] == ["prepare", 0]
    assert prepare_inserts(7, 10) == prepare_inserts(7, 10)
    assert 1 <= len(prepare_inserts(7, 10)) <= 3


def test_workload_marks_prepares_and_their_resolution():
    run = run_workload(S, STEPS)
    assert run.stopped is None
    labels = [m.label for _, m in run.trace.markers()]
    assert labels.count("xa-prepare-begin") == labels.count("xa-prepare") == 3
    assert "xa-rollback-begin" in labels and "xa-rollback" in labels
    xa = xa_promised(run.trace.markers(), len(run.trace))
    assert len(xa) == 3
    states = sorted((p.committed, p.rolled_back, p.must_be_prepared) for p in xa.values())
    assert states == [(False, False, True), (False, True, False), (True, False, False)]
    assert run.engine_stats["trx_prepared"] - run.setup_stats.get("trx_prepared", 0) == 3


def _every_point(run):
    return crashcheck.crash_points(run)


def test_every_crash_point_of_an_xa_workload_passes():
    run = run_workload(S, STEPS)
    seen = set()
    for pos in _every_point(run):
        out = crashcheck.check_crash_state(run, CrashPlan(pos))
        assert out.verdict.ok, (pos, out.verdict.explain())
        seen |= {k for k, v in out.probes.items() if v}
    assert {"xa_prepared_recovered", "xa_resolved_commit", "xa_resolved_rollback"} <= seen


def test_a_lost_prepared_state_is_found(monkeypatch):
    """An engine whose XA PREPARE changes nothing on disk: the transaction comes back ACTIVE
    and is rolled back."""
    real = trx_mod.TrxSys.prepare

    def prepare(self, trx):
        lsn = self.engine.log.end_lsn
        trx.state = trx_mod.PREPARED
        trx.read_view = None
        self.engine.log.write_up_to(lsn, flush=True)
        return lsn
    monkeypatch.setattr(trx_mod.TrxSys, "prepare", prepare)
    run = run_workload(S, STEPS)
    monkeypatch.setattr(trx_mod.TrxSys, "prepare", real)
    out = crashcheck.check_crash_state(run, CrashPlan(len(run.trace)))
    assert out.verdict.rule == "oracle.xa_prepared_lost", out.verdict.explain()


@pytest.mark.parametrize("seed", range(4))
def test_new_work_during_background_rollback(seed):
    run = run_workload(S, STEPS)
    out = crashcheck.check_crash_state(run, CrashPlan(len(run.trace)), new_work=seed)
    assert out.verdict.ok, out.verdict.explain()
    assert out.probes["new_work_during_rollback"] == 1 and out.new_work == seed
    # ... and a crash after it (everything kept, then a crash at each third position)
    for frac in (1, 2, 3):
        def draw(depth, frac=frac):
            return (lambda nb: CrashPlan(len(nb.trace) * frac // 3)) if depth == 0 else None
        out = crashcheck.check_crash_state(run, CrashPlan(len(run.trace)), new_work=seed,
                                           draw_nested=draw)
        assert out.verdict.ok, (frac, out.verdict.explain())
        assert out.probes["crash_after_new_work"] == 1


def test_new_work_is_deterministic_and_kept_in_artifacts():
    run = run_workload(S, STEPS)
    a = crashcheck.check_crash_state(run, CrashPlan(len(run.trace)), new_work=5)
    b = crashcheck.check_crash_state(run_workload(S, STEPS), CrashPlan(len(run.trace)),
                                     new_work=5)
    assert a.probes == b.probes
    art = Artifact(seed=1, settings=S, steps=STEPS, plan=CrashPlan(3), mutant=None,
                   trace_hash=run.trace.hash(), finding={}, new_work=5)
    assert from_dict(art.to_json()).new_work == 5
    art.new_work = None
    assert "recovery_new_work" not in art.to_json()
    assert from_dict(art.to_json()).new_work is None
