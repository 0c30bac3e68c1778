"""innodb_flush_log_at_trx_commit 0, 1 and 2: the engine (what a commit writes and fsyncs, the
background log writer), the oracle (what an acknowledged commit promises, from the markers, for
a power loss and for a process kill) and campaigns (every mode runs clean; the planted mode-2
bug is found).
"""
from __future__ import annotations

import json
import traceback

import pytest
from click.testing import CliRunner
from hypothesis import given, settings as hyp_settings

from tornpage.campaigns.artifacts import load
from tornpage.campaigns.cli import main
from tornpage.campaigns.crashcheck import check_crash_state
from tornpage.campaigns.workload import (TABLE, TRX_COMMIT_MODES, WorkloadSettings, run_workload,
                                settings_strategy, trx_commit_mode_strategy, workload_probes)
from tornpage.checkers.oracle import check_committed_state, promised
from tornpage.checkers.probes import WORKLOAD_PROBES
from tornpage.checkers.verdict import LOST
from tornpage.engine import Engine, EngineConfig
from tornpage.engine.config import ConfigError
from tornpage.engine.fil import LOG_FILE
from tornpage.faultfs import DROP, Choice, CrashPlan, CrashStateBuilder, SimDisk, Write, get_device
from tornpage.faultfs.trace import Fsync

T = "t"


def _engine(mode: int, device: str = "sector512"):
    disk = SimDisk(get_device(device))
    eng = Engine.create(disk, EngineConfig(page_size=4096, buffer_pool_pages=16,
                                           log_file_size=96 * 1024, doublewrite_batch_pages=8,
                                           page_cleaner_batch=4, flush_log_at_trx_commit=mode))
    eng.create_table(T)
    return disk, eng


def _commit_one(disk, eng, key: int = 1, value: bytes = b"v1"):
    """Commit one row; return (commit LSN, the operations the commit call issued)."""
    trx = eng.begin()
    trx.put(T, key, value)
    n = len(disk.trace)
    lsn = trx.commit()
    return lsn, disk.trace.ops[n:]


def _log_ops(ops, kind):
    return [op for op in ops if isinstance(op, kind) and op.path == LOG_FILE]


# -- the engine -------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [0, 1, 2])
def test_every_mode_is_a_valid_setting(mode):
    assert EngineConfig(flush_log_at_trx_commit=mode).flush_log_at_trx_commit == mode
    for bad in (3, -1):
        with pytest.raises(ConfigError):
            EngineConfig(flush_log_at_trx_commit=bad)


def test_mode_1_commit_writes_and_fsyncs_the_log():
    disk, eng = _engine(1)
    lsn, ops = _commit_one(disk, eng)
    assert _log_ops(ops, Write) and _log_ops(ops, Fsync)
    assert eng.log.flushed_lsn >= lsn and eng.log.written_lsn >= lsn
    assert "log_writer" not in eng.background_tasks


def test_mode_0_commit_writes_no_log():
    disk, eng = _engine(0)
    lsn, ops = _commit_one(disk, eng)
    assert lsn > 0
    assert ops == [], ops                     # nothing at all reaches the OS at commit
    assert eng.log.written_lsn < lsn and eng.log.flushed_lsn < lsn
    assert eng.stats["trx_commit_acked_not_durable"] >= 1


def test_mode_2_commit_writes_the_log_but_does_not_fsync_it():
    disk, eng = _engine(2)
    lsn, ops = _commit_one(disk, eng)
    assert _log_ops(ops, Write), ops
    assert not [op for op in ops if isinstance(op, Fsync)], ops
    assert eng.log.flushed_lsn < lsn <= eng.log.written_lsn


