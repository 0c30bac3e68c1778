"""Campaigns and the ``tornpage`` command end to end (click's CliRunner on campaigns.cli.main).

Every campaign runs by ``--examples`` with a measured seed, never by a time budget, so what it
finds does not depend on the machine's speed.  The mutant and ``--no-doublewrite`` campaigns stop
at their first finding; each is run once per module and shared by the tests that look at its
outcome, its artifact and its replays.
"""
from __future__ import annotations

import json
import os
import re
import traceback

import pytest
from click.testing import CliRunner
from hypothesis import given, settings as hyp_settings

from tornpage.campaigns.artifacts import ARTIFACT_FORMAT, Artifact, load
from tornpage.campaigns.crashcheck import check_crash_state
from tornpage.campaigns.cli import main
from tornpage.campaigns.mutants import MUTANTS, planted
from tornpage.campaigns.workload import (TABLE, WorkloadSettings, run_workload, step_strategy,
                                validate_steps)
from tornpage.checkers.probes import FAULT_PROBES, PROBES, WORKLOAD_PROBES
from tornpage.checkers.verdict import KIND_NAMES
from tornpage.faultfs import DEVICES, CrashPlan


# -- helpers ---------------------------------------------------------------------------------------
def invoke(*args: str):
    """Run ``tornpage ARGS`` in-process; an uncaught exception (a traceback) fails the test."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        tb = "".join(traceback.format_exception(*result.exc_info))
        pytest.fail(f"tornpage {' '.join(map(str, args))} raised instead of exiting:\n{tb}")
    assert "Traceback" not in result.output
    return result


def run_json(tmp, *args: str, name: str = "out"):
    """``tornpage run --quiet ARGS --json ... --artifacts ...``: (result, summary dict)."""
    js = tmp / f"{name}.json"
    result = invoke("run", "--quiet", "--json", js, "--artifacts", tmp / f"{name}-artifacts",
                    *args)
    assert js.exists(), result.output
    return result, json.loads(js.read_text())


def one_line_error(result) -> str:
    """The single line a usage error / unreadable artifact prints on stderr."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert lines, f"no message on stderr; stdout was {result.stdout!r}"
    return "\n".join(lines)


# -- clean runs ----------------------------------------------------------------------------------------
CLEAN_ARGS = ("--examples", "6", "--seed", "1")   # a seed whose 6 workloads fire every required
                                                 # probe (measured: of seeds 0-15, 1, 2, 5 and
                                                 # 10 do; see
                                                 # test_a_run_that_misses_a_probe_fails)
SHORT_ARGS = ("--examples", "6", "--seed", "13")  # misses a required probe (measured)
SHORT_MISSES = ["btr_page_merge"]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clean")
    result, summary = run_json(tmp, *CLEAN_ARGS)
    return tmp, result, summary


def test_run_clean_exits_0_with_a_complete_json_summary(clean_run):
    tmp, result, summary = clean_run
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith("result: PASS")
    assert result.stderr == "", "--quiet must not print progress"
    assert summary["workloads"] == 6
    # distinct states, at most --crash-states (default 24) per workload, repeats counted apart
    # (measured for seed 1)
    assert (summary["crash_states"], summary["crash_states_reused"]) == (112, 0)
    assert summary["findings"] == []
    assert summary["missing_probes"] == []
    assert summary["passed"] is True
    assert summary["seed"] == 1 and summary["mutant"] is None
    probes = summary["probes"]
    assert isinstance(probes, dict) and probes
    assert all(isinstance(k, str) and isinstance(n, int) and n > 0 for k, n in probes.items())
    for name in summary["required_probes"]:
        assert probes.get(name, 0) > 0, f"required probe {name} never fired but the run passed"
    assert set(summary["required_probes"]) <= set(PROBES) | set(WORKLOAD_PROBES) | \
        set(FAULT_PROBES)
    assert {"log_wrapped", "log_free_check_checkpoint"} <= set(summary["required_probes"])
    assert not (tmp / "out-artifacts").exists() or not os.listdir(tmp / "out-artifacts")
    for name in PROBES:                                # the text summary lists every probe
        assert re.search(rf"^  {name} +\d+", result.stdout, re.M), name


