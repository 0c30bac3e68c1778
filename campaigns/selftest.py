"""``tornpage selftest``: prove the harness.  Every planted bug (:mod:`campaigns.mutants`) is run
with the fault model it needs and must be found (killed), and the clean engine is run on every
device, with and without media faults, and must give no finding (no false positive).  A mutant
that is not found but carries an argument that it cannot change an outcome in this engine
(``Mutant.equivalent``) passes only when the experiment of :func:`equivalence` backs it: the
clean engine on the same campaigns, the seam watched, every checked crash state's outcome the
same; otherwise it is a survivor.  The selftest passes with no survivor and no false positive.

Budgets are deterministic and the same for every mutant: up to ``seeds`` campaigns of
``examples`` workloads each (seeds ``seed``, ``seed + 1``, …; each stops at the first finding)
and ``clean_examples`` workloads per clean campaign, so two runs of the same command give the
same verdicts and the same artifacts.  The time from the start of a mutant's
campaign to its saved, shrunk artifact is measured (wall clock, reported, never used to decide).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import statistics
import time
from typing import Iterator
from unittest import mock

from tornpage.campaigns import crashcheck
from tornpage.campaigns.mutants import MUTANTS, Divergence
from tornpage.campaigns.runner import CampaignConfig, run_campaign
from tornpage.campaigns.workload import WorkloadSettings
from tornpage.faultfs.devices import DEFAULT_DEVICE, DEVICES


def _settings(device: str | None, doublewrite: bool = True) -> WorkloadSettings:
    return dataclasses.replace(WorkloadSettings(), device=device or DEFAULT_DEVICE,
                               doublewrite=doublewrite)


@contextlib.contextmanager
def recorded_outcomes(log: list) -> Iterator[None]:
    """Record, in order, the outcome of every crash state checked in this process: the workload's
    IO trace hash, the crash plan and its crashes during recovery, the verdict (kind and rule)
    and a digest of each recovered state of every table (``crashcheck.all_views``, after
    recovery and background rollback).  A state whose
    verdict is reused from an equal state checked before is not checked again, in either run.
    Two campaigns with equal logs gave every checked crash state the same outcome."""
    real_check, real_finish = crashcheck.check_crash_state, crashcheck._finish

    def finish(eng, quiesce):
        rows = real_finish(eng, quiesce)
        log.append(("rows", hashlib.sha256(repr(sorted(rows.items())).encode()).hexdigest()))
        return rows

    def check(run, plan, *args, **kwargs):
        out = real_check(run, plan, *args, **kwargs)
        log.append(("state", run.disk.trace_hash(), repr(plan), repr(out.nested),
                    out.verdict.kind, out.verdict.rule))
        return out
    with mock.patch.object(crashcheck, "_finish", finish), \
            mock.patch.object(crashcheck, "check_crash_state", check):
        yield


def _mutant_config(name: str, s: int, examples: int, artifacts_dir: str, shrink_steps: int,
                   mutant: str | None) -> CampaignConfig:
    opts = MUTANTS[name].campaign_options()
    return CampaignConfig(seed=s, budget=None, examples=examples, mutant=mutant,
                          settings=_settings(opts["device"], opts["doublewrite"]),
                          media_faults=opts["media_faults"],
                          recovery_crashes=opts["recovery_crashes"],
                          artifacts_dir=os.path.join(artifacts_dir, mutant or f"clean-{name}"),
                          shrink_steps=shrink_steps, required_probes=())


def outcomes_by_state(log: list) -> list[tuple]:
    """A :func:`recorded_outcomes` log as one outcome per crash state checked: its
    ``("state", …)`` record with the table-state digests recorded before it."""
    out, rows = [], []
    for rec in log:
        if rec[0] == "rows":
            rows.append(rec[1])
        else:
            out.append((rec, tuple(rows)))
            rows = []
    return out


def compare_outcomes(clean_log: list, mutant_log: list) -> tuple[int, int, str | None]:
    """(crash states compared, crash states whose outcome differs, the first difference in
    words or None) between two :func:`recorded_outcomes` logs, state by state; a state only one
    of the runs checked counts as differing."""
    clean, mutant = outcomes_by_state(clean_log), outcomes_by_state(mutant_log)
    differ = sum(a != b for a, b in zip(clean, mutant)) + abs(len(clean) - len(mutant))
    first = next((i for i, (a, b) in enumerate(zip(clean, mutant)) if a != b),
                 None if len(clean) == len(mutant) else min(len(clean), len(mutant)))
    words = None if first is None else (
        f"crash state {first + 1} of {len(clean)}: clean engine "
        f"{clean[first] if first < len(clean) else 'checked no such state'}, mutant "
        f"{mutant[first] if first < len(mutant) else 'checked no such state'}")
    return min(len(clean), len(mutant)), differ, words


def equivalence(name: str, seeds: list[int], examples: int, artifacts_dir: str,
                mutant_log: list, differential=None) -> dict:
    """The experiment behind a mutant claimed equivalent: the clean engine runs the campaigns
    the mutant ran (``seeds``, same workloads and fault model) with the mutant's seam watched
    (:class:`~campaigns.mutants.Divergence`), and the outcome of every crash state it checks is
    compared with the mutant's (``mutant_log``, from :func:`recorded_outcomes`; see
    :func:`compare_outcomes`).  A JSON-able dict: seam_calls, diverged (the seam's answers
    that differed), first, outcomes_compared, outcomes_differ (crash states), first_difference,
    interrupted.  ``differential``: another watcher than the mutant's own."""
    d = Divergence()
    log: list = []
    interrupted = False
    with (differential or MUTANTS[name].differential)(d), recorded_outcomes(log):
        for s in seeds:
            res = run_campaign(_mutant_config(name, s, examples, artifacts_dir, 0, None))
            interrupted |= res.interrupted
    compared, differ, first = compare_outcomes(log, mutant_log)
    return {**d.to_json(), "outcomes_compared": compared, "outcomes_differ": differ,
            "first_difference": first, "interrupted": interrupted}