@pytest.mark.parametrize("mode", [0, 2])
def test_background_log_writer_makes_the_commit_durable(mode):
    disk, eng = _engine(mode)
    assert "log_writer" in eng.background_tasks
    lsn, _ = _commit_one(disk, eng)
    n = len(disk.trace)
    assert eng._bg_log_writer() is True
    assert _log_ops(disk.trace.ops[n:], Fsync)
    assert eng.log.flushed_lsn >= lsn and eng.log.written_lsn >= lsn
    assert eng._bg_log_writer() is False          # nothing left to flush
    # and in the rotation: background steps until quiet leave the log durable, counted
    disk, eng = _engine(mode)
    lsn, _ = _commit_one(disk, eng)
    for k in range(3):                            # three more commits, no page flushes between
        _commit_one(disk, eng, 10 + k, b"x")
    steps = 0
    while eng.background_work_pending():
        eng.run_background(1)
        steps += 1
        assert steps < 100
    assert eng.log.flushed_lsn >= eng.log.end_lsn
    assert eng.stats["bg_log_writer"] + eng.stats["bg_page_cleaner"] > 0


def test_page_flush_after_a_mode_2_write_fsyncs_everything_buffered():
    """A mode-2 commit writes the log without fsync; more redo is appended; then the WAL rule
    (a page flush) fsyncs up to an LSN already written: the whole buffer is written first, so
    the fsync covers it and the partial block can be closed."""
    disk, eng = _engine(2)
    lsn, _ = _commit_one(disk, eng)
    trx = eng.begin()
    trx.put(T, 2, b"more redo, not committed")
    assert eng.log.lsn > eng.log.written_lsn >= lsn > eng.log.flushed_lsn
    eng.log.write_up_to(lsn, flush=True)
    assert eng.log.flushed_lsn == eng.log.written_lsn == eng.log.lsn
    eng.buf.flush_all()
    eng.make_checkpoint()
    trx.commit()
    eng.close()
    eng2 = Engine.open(SimDisk(image=disk.live_image()), eng.config)
    assert eng2.all_rows(T) == {1: b"v1", 2: b"more redo, not committed"}


@pytest.mark.parametrize("mode, survives_kill", [(0, False), (1, True), (2, True)])
def test_what_a_process_kill_right_after_commit_keeps(mode, survives_kill):
    disk, eng = _engine(mode)
    _commit_one(disk, eng)
    eng2 = Engine.open(SimDisk(image=disk.live_image()), eng.config)   # everything written
    eng2.finish_background_rollback()
    assert (eng2.all_rows(T) == {1: b"v1"}) is survives_kill


def test_what_a_power_loss_right_after_a_mode_2_commit_may_lose():
    disk, eng = _engine(2)
    _commit_one(disk, eng)
    b = CrashStateBuilder(disk.base, disk.trace, disk.profile)
    pos = len(disk.trace)
    lose_all = CrashPlan(pos, tuple((i, Choice(DROP)) for i in b.pending(pos)))
    eng2 = Engine.open(SimDisk(image=b.build(lose_all)), eng.config)
    eng2.finish_background_rollback()
    assert eng2.all_rows(T) == {}


@pytest.mark.parametrize("mode", [0, 2])
def test_same_settings_same_trace(mode):
    s = WorkloadSettings(table_size=20, flush_log_at_trx_commit=mode)
    steps = [["update_non_index", 0, 5, 1], ["commit", 0], ["insert", 1, 40, 2],
             ["background", 6], ["commit", 1], ["checkpoint"], ["delete_insert", 2, 3, 4],
             ["commit", 2]]
    assert run_workload(s, steps).trace.hash() == run_workload(s, steps).trace.hash()


# -- the workload's markers -----------------------------------------------------------------------
STEPS = [["update_non_index", 0, 5, 11], ["commit", 0], ["insert", 1, 30, 13], ["commit", 1],
         ["background", 6], ["update_non_index", 2, 7, 14], ["commit", 2], ["checkpoint"]]


def test_mode_1_markers_are_as_before():
    run = run_workload(WorkloadSettings(table_size=20), STEPS)
    labels = {m.label for _, m in run.trace.markers()}
    assert labels == {"initial-state", "commit-begin", "commit-ack"}
    assert all(m.get("mode") is None for _, m in run.trace.markers("commit-ack"))


