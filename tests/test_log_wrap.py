"""The circular redo log at its smallest: a workload wraps it several times, the log free check
before every mtr flushes and checkpoints synchronously when it runs low, and crash recovery
after the wraps recovers what was committed.  Without the free check (mutant
``no-log-free-check``, INNODB.md bug 12) the log writer's own guard stops the engine, and with
that guard gone too, as in InnoDB, redo newer than the checkpoint is overwritten and recovery
refuses.
"""
from __future__ import annotations

import dataclasses
import random
from unittest import mock

import pytest
from click.testing import CliRunner

from tornpage.campaigns.artifacts import Artifact
from tornpage.campaigns.cli import main
from tornpage.campaigns.crashcheck import builder_for, check_crash_state
from tornpage.campaigns.mutants import planted
from tornpage.campaigns.workload import WorkloadSettings, run_workload, workload_probes
from tornpage.engine import Engine, EngineConfig, RecoveryError
from tornpage.engine import log as L
from tornpage.engine import mtr_log as ml
from tornpage.engine.fil import LOG_FILE
from tornpage.faultfs import DROP, Choice, CrashPlan, SimDisk, Write

PS = 4096
SETTINGS = WorkloadSettings(table_size=60, page_size=PS,
                            log_file_size=EngineConfig.min_log_file_size(PS))
# slot 2 keeps a transaction open across every wrap and synchronous checkpoint; slots 0 and 1
# commit bulk statements (about 50 KB of redo a round, the log holds 72 KB)
STEPS = [["bulk_update", 2, 41, 20, 99]] + [
    step for r in range(6) for step in (["bulk_update", 0, 1, 40, r], ["commit", 0],
                                        ["bulk_insert", 1, 1000 + 100 * r, 60, r],
                                        ["commit", 1])]


def _since_setup(run, key: str) -> int:
    """Engine stat ``key`` counted after the initial state (the setup counts too)."""
    return run.engine_stats.get(key, 0) - run_workload(run.settings, []).engine_stats.get(key, 0)


@pytest.fixture(scope="module")
def wrapped():
    run = run_workload(SETTINGS, STEPS)
    assert run.stopped is None, run.stopped
    return run


def test_the_minimum_log_wraps_several_times_and_checkpoints_synchronously(wrapped):
    assert SETTINGS.engine_config().log_file_size == 2048 + 4 * (4 * PS + 2048)
    assert _since_setup(wrapped, "log_wraps") >= 3
    assert _since_setup(wrapped, "log_sync_checkpoints") >= 3
    probes = workload_probes(wrapped)
    assert probes["log_wrapped"] == wrapped.engine_stats["log_wraps"]
    assert probes["log_free_check_checkpoint"] == wrapped.engine_stats["log_sync_checkpoints"]


def _log_writes(run, offsets) -> list[int]:
    """Trace indices, after the initial state, of the log writes at one of ``offsets``."""
    return [i for i, op in enumerate(run.trace.ops) if i > run.setup_end and
            isinstance(op, Write) and op.path == LOG_FILE and op.offset in offsets]


def test_crash_recovery_after_wraps_recovers_committed_data(wrapped):
    """Crash just before and just after every write that starts a lap of the log file and every
    checkpoint write, keeping or losing everything not fsynced: each state recovers what was
    committed (the oracle) and nothing of the transaction left open."""
    b = builder_for(wrapped)
    laps = _log_writes(wrapped, {L.LOG_FILE_HDR_SIZE})
    ckpts = _log_writes(wrapped, {L.LOG_CHECKPOINT_1, L.LOG_CHECKPOINT_2})
    assert len(laps) >= 3 and len(ckpts) >= 3
    positions = sorted({p for i in laps + ckpts for p in (i, i + 1)} | {len(wrapped.trace)})
    across = 0
    for pos in positions:
        drop = CrashPlan(pos, tuple((i, Choice(DROP)) for i in b.pending(pos)))
        for plan in (CrashPlan(pos), drop):
            out = check_crash_state(wrapped, plan)
            assert out.verdict.ok, (pos, out.verdict.summary)
            img = SimDisk(image=b.build(plan))
            f = img.open(LOG_FILE)
            res = L.scan(f, SETTINGS.log_file_size, L.read_checkpoints(f)[0])
            if res.recovered_lsn > res.checkpoint.lsn and \
                    (res.checkpoint.lsn - L.LOG_START_LSN) // (SETTINGS.log_file_size - 2048) \
                    != (res.recovered_lsn - 1 - L.LOG_START_LSN) // \
                    (SETTINGS.log_file_size - 2048):
                across += 1           # the redo to apply runs across the end of the file
    assert across > 0