def shown_equivalent(experiment: dict | None) -> bool:
    """Whether an experiment backs its equivalence argument: both runs ran to the end, the
    seam was reached, crash states were compared, and none differed."""
    return experiment is not None and not experiment["interrupted"] and \
        experiment["seam_calls"] > 0 and experiment["outcomes_compared"] > 0 and \
        experiment["outcomes_differ"] == 0


def run_mutant(name: str, examples: int, seed: int, artifacts_dir: str,
               shrink_steps: int, seeds: int = 1) -> dict:
    """One mutant's campaigns: seeds ``seed``, ``seed + 1``, … (``seeds`` of them) in turn, each
    of at most ``examples`` workloads, until one finds it.  The same budget for every mutant:
    nothing is tuned to one.  A JSON-able dict: killed, kind, rule, seed, seconds, workloads…

    A mutant that survives and has an equivalence argument (``Mutant.equivalent``) gets the
    experiment of :func:`equivalence`: when it backs the argument (:func:`shown_equivalent`:
    no crash state's outcome differs from the clean engine's), the mutant is reported
    ``equivalent`` (the bug cannot show in this engine under this fault model, and the argument
    says why), not as a survivor."""
    mutant = MUTANTS[name]
    t0 = time.perf_counter()
    workloads = states = 0
    log: list = []
    ran = []
    interrupted = False
    with recorded_outcomes(log):
        for s in range(seed, seed + seeds):
            res = run_campaign(_mutant_config(name, s, examples, artifacts_dir, shrink_steps,
                                              name))
            interrupted |= res.interrupted
            ran.append(s)
            workloads += res.workloads
            states += res.crash_states
            if res.findings:
                break
    seconds = time.perf_counter() - t0
    f = res.findings[0] if res.findings else None
    experiment = None
    if f is None and mutant.equivalent:
        experiment = {**equivalence(name, ran, examples, artifacts_dir, log),
                      "argument": mutant.equivalent}
        experiment["interrupted"] |= interrupted
    return {"mutant": name, "bug": mutant.bug, "needs": mutant.needs,
            "killed": f is not None,
            "equivalent": shown_equivalent(experiment),
            "experiment": experiment, "kind": f.verdict["kind"] if f else None,
            "rule": f.verdict.get("rule") if f else None, "seed": s if f else None,
            "artifact": f.artifact if f else None, "workloads": workloads,
            "crash_states": states, "seconds_to_artifact": round(seconds, 2)}


