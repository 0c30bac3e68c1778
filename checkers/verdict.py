"""Verdicts: what an oracle concluded about one recovered crash state, in words.

A failed verdict names the rule it broke (``rule``, an id of :data:`checkers.rules.RULES`);
its signature, which groups findings of one bug, is ``kind:rule``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tornpage.faultfs import search

from tornpage.checkers.rules import RULES

# finding kinds (INNODB.md's letters): L committed data lost, U uncommitted data visible,
# C corrupt page accepted or wrong page image, R refuses to start, H hang, E engine error;
# and I: a consistent read during the workload disagreed with the snapshot model
LOST, UNCOMMITTED, CORRUPT, REFUSED, HANG, ENGINE_ERROR = "L", "U", "C", "R", "H", "E"
ISOLATION = "I"
KIND_NAMES = {LOST: "committed data lost", UNCOMMITTED: "uncommitted data visible",
              CORRUPT: "corruption", REFUSED: "recovery refused to start",
              HANG: "the engine hangs (recovery or its background work never finishes)",
              ENGINE_ERROR: "engine raised an unexpected error",
              ISOLATION: "a read saw the wrong version (isolation anomaly)"}


@dataclass
class Verdict:
    ok: bool
    kind: str = ""
    summary: str = ""
    details: list[str] = field(default_factory=list)
    rule: str = ""

    @classmethod
    def passed(cls) -> "Verdict":
        return cls(True)

    @classmethod
    def failed(cls, kind: str, summary: str, details: list[str] | None = None,
               rule: str = "") -> "Verdict":
        """A failed verdict; ``rule`` (required) is the id of the rule that failed.

        Raises:
            ValueError: an unknown kind or rule id (a checker's bug: findings would merge).
        """
        if kind not in KIND_NAMES:
            raise ValueError(f"unknown finding kind {kind!r}")
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}: add it to checkers.rules.RULES")
        return cls(False, kind, str(summary), [str(d) for d in details or []], rule)

    @classmethod
    def from_problems(cls, kind: str, problems: list) -> "Verdict":
        """A failed verdict from a checker's problems (checkers.rules.Problem): the first
        problem is the summary and gives the rule, the others are details."""
        return cls.failed(kind, problems[0], problems[1:], rule=problems[0].rule)

    def signature(self) -> str:
        """A short, stable string that groups findings of the same bug: kind and rule id."""
        return search.signature(self.kind, self.rule)

    def same_finding(self, finding: dict) -> bool:
        """Whether this verdict is the finding ``finding`` (a stored ``to_json``) recorded:
        same kind and rule; for a finding stored before rules existed, same legacy signature
        (kind and the summary's first words)."""
        if "rule" in finding:
            return not self.ok and self.signature() == finding_signature(finding)
        return not self.ok and legacy_signature(self.to_json()) == finding_signature(finding)

    def explain(self) -> str:
        if self.ok:
            return "ok"
        head = f"[{self.kind}] {KIND_NAMES[self.kind]}: {self.summary}"
        return "\n".join([head] + ["  " + d for d in self.details])

    def to_json(self) -> dict:
        return {"ok": self.ok, "kind": self.kind, "summary": self.summary,
                "details": self.details, "rule": self.rule}


def legacy_signature(finding: dict) -> str:
    """The signature findings had before rule ids: kind and the summary's first words."""
    return f"{finding.get('kind')}:{str(finding.get('summary', '')).split(':')[0]}"


def finding_signature(finding: dict) -> str:
    """The signature of a stored finding (a verdict's ``to_json``): ``kind:rule``, or for a
    finding stored before rule ids existed (no ``rule`` key), :func:`legacy_signature`."""
    if "rule" in finding:
        return f"{finding.get('kind')}:{finding['rule']}"
    return legacy_signature(finding)
