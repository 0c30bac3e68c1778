"""Replay artifacts: one JSON file per finding that reproduces it exactly.

An artifact holds the seed, the workload settings, the workload steps, the crash plan, the
mutant (if any), the engine version and the trace hash.  Replaying re-runs the workload (which
is deterministic), checks the trace hash, rebuilds the crash state from the plan and judges it
again.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from tornpage.faultfs import CrashPlan, CrashPlanError, UnknownDevice, get_device

from tornpage.campaigns.mutants import MUTANTS
from tornpage.campaigns.workload import WorkloadSettings, validate_steps

ARTIFACT_FORMAT = 1
ENGINE_VERSION = "tornpage-engine 0.1.0"


class ArtifactError(ValueError):
    """A file that is not a readable tornpage artifact (the message says what is wrong)."""


@dataclass
class Artifact:
    seed: int
    settings: WorkloadSettings
    steps: list
    plan: CrashPlan
    mutant: str | None
    trace_hash: str
    finding: dict
    nested: list = field(default_factory=list)      # crash plans during recovery
    engine_version: str = ENGINE_VERSION
    shrunk: bool = True             # False: saved before shrinking (a larger case)

    def to_json(self) -> dict:
        return {"tornpage_artifact": ARTIFACT_FORMAT, "engine_version": self.engine_version,
                "seed": self.seed, "settings": self.settings.to_json(), "mutant": self.mutant,
                "steps": self.steps, "crash_plan": self.plan.to_json(),
                "recovery_crash_plans": [p.to_json() for p in self.nested],
                "trace_hash": self.trace_hash, "finding": self.finding,
                "shrunk": self.shrunk}

    def save_as(self, path: str) -> str:
        """Write the artifact to ``path``; return it."""
        with open(path, "w") as f:
            json.dump(self.to_json(), f, indent=1, sort_keys=True)
            f.write("\n")
        return path

    def save(self, directory: str) -> str:
        os.makedirs(directory, exist_ok=True)
        name = f"finding-{self.finding.get('kind', 'X')}-seed{self.seed}-{self.trace_hash[:10]}" \
               f"-p{self.plan.position}{'' if self.shrunk else '-unshrunk'}.json"
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            json.dump(self.to_json(), f, indent=1, sort_keys=True)
            f.write("\n")
        return path


def _bool(v, what: str) -> bool:
    if not isinstance(v, bool):
        raise ArtifactError(f"{what} must be true or false, got {v!r}")
    return v


def load(path: str) -> Artifact:
    """Read an artifact.

    Raises:
        ArtifactError: the file is missing, not JSON, or not a well-formed artifact.
    """
    try:
        with open(path) as f:
            d = json.load(f)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path}: not a JSON artifact ({e})") from None
    return from_dict(d, path)


def from_dict(d, path: str = "<artifact>") -> Artifact:
    """An artifact from its JSON object (``path`` names it in errors).

    Raises:
        ArtifactError: not a well-formed artifact.
    """
    if not isinstance(d, dict) or d.get("tornpage_artifact") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path}: not a tornpage artifact (format "
                            f"{d.get('tornpage_artifact') if isinstance(d, dict) else None!r}, "
                            f"expected {ARTIFACT_FORMAT})")
    try:
        mutant = d.get("mutant")
        if mutant is not None and mutant not in MUTANTS:
            raise ArtifactError(f"{path}: unknown mutant {mutant!r}")
        settings = WorkloadSettings.from_json(d["settings"])
        settings.engine_config()        # raises ConfigError (a ValueError) when out of range
        get_device(settings.device)
        return Artifact(seed=int(d["seed"]),
                        settings=settings,
                        steps=validate_steps(d["steps"]),
                        plan=CrashPlan.from_json(d["crash_plan"]),
                        nested=[CrashPlan.from_json(p) for p in
                                d.get("recovery_crash_plans", [])],
                        mutant=mutant, trace_hash=str(d["trace_hash"]),
                        finding=dict(d.get("finding") or {}),
                        engine_version=str(d.get("engine_version", "")),
                        shrunk=_bool(d.get("shrunk", True), "shrunk"))
    except ArtifactError:
        raise
    except (KeyError, TypeError, ValueError, CrashPlanError, UnknownDevice) as e:
        raise ArtifactError(f"{path}: malformed artifact: {type(e).__name__}: {e}") from None
