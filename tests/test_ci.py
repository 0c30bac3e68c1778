"""Nightly-CI features: shards, JUnit XML, settings profiles, process pool and Dask runs."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from tornpage.campaigns.cli import main
from tornpage.campaigns.runner import CampaignConfig, chunk_seed, hypothesis_settings, plan_chunks, \
    run_campaign


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def test_shards_partition_the_seed_space():
    """Every chunk of the unsharded run belongs to exactly one of N shards."""
    full = [i for i, _ in plan_chunks(CampaignConfig(examples=37))]
    assert full == list(range(10))
    shards = [[i for i, _ in plan_chunks(CampaignConfig(examples=37, shard=(k, 3)))]
              for k in (1, 2, 3)]
    assert sorted(sum(shards, [])) == full
    assert all(set(a).isdisjoint(b) for a in shards for b in shards if a is not b)
    sizes = dict(plan_chunks(CampaignConfig(examples=37)))
    assert sizes[9] == 1 and sum(sizes.values()) == 37


def test_two_ci_shards_write_junit_and_json_covering_the_unsharded_seeds(tmp_path):
    env = {"CI": "true", "GITHUB_ACTIONS": "true"}
    seeds = []
    for k in (1, 2):
        js, xml = tmp_path / f"s{k}.json", tmp_path / f"s{k}.xml"
        r = invoke("run", "--profile", "ci", "--examples", "12", "--shard", f"{k}/2",
                   "--quiet", "--json", js, "--junit", xml, "--artifacts", tmp_path / "a",
                   env=env)
        d = json.loads(js.read_text())
        # no finding; a shard of 6 workloads may miss a required probe (exit 1) or not (0)
        assert r.exit_code == (1 if d["missing_probes"] else 0), r.output
        assert d["findings"] == [] and d["passed"] == (not d["missing_probes"])
        assert d["shard"] == [k, 2] and d["seed"] == 0
        seeds += d["chunk_seeds"]
        suite = ET.parse(xml).getroot().find("testsuite")
        cases = suite.findall("testcase")
        assert cases[-1].get("name") == f"seed 0 shard {k}/2"
        props = {p.get("name"): p.get("value") for p in cases[-1].iter("property")}
        assert props["workloads"] == str(d["workloads"])
    full = [chunk_seed(0, i) for i in range(3)]
    assert sorted(seeds) == sorted(full)


def test_bad_shard_is_a_usage_error():
    for bad in ("3/2", "0/2", "x", "1/0"):
        r = invoke("run", "--shard", bad)
        assert r.exit_code == 2 and "shard" in r.output.lower(), (bad, r.output)


def test_nightly_profile_is_random_and_keeps_its_database_under_ci(tmp_path, monkeypatch):
    """Hypothesis loads a derandomized, database-less profile when CI is set; the nightly
    campaign's explicit settings must win."""
    monkeypatch.setenv("CI", "true")
    monkeypatch.chdir(tmp_path)           # the nightly example database is .tornpage/examples
    s = hypothesis_settings(CampaignConfig(database=str(tmp_path / "db")), 4)
    assert s.database is not None and not s.derandomize
    ci = hypothesis_settings(CampaignConfig(), 4)
    assert ci.database is None and not ci.derandomize
    seeds = set()
    for _ in range(2):
        js = tmp_path / "n.json"
        r = invoke("run", "--profile", "nightly", "--examples", "1", "--quiet", "--json", js,
                   "--artifacts", tmp_path / "a", env={"CI": "true"})
        # one workload runs one flush_log_at_trx_commit mode of the three the profile requires
        assert r.exit_code == 1, r.output
        d = json.loads(js.read_text())
        assert d["findings"] == [] and d["workloads"] == 1
        assert {"trx_commit_mode_0", "trx_commit_mode_1", "trx_commit_mode_2"} & \
            set(d["missing_probes"])
        seeds.add(json.loads(js.read_text())["seed"])
        # the example database exists after every nightly run, finding or not (CI caches it)
        assert (tmp_path / ".tornpage" / "examples").is_dir()
    assert len(seeds) == 2


def _signatures(res):
    return sorted((f.signature(), f.seed) for f in res.findings)


def test_process_pool_gives_the_same_result_as_one_process(tmp_path):
    import concurrent.futures
    cfg = CampaignConfig(seed=1, budget=None, examples=8, mutant="ack-before-log-fsync",
                         max_findings=5, artifacts_dir=str(tmp_path / "a"),
                         check_determinism=False, crash_states_per_workload=8,
                         shrink=False, trx_commit_modes=(1,))   # the mutant's mode
    local = run_campaign(cfg)
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        pooled = run_campaign(cfg, executor=pool, jobs=2)
    assert local.findings, "the mutant should be found in 8 workloads"
    assert _signatures(local) == _signatures(pooled)
    assert local.workloads == pooled.workloads and local.chunk_ids == pooled.chunk_ids


def test_dask_local_cluster_gives_the_same_findings(tmp_path):
    distributed = pytest.importorskip("distributed")
    cfg = CampaignConfig(seed=1, budget=None, examples=8, mutant="ack-before-log-fsync",
                         max_findings=5, artifacts_dir=str(tmp_path / "a"),
                         check_determinism=False, crash_states_per_workload=8,
                         shrink=False, trx_commit_modes=(1,))   # the mutant's mode
    local = run_campaign(cfg)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        remote = run_campaign(cfg, executor=client, jobs=2)
    assert local.findings
    assert _signatures(local) == _signatures(remote)
    assert local.crash_states == remote.crash_states
