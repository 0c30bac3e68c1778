"""Replay artifacts: one JSON file per finding that reproduces it exactly.

An artifact holds the seed, the workload settings, the workload steps, the crash plan, the
mutant (if any), the engine version and the trace hash.  Replaying re-runs the workload (which
is deterministic), checks the trace hash, rebuilds the crash state from the plan and judges it
again.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields

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
    new_work: int | None = None     # seed of new transactions run during background rollback

    def to_json(self) -> dict:
        out = {"tornpage_artifact": ARTIFACT_FORMAT, "engine_version": self.engine_version,
                "seed": self.seed, "settings": self.settings.to_json(), "mutant": self.mutant,
                "steps": self.steps, "crash_plan": self.plan.to_json(),
                "recovery_crash_plans": [p.to_json() for p in self.nested],
                "trace_hash": self.trace_hash, "finding": self.finding,
                "shrunk": self.shrunk}
        if self.new_work is not None:
            out["recovery_new_work"] = self.new_work
        return out

    def save_as(self, path: str) -> str:
        """Write the artifact to ``path``; return it."""
        with open(path, "w") as f:
            json.dump(self.to_json(), f, indent=1, sort_keys=True)
            f.write("\n")
        return path

    def save(self, directory: str) -> str:
        """Write the artifact into ``directory`` (created if missing) under a name made of its
        kind, seed, trace hash and crash position; return the path."""
        os.makedirs(directory, exist_ok=True)
        name = f"finding-{self.finding.get('kind', 'X')}-seed{self.seed}-{self.trace_hash[:10]}" \
               f"-p{self.plan.position}{'' if self.shrunk else '-unshrunk'}.json"
        return self.save_as(os.path.join(directory, name))


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


def _got(v) -> str:
    """``got 'x' (str)``: the bad value as written and its JSON-ish type, so a page_size given
    as the string "4096" is not reported as ``got 4096``."""
    return f"got {v!r} ({type(v).__name__})"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# the type each WorkloadSettings field must have in an artifact (checked before the engine's
# own range checks, whose messages print the value with str())
_SETTING_TYPES = {"int": (_is_int, "an integer"), "bool": (lambda v: isinstance(v, bool),
                                                            "true or false"),
                  "str": (lambda v: isinstance(v, str), "a string"),
                  "tuple": (lambda v: isinstance(v, (list, tuple)), "a list")}


def _settings(d) -> WorkloadSettings:
    """WorkloadSettings from an artifact's ``settings`` object; ArtifactError-ready ValueError
    messages name the field."""
    if not isinstance(d, dict):
        raise ValueError(f"settings must be an object, {_got(d)}")
    known = {f.name: f for f in fields(WorkloadSettings)}
    for key, v in d.items():
        if key not in known:
            raise ValueError(f"settings has an unknown field {key!r} (known: "
                             f"{', '.join(known)})")
        t = known[key].type
        check = _SETTING_TYPES.get(t if isinstance(t, str) else t.__name__)
        if check and not check[0](v):
            raise ValueError(f"settings.{key} must be {check[1]}, {_got(v)}")
    try:
        settings = WorkloadSettings.from_json(d)
        settings.engine_config()        # raises ConfigError (a ValueError) when out of range
        get_device(settings.device)
    except (TypeError, ValueError, UnknownDevice) as e:
        why = e.args[0] if isinstance(e, KeyError) and e.args else e     # no KeyError quotes
        raise ValueError(f"settings: {why}") from None
    return settings


def _field(d: dict, key: str, ok, what: str, default=...):
    """``d[key]`` when ``ok`` accepts it; ValueError naming the field otherwise."""
    if key not in d:
        if default is not ...:
            return default
        raise ValueError(f"missing field {key!r}")
    v = d[key]
    if not ok(v):
        raise ValueError(f"{key} must be {what}, {_got(v)}")
    return v


def from_dict(d, path: str = "<artifact>") -> Artifact:
    """An artifact from its JSON object (``path`` names it in errors).

    Raises:
        ArtifactError: not a well-formed artifact; the message names the field and shows the
            bad value with its type.
    """
    if not isinstance(d, dict) or d.get("tornpage_artifact") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path}: not a tornpage artifact (format "
                            f"{d.get('tornpage_artifact') if isinstance(d, dict) else None!r}, "
                            f"expected {ARTIFACT_FORMAT})")
    try:
        mutant = _field(d, "mutant", lambda v: v is None or isinstance(v, str),
                        "a mutant name or null", None)
        if mutant is not None and mutant not in MUTANTS:
            raise ArtifactError(f"{path}: unknown mutant {mutant!r}")
        seed = _field(d, "seed", _is_int, "an integer")
        settings = _settings(_field(d, "settings", lambda v: True, ""))
        steps_json = _field(d, "steps", lambda v: isinstance(v, list), "a list")
        try:
            steps = validate_steps(steps_json)
        except ValueError as e:
            raise ValueError(f"steps: {e}") from None
        try:
            plan = CrashPlan.from_json(_field(d, "crash_plan", lambda v: isinstance(v, dict),
                                              "an object"))
        except CrashPlanError as e:
            raise ValueError(f"crash_plan: {e}") from None
        nested_json = _field(d, "recovery_crash_plans", lambda v: isinstance(v, list),
                             "a list", [])
        nested = []
        for i, p in enumerate(nested_json):
            if not isinstance(p, dict):
                raise ValueError(f"recovery_crash_plans[{i}] must be an object, {_got(p)}")
            try:
                nested.append(CrashPlan.from_json(p))
            except CrashPlanError as e:
                raise ValueError(f"recovery_crash_plans[{i}]: {e}") from None
        trace_hash = _field(d, "trace_hash", lambda v: isinstance(v, str), "a string")
        finding = _field(d, "finding", lambda v: v is None or isinstance(v, dict),
                         "an object or null", None)
        engine_version = _field(d, "engine_version", lambda v: isinstance(v, str), "a string",
                                "")
        shrunk = _field(d, "shrunk", lambda v: isinstance(v, bool), "true or false", True)
        new_work = _field(d, "recovery_new_work", lambda v: v is None or _is_int(v),
                          "an integer or null", None)
        return Artifact(seed=seed, settings=settings, steps=steps, plan=plan, nested=nested,
                        mutant=mutant, trace_hash=trace_hash, finding=dict(finding or {}),
                        engine_version=engine_version, shrunk=shrunk, new_work=new_work)
    except ArtifactError:
        raise
    except (KeyError, TypeError, ValueError, CrashPlanError, UnknownDevice) as e:
        why = str(e) if type(e) in (ValueError, CrashPlanError) else f"{type(e).__name__}: {e}"
        raise ArtifactError(f"{path}: malformed artifact: {why}") from None
