"""``tornpage selftest``'s verdicts: a killed mutant, a survivor, and a mutant shown equivalent by
its experiment (the clean engine run on the mutant's campaigns, every crash state's outcome
compared, the mutant's seam watched).  Each check here can fail: the outcome comparison sees a
mutant that changes an outcome, and each watcher fires on the input its mutant answers
differently."""
from __future__ import annotations

import contextlib
from unittest import mock

import pytest

from tornpage.campaigns import mutants, selftest as st
from tornpage.campaigns.mutants import MUTANTS, Divergence
from tornpage.campaigns.runner import run_campaign
from tornpage.engine import page as fil_page
from tornpage.engine import recovery
from tornpage.engine.errors import RecoveryError

EQUIVALENT = [name for name, m in MUTANTS.items() if m.equivalent]


def test_every_equivalence_argument_has_its_experiment():
    assert EQUIVALENT
    for name in EQUIVALENT:
        assert MUTANTS[name].differential is not None, name


@pytest.mark.parametrize("name", EQUIVALENT)
def test_an_equivalent_mutant_changes_no_outcome(tmp_path, name):
    r = st.run_mutant(name, examples=4, seed=0, artifacts_dir=str(tmp_path), shrink_steps=0)
    assert not r["killed"]
    e = r["experiment"]
    assert e["outcomes_compared"] == r["crash_states"] > 0
    assert e["outcomes_differ"] == 0, e["first_difference"]
    assert e["seam_calls"] > 0          # the seam was reached: the experiment saw something
    assert r["equivalent"] is True and e["argument"] == MUTANTS[name].equivalent


def test_the_outcome_comparison_sees_a_mutant_that_changes_an_outcome(tmp_path):
    # a killable mutant's campaign against the clean engine's: the logs must differ
    name = "bg-rollback-off-by-one"
    log: list = []
    with st.recorded_outcomes(log):
        res = run_campaign(st._mutant_config(name, 0, 4, str(tmp_path), 0, name))
    assert res.findings
    e = st.equivalence(name, [0], 4, str(tmp_path), log,
                       differential=lambda d: contextlib.nullcontext())
    assert e["outcomes_differ"] > 0 and e["first_difference"]
    # ... and the same campaign against itself gives equal logs
    again: list = []
    with st.recorded_outcomes(again):
        run_campaign(st._mutant_config(name, 0, 4, str(tmp_path), 0, name))
    assert again == log


STATE = ("state", "tracehash", "plan", "[]", "passed", None)


def test_the_comparison_sees_one_differing_table_state():
    clean = [("rows", "a"), STATE, ("rows", "b"), STATE]
    assert st.compare_outcomes(clean, list(clean)) == (2, 0, None)
    mutant = [("rows", "a"), STATE, ("rows", "c"), STATE]     # the second state's rows differ
    compared, differ, first = st.compare_outcomes(clean, mutant)
    assert (compared, differ) == (2, 1) and first.startswith("crash state 2 of 2")


def test_the_comparison_sees_another_trace_plan_or_verdict():
    clean = [("rows", "a"), STATE]
    for i, other in ((1, "othertrace"), (2, "otherplan"), (4, "refused")):
        changed = list(STATE)
        changed[i] = other
        assert st.compare_outcomes(clean, [("rows", "a"), tuple(changed)])[1] == 1


def test_the_comparison_counts_a_state_only_one_run_checked():
    clean = [("rows", "a"), STATE, ("rows", "b"), STATE]
    compared, differ, first = st.compare_outcomes(clean, clean[:2])
    assert (compared, differ) == (1, 1) and "checked no such state" in first


@pytest.mark.parametrize("change", [dict(seam_calls=0), dict(outcomes_compared=0),
                                    dict(interrupted=True), dict(outcomes_differ=1)])
def test_an_experiment_without_evidence_backs_no_argument(change):
    e = dict(seam_calls=5, diverged=0, outcomes_compared=3, outcomes_differ=0, interrupted=False)
    assert st.shown_equivalent(e)
    assert not st.shown_equivalent({**e, **change})
    assert not st.shown_equivalent(None)