def test_a_run_that_misses_a_probe_fails(tmp_path):
    """No finding, but a required probe never fired: the campaign did not test what it exists
    to test, so it fails (exit 1) and names the probes."""
    result, summary = run_json(tmp_path, *SHORT_ARGS)
    assert result.exit_code == 1, result.output
    assert summary["findings"] == [] and summary["passed"] is False
    assert summary["missing_probes"] == SHORT_MISSES
    assert all(summary["probes"].get(p, 0) == 0 for p in SHORT_MISSES)
    assert f"required probes that never fired: {', '.join(SHORT_MISSES)}" in result.stdout
    assert result.stdout.rstrip().endswith("result: FAIL")


def test_same_seed_same_campaign(clean_run, tmp_path):
    _, _, first = clean_run
    result, again = run_json(tmp_path, *CLEAN_ARGS)
    assert result.exit_code == 0
    assert again["workloads"] == first["workloads"]
    assert again["crash_states"] == first["crash_states"]
    assert again["probes"] == first["probes"]


def test_other_seed_other_campaign(clean_run, tmp_path):
    _, _, first = clean_run
    _, other = run_json(tmp_path, "--examples", "6", "--seed", "0")
    assert other["probes"] != first["probes"], "seed 0 explored exactly what seed 1 did"


def test_progress_goes_to_stderr_without_quiet(tmp_path):
    result = invoke("run", "--examples", "1", "--seed", "0", "--crash-states", "2",
                    "--artifacts", tmp_path / "a")
    assert result.exit_code == 1               # one workload cannot fire every required probe
    assert "required probes that never fired: " in result.stdout
    header = result.stderr.splitlines()[0]
    assert header.startswith("tornpage run: "), result.stderr
    for words in ("seed 0", "1 workloads", "device sector512", "doublewrite on",
                  "page size 4096"):
        assert words in header, header
    assert "workloads      1" in result.stdout
    assert "tornpage run:" not in result.stdout


# -- usage errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("args, option", [
    (["run", "--device", "floppy"], "--device"),
    (["run", "--page-size", "1000"], "--page-size"),
    (["run", "--page-size", "big"], "--page-size"),
    (["run", "--budget", "-5"], "--budget"),
    (["run", "--budget", "0"], "--budget"),
    (["run", "--examples", "-1"], "--examples"),
    (["run", "--examples", "0"], "--examples"),
    (["run", "--seed", "-1"], "--seed"),
    (["run", "--crash-states", "0"], "--crash-states"),
    (["run", "--max-findings", "-2"], "--max-findings"),
    (["run", "--mutant", "no-such-bug"], "--mutant"),
    (["run", "--recovery-crashes", "99"], "--recovery-crashes"),
    (["run", "--no-such-option"], "--no-such-option"),
    (["replay"], "ARTIFACT"),
    (["frobnicate"], "frobnicate"),
])
def test_usage_error_exits_2_with_a_message(args, option):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    err = one_line_error(result)
    assert "Error" in err and option in err, err
    assert result.stdout == ""


def test_replay_of_a_directory_is_a_usage_error(tmp_path):
    result = invoke("replay", tmp_path)
    assert result.exit_code == 2
    assert "is a directory" in one_line_error(result)


# -- listings ------------------------------------------------------------------------------------
def test_mutants_lists_every_mutant():
    result = invoke("mutants")
    assert result.exit_code == 0
    listed = {line.split()[0] for line in result.stdout.splitlines()
              if line and not line.startswith(" ")}
    assert listed == set(MUTANTS)
    for m in MUTANTS.values():
        assert m.description in result.stdout
        if m.equivalent:
            assert f"argued equivalent in this engine (tornpage selftest checks it): " \
                   f"{m.equivalent}" in result.stdout
    assert result.stdout.count("argued equivalent") == sum(bool(m.equivalent)
                                                           for m in MUTANTS.values())