@pytest.mark.parametrize("mode", [0, 2])
def test_modes_0_and_2_mark_the_commit_lsn_and_the_log(mode):
    run = run_workload(WorkloadSettings(table_size=20, flush_log_at_trx_commit=mode), STEPS)
    acks = run.trace.markers("commit-ack")
    assert len(acks) == 3 and all(m.get("mode") == mode and m.get("lsn") > 0 for _, m in acks)
    written = [m.get("lsn") for _, m in run.trace.markers("log-written")]
    durable = [m.get("lsn") for _, m in run.trace.markers("log-durable")]
    assert written == sorted(set(written)) and durable == sorted(set(durable))  # only changes
    assert durable[-1] >= max(m.get("lsn") for _, m in acks)          # the checkpoint synced
    if mode == 2:     # each ack is followed by a log-written marker covering it
        for i, m in acks:
            nxt = next(w for j, w in run.trace.markers("log-written") if j > i)
            assert nxt.get("lsn") >= m.get("lsn")
    p = workload_probes(run)
    assert p[f"trx_commit_mode_{mode}"] == 1
    assert p["commit_acked_before_durable"] >= 3
    assert set(p) <= set(WORKLOAD_PROBES)


@pytest.mark.parametrize("mode", [0, 2])
@pytest.mark.parametrize("device", ["sector512", "process-kill"])
def test_every_prefix_crash_of_a_workload_passes(mode, device):
    """Every crash position, everything issued kept (a process kill there): the oracle accepts
    what recovery gives, in each mode."""
    s = WorkloadSettings(table_size=20, flush_log_at_trx_commit=mode, device=device)
    run = run_workload(s, STEPS)
    for pos in range(run.setup_end + 1, len(run.trace) + 1):
        out = check_crash_state(run, CrashPlan(pos))
        assert out.verdict.ok, (pos, out.verdict.explain())


# -- the oracle, on hand-made markers -----------------------------------------------------------
def v(tag: str) -> bytes:
    return f"value-{tag}".encode()


INITIAL = {1: v("1-init"), 2: v("2-init")}


class Script:
    """Markers on a real SimDisk, as campaigns/workload.py emits them."""

    def __init__(self) -> None:
        self.disk = SimDisk()
        self.disk.mark("initial-state",
                       rows=tuple((TABLE, k, val) for k, val in sorted(INITIAL.items())))

    def commit(self, trx: int, writes: dict, lsn: int | None = None, mode: int | None = None,
               ack: bool = True) -> None:
        self.disk.mark("commit-begin", trx=trx,
                       writes=tuple(sorted((TABLE, k, val) for k, val in writes.items())))
        if ack:
            attrs = {"trx": trx}
            if lsn is not None:
                attrs["lsn"] = lsn
            if mode is not None:
                attrs["mode"] = mode
            self.disk.mark("commit-ack", **attrs)

    def log(self, written: int | None = None, durable: int | None = None) -> None:
        if written is not None:
            self.disk.mark("log-written", lsn=written)
        if durable is not None:
            self.disk.mark("log-durable", lsn=durable)

    def judge(self, rows: dict, power_loss: bool, position: int | None = None):
        return check_committed_state(self.disk.trace.markers(),
                                     len(self.disk.trace) if position is None else position,
                                     {(TABLE, k): val for k, val in rows.items()},
                                     power_loss=power_loss)


AFTER_10 = {**INITIAL, 1: v("1-t10")}
AFTER_11 = {**AFTER_10, 2: v("2-t11")}


def _both(s: Script, power_loss: bool) -> tuple[bool, bool]:
    """(absent accepted, present accepted) for trx 10."""
    return s.judge(INITIAL, power_loss).ok, s.judge(AFTER_10, power_loss).ok


def test_mode_2_ack_above_the_durable_lsn_is_in_doubt_on_power_loss_promised_on_kill():
    s = Script()
    s.log(written=1000, durable=1000)
    s.commit(10, {1: v("1-t10")}, lsn=1500, mode=2)
    s.log(written=1500)
    assert _both(s, power_loss=True) == (True, True)
    assert _both(s, power_loss=False) == (False, True)
    lost = s.judge(INITIAL, power_loss=False)
    assert lost.kind == LOST and "trx [10]" in lost.summary
    assert "process kill" in lost.explain() and "at LSN 1500" in lost.explain()