def test_without_the_free_check_the_log_writers_guard_stops_the_engine():
    with mock.patch.object(Engine, "_log_free_check", lambda self: None):
        run = run_workload(SETTINGS, STEPS)
    assert run.stopped is not None and run.stopped.startswith("LogFull"), run.stopped
    assert not run.crashed                        # a typed refusal: crashcheck reports E
    assert check_crash_state(run, CrashPlan(len(run.trace))).verdict.kind == "E"


def test_mutant_overwrites_the_log_past_the_checkpoint_and_recovery_refuses():
    with planted("no-log-free-check"):
        run = run_workload(SETTINGS, STEPS)
        assert run.stopped is None
        assert run.engine_stats.get("log_sync_checkpoints", 0) == 0
        out = check_crash_state(run, CrashPlan(len(run.trace)))
    assert out.verdict.kind == "R", out.verdict.summary
    assert "a later lap: the log overwrote redo newer than the checkpoint" in \
        out.verdict.summary


def test_replay_without_the_mutant_refuses_a_crash_in_the_longer_setup(tmp_path):
    """The fix flushes and checkpoints during the setup of a large table, where the mutant did
    not: a crash right after the mutant's setup falls inside the fixed one, so replaying it
    without the mutant is refused as not fitting, not judged against the initial state."""
    s = dataclasses.replace(SETTINGS, table_size=150)
    with planted("no-log-free-check"):
        run = run_workload(s, STEPS[:2])
    assert run_workload(s, STEPS[:2]).setup_end > run.setup_end + 1
    path = Artifact(seed=0, settings=s, steps=STEPS[:2], plan=CrashPlan(run.setup_end + 1),
                    mutant="no-log-free-check", trace_hash=run.trace.hash(),
                    finding={"ok": False, "kind": "R", "summary": "made up", "details": []}
                    ).save(str(tmp_path))
    result = CliRunner().invoke(main, ["replay", "--without-mutant", path])
    assert result.exit_code == 2, result.output
    assert "the crash plan does not fit this trace" in result.stderr
    assert "lies in the setup" in result.stderr


def test_scan_refuses_a_block_a_whole_lap_newer():
    """A power-of-two number of blocks per lap makes a block one lap newer look like one many
    laps older (block numbers wrap at 2^30): the scan must still refuse, not end the log."""
    size = 2048 + 64 * L.OS_FILE_LOG_BLOCK_SIZE
    disk = SimDisk()
    f = disk.open(LOG_FILE, create=True)
    log = L.LogSys(f, size)
    log.create()
    log.write_checkpoint(L.LOG_START_LSN)
    rng = random.Random(3)
    with mock.patch.object(L.LogSys, "_check_capacity", lambda self, s, e: None):
        while log.lsn < L.LOG_START_LSN + log.capacity + 4 * L.OS_FILE_LOG_BLOCK_SIZE:
            log.append(ml.encode_mtr([ml.write_string(0, 5, 40, bytes(rng.randrange(1, 300)))]))
            log.write_up_to(log.lsn, flush=True)
    assert log.counters["log_wraps"] == 1
    with pytest.raises(RecoveryError, match="later lap"):
        L.scan(f, size, L.read_checkpoints(f)[0])