def test_devices_lists_every_device():
    result = invoke("devices")
    assert result.exit_code == 0
    listed = {line.split()[0] for line in result.stdout.splitlines()
              if line and not line.startswith(" ")}
    assert listed == set(DEVICES)
    assert "atomic unit 16384 B" in result.stdout


# -- mutants: found, saved, replayed -----------------------------------------------------------------
class Campaigns:
    """Each campaign run once per module; tests share its outcome."""

    def __init__(self, tmp_path_factory) -> None:
        self.factory = tmp_path_factory
        self.cache: dict[tuple, tuple] = {}

    def get(self, *args: str):
        if args not in self.cache:
            tmp = self.factory.mktemp("campaign")
            try:
                self.cache[args] = ("ok", run_json(tmp, *args))
            except BaseException as e:      # pytest.fail's Failed too: do not rerun a failure
                self.cache[args] = ("failed", e)
        status, value = self.cache[args]
        if status == "failed":
            pytest.fail(f"tornpage run {' '.join(args)} failed: {value}", pytrace=False)
        return value


@pytest.fixture(scope="module")
def campaigns(tmp_path_factory):
    return Campaigns(tmp_path_factory)


# How each mutant's campaign finds it (measured, deterministic): the seed, the fewest workloads
# (a whole number of 4-workload chunks, so the chunks are those a longer run starts with) and
# the kind of the one finding.  Campaigns run by --examples, never by a time budget, so the
# outcome does not depend on the machine's speed.
MUTANT_RUNS: dict[str, tuple[int, int, str]] = {
    # name: (seed, examples, kind): the first of examples 4, 8, 16, 40 and seeds 0-7 (0-2 at
    # 40, unless all three miss) whose campaign finds the mutant, measured with the fault
    # model it needs
    "ack-before-log-fsync": (0, 4, "L"),
    "redo-apply-start-gt-page-lsn": (0, 4, "C"),
    "no-doublewrite-fsync": (1, 8, "R"),
    "fsync-retry-after-eio": (0, 4, "R"),
    "no-checksum-on-read": (2, 4, "E"),
    "no-dir-fsync-on-create": (0, 4, "R"),
    "recovery-checkpoint-ignores-dirty-pages": (0, 4, "R"),
    "ignore-write-errors": (2, 4, "L"),
    "lsn-zero-page-trusted": (0, 4, "R"),
    "unknown-page-type-unchecked": (0, 4, "C"),
    "no-write-verify": (1, 8, "L"),
    "trx-commit-2-no-write": (1, 4, "L"),
    "no-log-free-check": (1, 4, "R"),
    "merge-no-sibling-link-fix": (1, 4, "E"),
    "purge-ignores-read-view": (0, 4, "I"),
    "rr-read-view-per-statement": (0, 4, "I"),
    "sec-index-not-rolled-back": (0, 4, "C"),
    "partial-mtr-applied": (0, 4, "C"),
    "log-scan-past-bad-checksum": (0, 4, "R"),
    "checkpoint-same-slot": (0, 4, "R"),
    "zero-checksum-taken-as-empty": (0, 4, "R"),
    "recovered-pages-appended-unsorted": (0, 4, "L"),
    "page-write-before-log-durable": (0, 4, "R"),
    "undo-n-recs-not-logged": (0, 4, "U"),
    "resurrect-before-redo-apply": (0, 4, "L"),
    "bg-rollback-off-by-one": (0, 4, "U"),
    "rollback-not-redo-logged": (0, 4, "R"),
    "dropped-space-redo-kept": (0, 16, "H"),
    "extend-without-fsync": (0, 4, "C"),
    "checkpoint-before-data-fsync": (0, 4, "R"),
    "dblwr-first-copy-any-lsn": (2, 40, "R"),
}
# mutants no campaign with the fault model they name found in 40 workloads (these tests' budget)
# on each of seeds 0-3 (measured also with --media-faults, --device nonatomic512 and
# --recovery-crashes 1): why, and what finds them.  The selftest's budget is larger.
UNKILLABLE: dict[str, str] = {
    "either-checksum-field":
        "once argued equivalent (its argument was refuted by a kill): it needs a page that "
        "fails only one of its two checksum fields, with a trailer LSN that matches, e.g. a "
        "doublewrite copy torn over the copy of another page the same mtr stamped, or page 0 "
        "of a file recovery re-created torn by a crash during recovery.  Seeds 0-7 miss it in "
        "40 workloads of the default campaign; with --media-faults (whose workloads differ) "
        "seed 2 finds it in workload 7 (C: fsck.page_checksum), with --device nonatomic512 "
        "or --recovery-crashes 1 seeds 0-3 miss it; `tornpage selftest` (seeds 0-3, 400 "
        "workloads each) finds it in workload 1,255",
}
# mutants shown equivalent (campaigns.mutants.Mutant.equivalent says why; tests/test_selftest.py
# runs the experiment that backs it): not found by any campaign
EQUIVALENT = {name: m.equivalent for name, m in MUTANTS.items() if m.equivalent}