def test_an_argued_mutant_whose_outcomes_differ_is_a_survivor(tmp_path):
    """A mutant that no oracle flags but that changes the IO (it fsyncs the doublewrite area
    twice) and carries an equivalence argument: the experiment must not back it."""
    from tornpage.engine import dblwr
    real = dblwr.Doublewrite._sync_area

    def twice(self):
        real(self)
        real(self)
    fake = mutants.Mutant("fsync-twice", 0, "d", "nothing",
                          lambda: mock.patch.object(dblwr.Doublewrite, "_sync_area", twice),
                          differential=lambda d: mock.patch.object(
                              dblwr.Doublewrite, "_sync_area",
                              lambda self: (d.reached(True, "one fsync"), real(self))),
                          equivalent="argued for the test")
    with mock.patch.dict(st.MUTANTS, {"fsync-twice": fake}):
        r = st.run_mutant("fsync-twice", examples=4, seed=0, artifacts_dir=str(tmp_path),
                          shrink_steps=0)
    assert not r["killed"] and not r["equivalent"]
    assert r["experiment"]["outcomes_differ"] > 0 and r["experiment"]["first_difference"]


def test_an_equivalence_argument_without_its_watcher_is_refused():
    with pytest.raises(TypeError, match="differential watcher"):
        mutants.Mutant("m", 0, "d", "e", contextlib.nullcontext, equivalent="why")


def test_the_checksum_watcher_fires_on_one_damaged_checksum_field():
    page = bytearray(4096)
    fil_page.put_u32(page, fil_page.FIL_PAGE_OFFSET, 3)
    page = bytearray(fil_page.stamp_for_write(bytes(page), 1000))
    assert fil_page.verify(bytes(page), 4096) == fil_page.PAGE_OK
    d = Divergence()
    with MUTANTS["either-checksum-field"].differential(d):
        assert fil_page.verify(bytes(page), 4096) == fil_page.PAGE_OK
        assert d.calls == 1 and d.diverged == 0
        page[0] ^= 1                    # the header field only: the trailer field still matches
        assert fil_page.verify(bytes(page), 4096) != fil_page.PAGE_OK    # the clean answer
    assert d.calls == 2 and d.diverged == 1 and "with either field" in d.first


def test_the_marker_watcher_fires_when_the_marker_is_missing():
    class Checkpoint:
        lsn = 4096

    class Res:                          # a scan that reached no MLOG_CHECKPOINT marker
        mtrs: list = []
        checkpoint = Checkpoint()
        recovered_lsn = 8192
    real = recovery.check_checkpoint_marker
    d = Divergence()
    with MUTANTS["redo-ignored-without-checkpoint-marker"].differential(d):
        with pytest.raises(RecoveryError, match="MLOG_CHECKPOINT"):   # the clean answer
            recovery.check_checkpoint_marker(None, Res())
    assert d.calls == 1 and d.diverged == 1 and "4096" in d.first
    assert recovery.check_checkpoint_marker is real


def test_selftest_counts_an_equivalent_mutant_apart_from_survivors(tmp_path):
    real = MUTANTS["either-checksum-field"]     # not found in 4 workloads, argued equivalent
    argued = mutants.Mutant(real.name, real.bug, real.description, real.expect, real.patch,
                            differential=real.differential, equivalent="an argument")
    chosen = {"bg-rollback-off-by-one": MUTANTS["bg-rollback-off-by-one"],
              "either-checksum-field": argued}
    with mock.patch.object(st, "MUTANTS", chosen), \
            mock.patch.object(st, "DEVICES", {"sector512": None}):
        report = st.selftest(examples=4, clean_examples=1, seeds=1, shrink_steps=0,
                             artifacts_dir=str(tmp_path))
    assert report["killed"] == 1 and report["equivalent"] == ["either-checksum-field"]
    assert report["survivors"] == [] and report["passed"] is True
    # a mutant with no equivalence argument that survives is a survivor
    plain = dict(chosen, **{"either-checksum-field": mutants.Mutant(
        "either-checksum-field", 10, "d", "e", MUTANTS["either-checksum-field"].patch)})
    with mock.patch.object(st, "MUTANTS", plain), \
            mock.patch.object(st, "DEVICES", {"sector512": None}):
        report = st.selftest(examples=4, clean_examples=1, seeds=1, shrink_steps=0,
                             artifacts_dir=str(tmp_path))
    assert report["survivors"] == ["either-checksum-field"] and report["passed"] is False
