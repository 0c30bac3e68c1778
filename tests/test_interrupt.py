"""Stopping a campaign (Ctrl-C, SIGTERM) keeps every finding and the reports: the JSON and JUnit
say ``interrupted``, the summary is printed, the exit code is 130, and a finding cut off while
shrinking is kept with its unshrunk artifact (saved before shrinking began)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tornpage.campaigns import runner
from tornpage.campaigns.artifacts import load
from tornpage.campaigns.runner import CampaignConfig, run_campaign
from tornpage.faultfs import search

TORNPAGE = [sys.executable, "-m", "tornpage.campaigns.cli"]


def _wait_for_progress(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until the campaign printed its first progress line (it is running workloads)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "workloads" in line and "crash states" in line:
            return
        if proc.poll() is not None:
            break
    pytest.fail("the campaign printed no progress line")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_campaign_with_reports_and_exit_130(tmp_path: Path, sig, jobs):
    """In one process, and with a process pool (whose workers leave the signal to the parent,
    which stops them)."""
    out_json, out_xml = tmp_path / "run.json", tmp_path / "run.xml"
    proc = subprocess.Popen(TORNPAGE + ["run", "--examples", "4000", "--seed", "0", "--jobs", jobs,
                                        "--json", str(out_json), "--junit", str(out_xml),
                                        "--artifacts", str(tmp_path / "art")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_progress(proc)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:                    # never leave a 4000-workload campaign running behind a failure
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr and "Aborted!" not in stdout + stderr
    assert stdout.rstrip().endswith("result: INTERRUPTED")
    assert "interrupted: the campaign was stopped" in stdout
    summary = json.loads(out_json.read_text())
    assert summary["interrupted"] is True and summary["passed"] is False
    assert 0 < summary["workloads"] < 4000
    assert summary["missing_probes"] == []          # a cut-short run is not judged on probes
    suite = ET.parse(out_xml).getroot().find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["interrupted"] == "true"
    assert suite.get("failures") == "1"


@pytest.mark.timeout(120)
def test_an_interrupt_while_shrinking_keeps_the_unshrunk_finding(tmp_path: Path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(search, "shrink_plan", interrupted)   # the plan shrink is cut off
    cfg = CampaignConfig(seed=0, budget=None, examples=4, mutant="ack-before-log-fsync",
                         recovery_crashes=0, artifacts_dir=str(tmp_path), check_determinism=False)
    res = run_campaign(cfg)
    assert res.interrupted and res.failed
    (f,) = res.findings
    assert f.artifact.endswith("-unshrunk.json") and os.path.exists(f.artifact)
    assert "interrupted while shrinking" in f.explanation
    art = load(f.artifact)
    assert art.shrunk is False and art.mutant == "ack-before-log-fsync"
    # the mutant acknowledges XA PREPARE early too: the first workload's prepared trx is lost
    assert f.signature() == "L:oracle.xa_prepared_lost"
    assert res.to_json(cfg)["interrupted"] is True


@pytest.mark.timeout(120)
def test_a_finished_shrink_replaces_the_unshrunk_artifact(tmp_path: Path):
    cfg = CampaignConfig(seed=0, budget=None, examples=4, mutant="ack-before-log-fsync",
                         recovery_crashes=0, artifacts_dir=str(tmp_path), check_determinism=False)
    res = run_campaign(cfg)
    (f,) = res.findings
    assert not res.interrupted
    assert os.listdir(tmp_path) == [os.path.basename(f.artifact)]
    assert load(f.artifact).shrunk is True
    assert runner._unshrunk_files(str(tmp_path)) == set()