def test_every_mutant_has_a_measured_campaign():
    assert set(MUTANT_RUNS) | set(UNKILLABLE) | set(EQUIVALENT) == set(MUTANTS)
    assert not set(MUTANT_RUNS) & (set(UNKILLABLE) | set(EQUIVALENT))
    assert all(kind in KIND_NAMES for _, _, kind in MUTANT_RUNS.values())


def mutant_args(name: str) -> list[str]:
    """``run`` options for a mutant: the fault model it needs, no shrinking (shrinking is tested
    once, below) and no crashes during recovery unless it needs them; the measured seed and
    number of workloads (the campaign stops at the first finding), or 40 workloads for a
    mutant known to be unkillable."""
    opts = MUTANTS[name].campaign_options()
    seed, examples, _ = MUTANT_RUNS.get(name, (0, 40, None))
    args = ["--mutant", name, "--seed", str(seed), "--no-shrink", "--examples", str(examples)]
    if opts["media_faults"]:
        args.append("--media-faults")
    if not opts["doublewrite"]:
        args.append("--no-doublewrite")
    if opts["device"]:
        args += ["--device", opts["device"]]
    if not opts["recovery_crashes"]:
        args += ["--recovery-crashes", "0"]
    return args


def mutant_campaign(campaigns, name: str):
    return campaigns.get(*mutant_args(name))


def mutant_finding(campaigns, name: str) -> dict:
    """The finding of the mutant's campaign (skip: test_mutant_is_found_and_saved reports it
    when there is none)."""
    _, summary = mutant_campaign(campaigns, name)
    if not summary["findings"]:
        pytest.skip(f"the campaign did not find {name}")
    return summary["findings"][0]


MUTANT_PARAMS = [pytest.param(name, id=name) for name in MUTANTS]


@pytest.mark.parametrize("name", [
    pytest.param(name, id=name, marks=[pytest.mark.xfail(
        reason=UNKILLABLE.get(name) or EQUIVALENT[name], strict=True)]
        if name in UNKILLABLE or name in EQUIVALENT else []) for name in MUTANTS])
def test_mutant_is_found_and_saved(campaigns, name):
    result, summary = mutant_campaign(campaigns, name)
    assert result.exit_code == 1, result.output
    assert summary["passed"] is False and summary["mutant"] == name
    assert len(summary["findings"]) == 1
    f = summary["findings"][0]
    assert f["kind"] == MUTANT_RUNS[name][2], f
    assert f["determinism"] == "ok"
    assert os.path.isfile(f["artifact"])
    art = load(f["artifact"])
    assert art.mutant == name
    assert art.finding["kind"] == f["kind"] and art.finding["summary"] == f["summary"]
    assert f"artifact: {f['artifact']}" in result.stdout
    assert f"reproduce: tornpage replay {f['artifact']}" in result.stdout
    assert f["explanation"].splitlines()[0] in result.stdout
    assert result.stdout.rstrip().endswith("result: FAIL")


