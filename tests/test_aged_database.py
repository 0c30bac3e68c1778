"""Aged databases in campaigns: workloads whose LSN and trx id counters start near a width
boundary (campaigns.workload.database_age_strategy), the probes that count the crossings, and
what an explanation says of them.  The engine side is in tests/test_engine.py."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, find, given
from hypothesis import settings as hyp_settings
from tornpage.campaigns.crashcheck import check_crash_state
from tornpage.campaigns.workload import (
    LSN_BOUNDARIES,
    TRX_ID_BOUNDARIES,
    WorkloadSettings,
    age_words,
    crossed,
    database_age_strategy,
    run_workload,
    setup_redo_bytes,
    workload_probes,
)
from tornpage.engine.log import LOG_START_LSN
from tornpage.engine.trx_sys import TRX_SYS_TRX_ID_WRITE_MARGIN
from tornpage.faultfs import DROP, Choice, CrashPlan, CrashStateBuilder

# a workload that writes well over 64 KiB of redo in several transactions
STEPS = [["bulk_insert", 0, 1000, 60, 1], ["commit", 0], ["bulk_update", 1, 5, 40, 2],
         ["commit", 1], ["update_index", 2, 7, 3], ["commit", 2], ["checkpoint"],
         ["bulk_insert", 0, 2000, 60, 3], ["commit", 0], ["bulk_delete", 1, 1000, 30],
         ["commit", 1]]


def _setup_and_end_lsn() -> tuple[int, int]:
    run = run_workload(WorkloadSettings(), STEPS)
    return run.lsn_span


def test_the_age_shrinks_to_a_new_database():
    assert find(database_age_strategy(), lambda age: True) == (LOG_START_LSN, 0)


@hyp_settings(max_examples=300, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
@given(database_age_strategy())
def test_every_age_drawn_is_a_valid_engine_config(age):
    lsn, trx_id = age
    s = WorkloadSettings(initial_lsn=lsn, initial_trx_id=trx_id)
    cfg = s.engine_config()
    assert cfg.initial_lsn == lsn and lsn % 512 == 0
    assert lsn == LOG_START_LSN or any(0 < (1 << b) - lsn <= 64 * 1024 for b in LSN_BOUNDARIES)
    first = trx_id + TRX_SYS_TRX_ID_WRITE_MARGIN
    assert trx_id == 0 or any(0 < (1 << b) - first <= 8 for b in TRX_ID_BOUNDARIES)


def test_ages_near_each_boundary_are_drawn():
    seen = set()
    for bits in LSN_BOUNDARIES:
        seen.add(find(database_age_strategy(), lambda a, b=bits: a[0] > 1 << (b - 1))[0] >> 20)
    assert len(seen) == len(LSN_BOUNDARIES)
    find(database_age_strategy(), lambda a: a[1] > 0)


@pytest.mark.parametrize("bits", LSN_BOUNDARIES)
def test_an_aged_workload_crosses_its_boundary_and_its_crash_states_pass(bits):
    """The LSN crosses 2**bits halfway through the workload and the trx ids cross 2**32 in
    it: the probes count both, the explanation names them, and crash states all along the
    workload (everything kept, or every pending write dropped) pass every check."""
    setup, end = _setup_and_end_lsn()
    start = (1 << bits) - ((setup + end) // 2 - LOG_START_LSN)
    start -= start % 512
    s = WorkloadSettings(initial_lsn=start,
                         initial_trx_id=(1 << 32) - TRX_SYS_TRX_ID_WRITE_MARGIN - 3)
    run = run_workload(s, STEPS)
    assert run.stopped is None
    assert crossed(run.lsn_span, bits) and crossed(run.trx_id_span, 32)
    probes = workload_probes(run)
    assert probes[f"lsn_crossed_2_{bits}"] == 1 and probes["trx_id_crossed_2_32"] == 1
    assert f"crossing LSN 2**{bits} and trx id 2**32" in age_words(run)
    b = CrashStateBuilder(run.base, run.trace, run.disk.profile)
    checked = 0
    for pos in range(run.setup_end + 1, len(run.trace) + 1, 9):
        drop = tuple((i, Choice(DROP)) for i in b.pending(pos))
        for plan in (CrashPlan(pos), CrashPlan(pos, drop)):
            out = check_crash_state(run, plan)
            assert out.verdict.ok, (pos, out.verdict.explain())
            checked += 1
    assert checked > 20


@pytest.mark.parametrize("table_size", [20, 400])
def test_an_aged_lsn_boundary_lies_after_the_setup(table_size):
    """The age is measured back from the end of the setup (setup_redo_bytes), so the boundary
    is crossed in the workload, where crash states are cut, even after a long setup."""
    s = WorkloadSettings(table_size=table_size)
    setup = setup_redo_bytes(s)
    assert setup > 0
    for gap in (1, 7):                      # blocks between the setup's end and 2**32
        want = (1 << 32) - setup - 512 * gap
        want -= want % 512
        lsn = find(database_age_strategy(lambda: setup), lambda a, w=want: a[0] == w)[0]
        run = run_workload(WorkloadSettings(table_size=table_size, initial_lsn=lsn), STEPS)
        assert run.lsn_span[0] < 1 << 32 < run.lsn_span[1], (gap, run.lsn_span)
        assert workload_probes(run)["lsn_crossed_2_32"] == 1


def test_a_new_database_has_no_age_words_and_crosses_nothing():
    run = run_workload(WorkloadSettings(), STEPS[:2])
    assert age_words(run) is None
    probes = workload_probes(run)
    assert not any(k.startswith(("lsn_crossed", "trx_id_crossed")) for k in probes)


def test_settings_without_an_age_are_a_new_database_and_a_bad_age_is_refused():
    d = WorkloadSettings().to_json()
    del d["initial_lsn"], d["initial_trx_id"]          # an artifact from before aging
    s = WorkloadSettings.from_json(d)
    assert (s.initial_lsn, s.initial_trx_id) == (LOG_START_LSN, 0)
    for bad in ({"initial_lsn": LOG_START_LSN + 1}, {"initial_trx_id": -5}):
        with pytest.raises(ValueError):
            WorkloadSettings.from_json({**WorkloadSettings().to_json(), **bad})
