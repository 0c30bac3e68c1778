"""Verdicts: what an oracle concluded about one recovered crash state, in words."""
from __future__ import annotations

from dataclasses import dataclass, field

# finding kinds (INNODB.md's letters): L committed data lost, U uncommitted data visible,
# C corrupt page accepted or wrong page image, R refuses to start, H hang, E engine error;
# and I: a consistent read during the workload disagreed with the snapshot model
LOST, UNCOMMITTED, CORRUPT, REFUSED, ENGINE_ERROR = "L", "U", "C", "R", "E"
ISOLATION = "I"
KIND_NAMES = {LOST: "committed data lost", UNCOMMITTED: "uncommitted data visible",
              CORRUPT: "corruption", REFUSED: "recovery refused to start",
              ENGINE_ERROR: "engine raised an unexpected error",
              ISOLATION: "a read saw the wrong version (isolation anomaly)"}


@dataclass
class Verdict:
    ok: bool
    kind: str = ""
    summary: str = ""
    details: list[str] = field(default_factory=list)

    @classmethod
    def passed(cls) -> "Verdict":
        return cls(True)

    @classmethod
    def failed(cls, kind: str, summary: str, details: list[str] | None = None) -> "Verdict":
        assert kind in KIND_NAMES, kind
        return cls(False, kind, summary, list(details or []))

    def signature(self) -> str:
        """A short, stable string that groups findings of the same bug."""
        return f"{self.kind}:{self.summary.split(':')[0]}"

    def explain(self) -> str:
        if self.ok:
            return "ok"
        head = f"[{self.kind}] {KIND_NAMES[self.kind]}: {self.summary}"
        return "\n".join([head] + ["  " + d for d in self.details])

    def to_json(self) -> dict:
        return {"ok": self.ok, "kind": self.kind, "summary": self.summary,
                "details": self.details}