@pytest.mark.parametrize("name", MUTANT_PARAMS)
def test_replay_of_a_mutant_artifact_reproduces_it(campaigns, name):
    f = mutant_finding(campaigns, name)
    art = load(f["artifact"])
    result = invoke("replay", f["artifact"])
    assert result.exit_code == 1, result.output
    assert f"trace hash {art.trace_hash[:16]} (matches the artifact)" in result.stdout
    assert f"mutant {name}" in result.stdout
    assert f["explanation"].splitlines()[0] in result.stdout
    assert "verdict: FAIL (same finding as recorded)" in result.stdout


# the measured finding whose saved crash plan no longer fits the fixed workload's trace (the
# fix changes the IO before the crash position): replay refuses it (exit 2); every other one
# replays and passes without the mutant (exit 0)
PLAN_DOES_NOT_FIT_WITHOUT_MUTANT = {   # measured for the findings of MUTANT_RUNS
    "ack-before-log-fsync", "no-doublewrite-fsync", "fsync-retry-after-eio",
    "no-dir-fsync-on-create", "ignore-write-errors", "no-write-verify",
    "extend-without-fsync", "checkpoint-before-data-fsync", "no-checksum-on-read",
    # the workload's IO is unchanged, but the finding crashes the mutant's own recovery, whose
    # IO the fix changes: the nested plan does not fit
    "recovery-checkpoint-ignores-dirty-pages"}


@pytest.mark.parametrize("name", MUTANT_PARAMS)
def test_replay_without_the_mutant(campaigns, name):
    """With the planted bug removed: when the workload's IO is unchanged (the mutant acts in
    recovery only) the very same crash state must now pass; when the fix changes the IO trace,
    the saved plan either still applies (and must pass) or is refused as not fitting (exit 2,
    one line, no traceback)."""
    path = mutant_finding(campaigns, name)["artifact"]
    art = load(path)
    fixed_hash = run_workload(art.settings, art.steps).trace.hash()
    result = invoke("replay", "--without-mutant", path)
    if fixed_hash == art.trace_hash:
        assert name not in PLAN_DOES_NOT_FIT_WITHOUT_MUTANT or art.nested
        assert "(matches the artifact)" in result.stdout
    else:
        assert f"DIFFERS from the artifact's {art.trace_hash[:16]}" in result.stdout
    expected = 2 if name in PLAN_DOES_NOT_FIT_WITHOUT_MUTANT else 0
    assert result.exit_code == expected, result.output
    if result.exit_code == 0:
        assert "verdict: PASS (the finding no longer reproduces)" in result.stdout
        assert f"mutant {name}" not in result.stdout
    else:
        assert "tornpage replay: the crash plan does not fit this trace" in \
            one_line_error(result)


@pytest.mark.slow
def test_shrinking_gives_a_case_no_larger_that_still_reproduces(campaigns):
    """The default campaign shrinks a finding (the mutant tests above run with --no-shrink)."""
    name = "ack-before-log-fsync"
    _, raw = mutant_campaign(campaigns, name)
    result, shrunk = campaigns.get(*[a for a in mutant_args(name) if a != "--no-shrink"])
    assert result.exit_code == 1, result.output
    assert shrunk["shrink_runs"] > raw["shrink_runs"]
    assert f"shrink runs    {shrunk['shrink_runs']}" in result.stdout
    small = load(shrunk["findings"][0]["artifact"])
    large = load(raw["findings"][0]["artifact"])
    assert len(small.steps) <= len(large.steps)
    replay = invoke("replay", shrunk["findings"][0]["artifact"])
    assert replay.exit_code == 1
    assert "verdict: FAIL (same finding as recorded)" in replay.stdout


