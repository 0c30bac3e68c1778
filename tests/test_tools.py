"""Local reproduction tools: explain, shrink, inspect, regress, replay --subprocess."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tornpage.campaigns.artifacts import load
from tornpage.campaigns.cli import main
from tornpage.campaigns.runner import CampaignConfig, run_campaign


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """A real finding: the ack-before-log-fsync mutant, found in the first chunk of seed 0."""
    d = tmp_path_factory.mktemp("art")
    res = run_campaign(CampaignConfig(seed=0, budget=None, examples=4,
                                      mutant="ack-before-log-fsync", artifacts_dir=str(d),
                                      check_determinism=False,
                                      trx_commit_modes=(1,)))   # the mutant's mode
    assert res.findings, "the mutant is found in the first chunk of seed 0"
    return res.findings[0].artifact


def test_explain_names_the_lost_commit_and_the_choice_that_matters(artifact):
    r = invoke("explain", artifact)
    assert r.exit_code == 0, r.output
    assert r.output.startswith("finding: [L]")
    assert ">> #" in r.output                      # the crash point in the timeline
    assert "MATTERS" in r.output                   # the dropped log write is the cause
    assert "acknowledged" in r.output


def test_inspect_an_artifact_decodes_log_and_pages(artifact):
    r = invoke("inspect", artifact)
    assert r.exit_code == 0, r.output
    assert "checkpoint slot @512" in r.output and "scan from checkpoint" in r.output
    assert "sbtest1.ibd" in r.output and "INDEX" in r.output
    assert "summary:" in r.output


def test_inspect_a_directory_reports_a_corrupt_page(tmp_path, artifact):
    from tornpage.campaigns.tools import crash_image
    art = load(artifact)
    from tornpage.campaigns.mutants import planted
    with planted(art.mutant):
        _, image = crash_image(art)
    for path, data in image.files.items():
        (tmp_path / path).write_bytes(data)
    page = bytearray((tmp_path / "sbtest1.ibd").read_bytes())
    page[4096 + 100] ^= 0xFF                      # page 1: a flipped byte
    (tmp_path / "sbtest1.ibd").write_bytes(bytes(page))
    r = invoke("inspect", tmp_path)
    assert r.exit_code == 0, r.output
    line = next(x for x in r.output.splitlines() if x.strip().startswith("page    1:")
                and "space 1" in x)
    assert "bad-checksum" in line


def test_shrink_keeps_the_signature(artifact, tmp_path):
    out = tmp_path / "small.json"
    r = invoke("shrink", artifact, "-o", out)
    assert r.exit_code == 0, r.output
    small, big = load(str(out)), load(artifact)
    assert len(small.steps) <= len(big.steps)
    assert len(small.plan.choices) <= len(big.plan.choices)
    assert small.finding["kind"] == big.finding["kind"]
    assert invoke("replay", out).exit_code == 1


def test_regress_writes_a_failing_test_and_a_passing_one_without_the_mutant(artifact, tmp_path):
    failing, passing = tmp_path / "test_bug.py", tmp_path / "test_fixed.py"
    assert invoke("regress", artifact, "-o", failing).exit_code == 0
    assert invoke("regress", artifact, "--without-mutant", "-o", passing).exit_code == 0
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    assert subprocess.run(run + [str(failing)], capture_output=True).returncode == 1
    assert subprocess.run(run + [str(passing)], capture_output=True).returncode == 0


def test_replay_in_a_subprocess_keeps_the_exit_code(artifact):
    r = subprocess.run([sys.executable, "-m", "tornpage.campaigns.cli", "replay", "--subprocess",
                        artifact], capture_output=True, text=True)
    assert r.returncode == 1 and "same finding as recorded" in r.stdout


@pytest.mark.parametrize("command", ["explain", "shrink", "inspect", "regress"])
def test_bad_artifact_is_exit_2(command, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"tornpage_artifact": 1, "steps": "nope"}))
    r = invoke(command, bad)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