def test_mode_2_ack_is_promised_on_kill_even_before_its_log_written_marker():
    """The contract, not the engine's report: mode 2 writes at commit, so the ack alone
    promises survival of a process kill (a bug that skips the write must be caught)."""
    s = Script()
    s.commit(10, {1: v("1-t10")}, lsn=1500, mode=2)
    assert _both(s, power_loss=False) == (False, True)


def test_mode_2_ack_at_or_below_the_durable_lsn_is_promised_on_power_loss():
    s = Script()
    s.commit(10, {1: v("1-t10")}, lsn=1500, mode=2)
    s.log(written=1500, durable=1500)
    assert _both(s, power_loss=True) == (False, True)


def test_mode_0_ack_counts_once_written_for_a_kill_and_once_durable_for_power_loss():
    s = Script()
    s.commit(10, {1: v("1-t10")}, lsn=1500, mode=0)
    assert _both(s, power_loss=False) == (True, True)     # still in the process's buffer
    assert _both(s, power_loss=True) == (True, True)
    s.log(written=1600)
    assert _both(s, power_loss=False) == (False, True)    # the OS has it
    assert _both(s, power_loss=True) == (True, True)      # but not the disk
    s.log(durable=1600)
    assert _both(s, power_loss=True) == (False, True)


def test_log_markers_after_the_crash_position_do_not_count():
    s = Script()
    s.commit(10, {1: v("1-t10")}, lsn=1500, mode=0)
    crash = len(s.disk.trace)
    s.log(written=1600, durable=1600)
    assert s.judge(INITIAL, power_loss=True, position=crash).ok
    assert not s.judge(INITIAL, power_loss=True).ok


def test_ack_without_mode_is_promised_as_mode_1():
    """Backwards compatible: commit-ack with no ``mode`` (mode 1, and old traces with or
    without ``lsn``) promises durability whatever the crash and whatever the log markers."""
    for lsn in (None, 1500):
        s = Script()
        s.commit(10, {1: v("1-t10")}, lsn=lsn)
        for power_loss in (True, False):
            assert _both(s, power_loss) == (False, True)
        _, commits = promised(s.disk.trace.markers(), len(s.disk.trace))
        assert commits[0].acked and commits[0].must_survive and commits[0].mode == 1


def test_unpromised_acks_stay_in_doubt_in_prefix_order_never_half():
    s = Script()
    s.commit(10, {1: v("1-t10")}, lsn=1500, mode=2)
    s.commit(11, {2: v("2-t11"), 3: v("3-t11")}, lsn=1800, mode=2)
    after_11 = {**AFTER_11, 3: v("3-t11")}
    for rows in (INITIAL, AFTER_10, after_11):
        assert s.judge(rows, power_loss=True).ok
    assert not s.judge({**INITIAL, 2: v("2-t11"), 3: v("3-t11")}, True).ok   # a hole
    assert not s.judge({**AFTER_10, 2: v("2-t11")}, True).ok                  # half of 11
    s.log(durable=1500)                   # 10 is durable now, 11 still in doubt
    assert not s.judge(INITIAL, True).ok
    assert s.judge(AFTER_10, True).ok and s.judge(after_11, True).ok


def test_read_only_ack_promises_no_earlier_commit():
    """A commit that changed nothing (LSN 0) has nothing to make durable: its ack must not
    turn earlier in-doubt commits into promised ones."""
    s = Script()
    s.commit(10, {1: v("1-t10")}, lsn=1500, mode=2)
    s.commit(11, {}, lsn=0, mode=2)
    assert s.judge(INITIAL, power_loss=True).ok