# -- the doublewrite buffer --------------------------------------------------------------------------
def test_no_doublewrite_on_512_byte_sectors_finds_a_torn_page(campaigns):
    result, summary = campaigns.get("--no-doublewrite", "--seed", "1", "--examples", "4",
                                    "--no-shrink", "--recovery-crashes", "0")   # found in
    #                                                                the first 4 (measured)
    assert result.exit_code == 1, result.output
    assert summary["settings"]["doublewrite"] is False
    assert "doublewrite_repair" not in summary["required_probes"]
    (f,) = summary["findings"]
    assert f["kind"] == "R", f
    # torn: by the trailer LSN, or by the checksum when the sectors that landed agree on it
    assert "TornPageUnrepairable" in f["summary"]
    assert "torn" in f["summary"] or "bad-checksum" in f["summary"]
    replay = invoke("replay", f["artifact"])
    assert replay.exit_code == 1
    assert "verdict: FAIL (same finding as recorded)" in replay.stdout


def test_no_doublewrite_on_atomic_16k_device_is_clean(tmp_path):
    result, summary = run_json(tmp_path, "--no-doublewrite", "--device", "atomic16k",
                               "--seed", "0", "--examples", "16")
    assert result.exit_code == 0, result.output
    assert summary["settings"]["device"] == "atomic16k"
    assert summary["findings"] == [] and summary["passed"] is True
    assert 0 < summary["crash_states"] <= 16 * 24


# -- bad artifacts ---------------------------------------------------------------------------------
CLEAN_STEPS = [["update_non_index", 0, 3, 7], ["commit", 0], ["insert", 1, 25, 8]]


@pytest.fixture(scope="module")
def clean_artifact(tmp_path_factory):
    """A valid artifact of a crash state that passes (no mutant): the template for damage."""
    tmp = tmp_path_factory.mktemp("artifact")
    s = WorkloadSettings(table_size=20)
    run = run_workload(s, CLEAN_STEPS)
    art = Artifact(seed=7, settings=s, steps=CLEAN_STEPS, plan=CrashPlan(len(run.trace)),
                   mutant=None, trace_hash=run.trace.hash(),
                   finding={"ok": False, "kind": "L", "summary": "made up", "details": []})
    return art.save(str(tmp)), run.trace.hash()


def damaged(tmp_path, clean_artifact, edit) -> str:
    path, _ = clean_artifact
    with open(path) as f:
        d = json.load(f)
    edit(d)
    out = tmp_path / "damaged.json"
    out.write_text(json.dumps(d))
    return str(out)


def test_replay_of_a_clean_artifact_passes(clean_artifact):
    path, trace_hash = clean_artifact
    result = invoke("replay", path)
    assert result.exit_code == 0, result.output
    assert f"trace hash {trace_hash[:16]} (matches the artifact)" in result.stdout
    assert "verdict: PASS" in result.stdout


def test_replay_of_a_missing_file(tmp_path):
    missing = tmp_path / "nope.json"
    result = invoke("replay", missing)
    assert result.exit_code == 2
    assert one_line_error(result) == f"tornpage replay: {missing}: no such file"


@pytest.mark.parametrize("content, words", [
    (b"this is not json {", "not a JSON artifact"),
    (b"\xff\xfe\x00garbage\x80", "not a JSON artifact"),
    (b"", "not a JSON artifact"),
    (b"[1, 2, 3]", "not a tornpage artifact"),
    (b'"a string"', "not a tornpage artifact"),
    (b"{}", "not a tornpage artifact"),
], ids=["truncated", "binary", "empty", "list", "string", "empty-object"])
def test_replay_of_a_file_that_is_not_an_artifact(tmp_path, content, words):
    p = tmp_path / "bad.json"
    p.write_bytes(content)
    result = invoke("replay", p)
    assert result.exit_code == 2, result.output
    err = one_line_error(result)
    assert "\n" not in err and err.startswith(f"tornpage replay: {p}: ") and words in err, err


def _delete(key):
    return lambda d: d.pop(key)


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


def _set_setting(key, value):
    return lambda d: d["settings"].__setitem__(key, value)


