"""A campaign is a function of its seed alone: not of what else the process imported.

Hypothesis mixes literals from the source of every local module in ``sys.modules`` into what it
generates; the runner switches that off while a chunk runs (``runner._no_local_constants``).
Without it, importing a module full of constants (a user's conftest, a test module, an editable
install) changed the workloads a seed draws, and a Dask worker or a pytest run disagreed with
the command line."""
from __future__ import annotations

import contextlib
import importlib
import sys

import pytest

from tornpage.campaigns.runner import CampaignConfig, run_campaign

pytestmark = pytest.mark.timeout(120)


def _summary(tmp_path, name: str, seed: int = 0) -> dict:
    # seed 0: its 16 workloads draw one of the module's constants when nothing guards against
    # it (measured, installed and editable; the control below tries further seeds)
    res = run_campaign(CampaignConfig(seed=seed, budget=None, examples=16, recovery_crashes=0,
                                      artifacts_dir=str(tmp_path / name)))
    j = res.to_json(CampaignConfig())
    return {k: j[k] for k in ("workloads", "crash_states", "crash_states_reused", "probes",
                              "coverage")}


def _with_constants_module(tmp_path, monkeypatch, name: str, seed: int = 0) -> dict:
    """The campaign's summary with a local module of many integer constants imported."""
    values = sorted({(7 ** i) % (2 ** 32) for i in range(400)} | set(range(-5, 300)))
    (tmp_path / f"{name}.py").write_text(
        "\n".join(f"C{i} = {v}" for i, v in enumerate(values)) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module(name)
    try:
        return _summary(tmp_path, name, seed)
    finally:
        sys.modules.pop(name, None)


def test_importing_a_module_full_of_constants_changes_nothing(tmp_path, monkeypatch):
    before = _summary(tmp_path, "before")
    assert _with_constants_module(tmp_path, monkeypatch, "user_constants_a") == before


def test_without_the_guard_the_same_import_changes_the_campaign(tmp_path, monkeypatch):
    """The control: the check above can fail (with this Hypothesis)."""
    from tornpage.campaigns import runner
    providers = pytest.importorskip("hypothesis.internal.conjecture.providers")
    if not hasattr(providers, "_get_local_constants"):
        pytest.skip("this Hypothesis draws no local constants")
    monkeypatch.setattr(runner, "_no_local_constants", contextlib.nullcontext)
    for seed in range(3):       # whether a draw takes a constant depends on every module loaded
        before = _summary(tmp_path, f"before{seed}", seed)
        if _with_constants_module(tmp_path, monkeypatch, f"user_constants_b{seed}", seed) \
                != before:
            return
    pytest.fail("without the guard, importing the constants changed none of seeds 0-2's "
                "campaigns: the guarded test above proves nothing")