def run_clean(device: str, media_faults: bool, examples: int, seed: int,
              artifacts_dir: str) -> dict:
    """The clean engine on ``device``: any finding is a false positive."""
    cfg = CampaignConfig(seed=seed, budget=None, examples=examples,
                         settings=_settings(device), media_faults=media_faults,
                         artifacts_dir=os.path.join(artifacts_dir, f"clean-{device}"),
                         required_probes=(), max_findings=20)
    res = run_campaign(cfg)
    return {"device": device, "media_faults": media_faults, "workloads": res.workloads,
            "crash_states": res.crash_states,
            "false_positives": [f.to_json() for f in res.findings]}


def selftest(*, examples: int = 400, clean_examples: int = 8, seed: int = 0, seeds: int = 4,
             artifacts_dir: str = "tornpage-selftest", shrink_steps: int = 100,
             executor=None, progress=lambda line: None) -> dict:
    """Run every mutant and every clean configuration; return the report (see the module
    docstring).  ``executor``: a ``concurrent.futures`` executor to spread the campaigns over,
    or None to run them here in turn."""
    jobs = [("mutant", (name, examples, seed, artifacts_dir, shrink_steps, seeds))
            for name in MUTANTS]
    jobs += [("clean", (device, media, clean_examples, seed, artifacts_dir))
             for device in DEVICES for media in (False, True)]
    fns = {"mutant": run_mutant, "clean": run_clean}
    if executor is None:
        results = []
        for kind, args in jobs:
            results.append(fns[kind](*args))
            progress(_line(kind, results[-1]))
    else:
        futures = [executor.submit(fns[kind], *args) for kind, args in jobs]
        results = []
        for (kind, _), fut in zip(jobs, futures):
            results.append(fut.result())
            progress(_line(kind, results[-1]))
    mutants = [r for (k, _), r in zip(jobs, results) if k == "mutant"]
    clean = [r for (k, _), r in zip(jobs, results) if k == "clean"]
    times = [m["seconds_to_artifact"] for m in mutants if m["killed"]]
    report = {"tool": "tornpage selftest", "seed": seed, "seeds": seeds,
              "examples_per_mutant": examples,
              "clean_examples": clean_examples, "mutants": mutants, "clean": clean,
              "killed": sum(m["killed"] for m in mutants), "total": len(mutants),
              "equivalent": [m["mutant"] for m in mutants if m["equivalent"]],
              "survivors": [m["mutant"] for m in mutants
                            if not m["killed"] and not m["equivalent"]],
              "false_positives": sum(len(c["false_positives"]) for c in clean),
              "median_seconds_to_artifact": statistics.median(times) if times else None,
              "max_seconds_to_artifact": max(times) if times else None}
    report["passed"] = not report["survivors"] and not report["false_positives"]
    return report


def _line(kind: str, r: dict) -> str:
    if kind == "mutant":
        if r["equivalent"]:
            e = r["experiment"]
            return (f"equal    {r['mutant']:40s} no outcome differs in {e['outcomes_compared']} "
                    f"crash states (seam reached {e['seam_calls']} times, answered otherwise "
                    f"{e['diverged']} times)")
        if not r["killed"]:
            return f"SURVIVED {r['mutant']} ({r['workloads']} workloads)"
        return (f"killed   {r['mutant']:40s} {r['kind']}:{r['rule']}  "
                f"{r['seconds_to_artifact']:.1f} s, seed {r['seed']}, {r['workloads']} "
                f"workloads")
    fp = len(r["false_positives"])
    return (f"{'clean   ' if not fp else 'FALSE+  '} {r['device']}"
            f"{' --media-faults' if r['media_faults'] else ''}: {r['workloads']} workloads, "
            f"{r['crash_states']} crash states, {fp} findings")