@pytest.mark.parametrize("edit, words", [
    (_set("tornpage_artifact", ARTIFACT_FORMAT + 1), f"format {ARTIFACT_FORMAT + 1}"),
    (_set("tornpage_artifact", None), "not a tornpage artifact"),
    (_delete("tornpage_artifact"), "not a tornpage artifact"),
    (_delete("steps"), "malformed artifact"),
    (_delete("settings"), "malformed artifact"),
    (_delete("crash_plan"), "malformed artifact"),
    (_delete("trace_hash"), "malformed artifact"),
    (_delete("seed"), "malformed artifact"),
    (_set("seed", "seven"), "malformed artifact"),
    (_set("steps", 5), "malformed artifact"),
    (_set("steps", [["commit"]]), "malformed workload step"),
    (_set("steps", [["truncate_table", 0]]), "malformed workload step"),
    (_set("steps", [["insert", 0, -1, 3]]), "malformed workload step"),
    (_set("settings", [1, 2]), "malformed artifact"),
    (_set_setting("page_size", 1000), "page_size"),
    (_set_setting("device", "floppy"), "floppy"),
    (_set_setting("colour", "blue"), "malformed artifact"),
    (_set("mutant", "no-such-bug"), "unknown mutant"),
    (_set("crash_plan", {"position": "late"}), "malformed artifact"),
    (_set("crash_plan", 17), "malformed artifact"),
    (_set("recovery_crash_plans", 3), "malformed artifact"),
    (_set("finding", [1, 2]), "malformed artifact"),
], ids=["newer-format", "null-format", "no-format", "no-steps", "no-settings",
        "no-crash-plan", "no-trace-hash", "no-seed", "bad-seed", "steps-not-list",
        "short-step", "unknown-step", "negative-key", "settings-not-dict", "bad-page-size",
        "unknown-device", "unknown-setting", "unknown-mutant", "bad-position", "plan-not-dict",
        "nested-not-list", "finding-not-dict"])
def test_replay_of_a_malformed_artifact(tmp_path, clean_artifact, edit, words):
    path = damaged(tmp_path, clean_artifact, edit)
    result = invoke("replay", path)
    assert result.exit_code == 2, result.output
    err = one_line_error(result)
    assert "\n" not in err, err
    assert err.startswith(f"tornpage replay: {path}: "), err
    assert words in err, err


def test_replay_of_a_plan_that_does_not_fit_the_trace(tmp_path, clean_artifact):
    _, trace_hash = clean_artifact
    path = damaged(tmp_path, clean_artifact,
                   lambda d: d["crash_plan"].__setitem__("position", 10**6))
    result = invoke("replay", path)
    assert result.exit_code == 2, result.output
    err = one_line_error(result)
    assert "\n" not in err and err.startswith("tornpage replay: the crash plan does not fit"), err


def test_replay_reports_a_trace_hash_mismatch(tmp_path, clean_artifact):
    """The recorded hash differs from the workload's (the code changed): replay says so, then
    applies the plan to the new trace (here it still fits and passes)."""
    path = damaged(tmp_path, clean_artifact, _set("trace_hash", "0" * 64))
    result = invoke("replay", path)
    assert "DIFFERS from the artifact's 0000000000000000" in result.stdout
    assert result.exit_code == 0, result.output


def test_replay_of_steps_out_of_the_engine_range(tmp_path, clean_artifact):
    """A step id the engine cannot store (the row's k is 32 bits) is an unreadable artifact,
    not a traceback from inside the workload."""
    path = damaged(tmp_path, clean_artifact, _set("steps", [["insert", 0, 2**32, 1]]))
    result = invoke("replay", path)
    assert result.exit_code == 2, result.output
    err = one_line_error(result)
    assert "\n" not in err and "malformed workload step" in err, err