# -- settings and artifacts -----------------------------------------------------------------------
def test_settings_json_round_trip_and_old_artifacts_without_the_key():
    s = WorkloadSettings(flush_log_at_trx_commit=2)
    d = json.loads(json.dumps(s.to_json()))
    assert d["flush_log_at_trx_commit"] == 2 and WorkloadSettings.from_json(d) == s
    assert s.engine_config().flush_log_at_trx_commit == 2
    old = WorkloadSettings().to_json()
    del old["flush_log_at_trx_commit"]
    assert WorkloadSettings.from_json(old).flush_log_at_trx_commit == 1


def test_campaign_strategies_draw_every_mode_and_keep_the_chosen_one():
    seen = set()

    @hyp_settings(max_examples=60, database=None, derandomize=True)
    @given(trx_commit_mode_strategy())
    def draw(mode):
        seen.add(mode)

    draw()
    assert seen == set(TRX_COMMIT_MODES) == {0, 1, 2}

    @hyp_settings(max_examples=10, database=None, derandomize=True)
    @given(trx_commit_mode_strategy((2,)), settings_strategy(WorkloadSettings(
        flush_log_at_trx_commit=2)))
    def only_2(mode, s):
        assert mode == 2 and s.flush_log_at_trx_commit == 2

    only_2()


# -- campaigns ------------------------------------------------------------------------------------
def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        pytest.fail("".join(traceback.format_exception(*result.exc_info)))
    return result


def run_json(tmp_path, *args):
    js = tmp_path / "out.json"
    result = invoke("run", "--quiet", "--json", js, "--artifacts", tmp_path / "artifacts", *args)
    return result, json.loads(js.read_text())


@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("device", ["sector512", "process-kill"])
def test_clean_campaign_in_each_mode(tmp_path, mode, device):
    result, summary = run_json(tmp_path, "--flush-log-at-trx-commit", mode, "--device", device,
                               "--examples", "12", "--seed", "1")
    assert summary["findings"] == [], result.output
    assert summary["trx_commit_modes"] == [mode]
    assert summary["probes"].get(f"trx_commit_mode_{mode}") == 12
    assert summary["probes"].get("crash_during_recovery", 0) > 0
    assert not any(summary["probes"].get(f"trx_commit_mode_{m}") for m in {0, 1, 2} - {mode})
    assert f"trx_commit_mode_{mode}" in result.stdout


def test_default_campaign_runs_every_mode(tmp_path):
    # seed 1: its 12 workloads fire every required probe (measured; seed 0 misses a merge)
    result, summary = run_json(tmp_path, "--examples", "12", "--seed", "1",
                               "--recovery-crashes", "0")
    assert result.exit_code == 0, result.output
    assert summary["trx_commit_modes"] == [1, 2, 0]
    assert all(summary["probes"].get(f"trx_commit_mode_{m}", 0) > 0 for m in (0, 1, 2)), \
        summary["probes"]
    assert sum(summary["probes"][f"trx_commit_mode_{m}"] for m in (0, 1, 2)) == 12


@pytest.mark.parametrize("device", ["process-kill", "sector512"])
def test_the_mode_2_mutant_is_found(tmp_path, device):
    """On a process kill, and on a power-loss device through the crash plans that lose
    nothing the OS had."""
    result, summary = run_json(tmp_path, "--mutant", "trx-commit-2-no-write", "--device",
                               device, "--seed", "1", "--examples", "4", "--no-shrink",
                               "--recovery-crashes", "0")     # found in the first 4 (measured)
    assert result.exit_code == 1, result.output
    (f,) = summary["findings"]
    assert f["kind"] == LOST and "acknowledged commit lost" in f["summary"]
    assert f["determinism"] == "ok"
    art = load(f["artifact"])
    assert art.settings.flush_log_at_trx_commit == 2 and art.mutant == "trx-commit-2-no-write"
    assert "flush_log_at_trx_commit=2" in f["explanation"]
    fixed = invoke("replay", "--without-mutant", f["artifact"])
    assert "DIFFERS from the artifact's" in fixed.stdout   # the fix changes the IO trace ...
    assert fixed.exit_code == 0, fixed.output                # ... and the saved plan passes