# -- the workload ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [
    [[]],
    [["nope", 0]],
    [["commit"]],
    [["commit", 0, 1]],
    [["commit", -1]],
    [["commit", "0"]],
    [["commit", 1.0]],
    [["commit", None]],
    ["commit"],
    [("commit", 0)],
    [None],
    [["checkpoint", 0]],
    [["bulk_insert", 0, 30, 5]],
    [["update_index", 0, 5, 1], ["range_select", 0, 5]],
    [["insert", 0, 2**64, 1]],                  # beyond the engine's key and k columns
    [["update_index", 0, 2**40, 1]],
    [["background", 10**12]],
], ids=repr)
def test_validate_steps_rejects_malformed_steps(steps):
    with pytest.raises(ValueError, match="malformed workload step"):
        validate_steps(steps)


def test_validate_steps_accepts_every_step_kind():
    steps = [["point_select", 0, 1], ["range_select", 1, 1, 5], ["update_index", 2, 3, 9],
             ["update_non_index", 0, 3, 9], ["delete_insert", 0, 4, 1], ["insert", 1, 90, 2],
             ["bulk_insert", 2, 100, 5, 3], ["bulk_update", 0, 1, 5, 4], ["commit", 0],
             ["rollback", 1], ["background", 3], ["checkpoint"]]
    assert validate_steps(steps) == steps
    assert validate_steps([]) == []


@hyp_settings(max_examples=40, deadline=None, database=None)
@given(step_strategy(20))
def test_every_generated_step_is_valid(step):
    assert validate_steps([step]) == [step]


def test_run_workload_is_deterministic():
    s = WorkloadSettings(table_size=20)
    steps = [["bulk_insert", 0, 21, 30, 5], ["update_index", 1, 3, 1], ["commit", 1],
             ["background", 4], ["commit", 0], ["delete_insert", 2, 7, 2], ["rollback", 2],
             ["checkpoint"]]
    a, b = run_workload(s, steps), run_workload(s, [list(x) for x in steps])
    assert a.trace.hash() == b.trace.hash()
    assert len(a.trace) == len(b.trace)
    assert a.writers == b.writers
    assert run_workload(s, steps[:-1]).trace.hash() != a.trace.hash()
    assert run_workload(WorkloadSettings(table_size=21), steps).trace.hash() != a.trace.hash()
    labels = [m.label for _, m in a.trace.markers()]
    assert labels.count("commit-begin") == labels.count("commit-ack") == 2


def test_run_workload_survives_the_engine_tripping_on_an_unverified_page():
    """run_workload "never crashes by itself": when a planted bug lets the engine use a page
    with a flipped bit, the engine's own layout check stops it (as ut_a stops InnoDB) and the
    workload ends there, instead of the exception escaping the campaign as a traceback.  The
    layout error is typed (a Corruption, issue #11), so the engine stopped, it did not crash:
    the crash states are judged on what reached the disk."""
    s = WorkloadSettings(table_size=400, buffer_pool_pages=16,
                         media_faults=(("bitflip", 0, 561),))
    steps = [["update_index", 0, k, 1] for k in (193, 17, 139, 315, 365, 108, 32)]
    verified = run_workload(s, steps)
    assert verified.stopped and "bad-checksum" in verified.stopped      # the fixed engine refuses
    assert not verified.crashed
    with planted("no-checksum-on-read"):
        run = run_workload(s, steps)
    assert run.stopped and run.stopped.startswith("PageLayoutError"), run.stopped
    assert not run.crashed
    assert any(words.startswith("engine stopped: PageLayoutError") for _, words in run.events)
    # a typed refusal after a media fault is no finding by itself
    assert check_crash_state(run, CrashPlan(len(run.trace))).verdict.ok
    assert check_crash_state(verified, CrashPlan(len(verified.trace))).verdict.ok


def test_run_workload_under_a_mutant_is_deterministic_and_different():
    s = WorkloadSettings(table_size=20)
    steps = [["update_non_index", 0, 3, 7], ["commit", 0]]
    with planted("ack-before-log-fsync"):
        a = run_workload(s, steps).trace.hash()
        b = run_workload(s, steps).trace.hash()
    assert a == b
    assert run_workload(s, steps).trace.hash() != a     # the mutant skips the commit fsync
    assert TABLE in {k[0] for k in run_workload(s, steps).writers}
