"""tornpage's pytest plugin (entry point ``pytest11``: ``tornpage``): crash tests for your own
storage code.  See docs/pytest-plugin.md.

Fixtures:
  ``crash_test``       :func:`campaigns.crashtest.crash_test` bound to the run's seed, profile and
                       budget; on failure it records the reproduction command.
  ``tornpage_disk``    a fresh :class:`faultfs.SimDisk` (the VFS protocol, traced).
  ``tornpage_fakefs``  a running :class:`faultfs.pyfakefs_vfs.FakeFSAdapter`: ``open``/``os``
                       act on a fake file system, the directory ``tornpage_fakefs.root`` traced.
  ``tornpage_seed``    the run's seed.

Options:
  ``--tornpage-seed N``         seed (default: a fresh random one per run, shown in the header);
  ``--tornpage-profile ci|nightly``  ``ci``: a small deterministic budget; ``nightly``: larger;
  ``--tornpage-budget B``       per crash test: ``B`` crash states, or ``Bs`` seconds.
  ``--tornpage-incomplete fail|skip``  a budget that ends before every planned crash state was
                                checked fails the test (default) or skips it; never a pass;
  ``--tornpage-recovery-crashes``  also crash the user's recovery itself.

A failing crash test gets the one-line command that reruns it (same seed, profile and budget)
under its traceback, in the terminal summary and as the JUnit property ``tornpage_reproduce``.
Nothing changes for tests that use none of the fixtures.
"""
from __future__ import annotations

import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from tornpage.campaigns import crashtest
from tornpage.faultfs import DEFAULT_DEVICE, SimDisk

PROFILES = {
    # crash states per crash test, crash points enumerated whole up to, samples beyond
    "ci": dict(max_states=2000, exhaustive_bound=256, samples_per_point=16),
    "nightly": dict(max_states=100_000, exhaustive_bound=4096, samples_per_point=256),
}

_REPRODUCE = pytest.StashKey[str]()


@dataclass(frozen=True)
class Settings:
    seed: int
    profile: str
    budget: str | None          # as given on the command line
    max_states: int
    time_budget: float | None   # seconds

    def kwargs(self) -> dict:
        return dict(seed=self.seed, max_states=self.max_states, budget=self.time_budget,
                    exhaustive_bound=PROFILES[self.profile]["exhaustive_bound"],
                    samples_per_point=PROFILES[self.profile]["samples_per_point"])


def _budget(text: str) -> str:
    """argparse type: ``N`` states or ``Ns`` seconds, positive."""
    t = text.strip().lower()
    try:
        v = float(t[:-1]) if t.endswith("s") else int(t)
    except ValueError:
        raise pytest.UsageError(f"--tornpage-budget: {text!r} is neither N (crash states) nor "
                                f"Ns (seconds)") from None
    if v <= 0:
        raise pytest.UsageError(f"--tornpage-budget must be positive, got {text!r}")
    return t


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("tornpage", "tornpage crash tests")
    g.addoption("--tornpage-seed", type=int, default=None, metavar="N",
                help="seed for crash-state sampling (default: random per run, shown in the "
                     "header)")
    g.addoption("--tornpage-profile", choices=sorted(PROFILES), default="ci",
                help="ci: small deterministic budget (default); nightly: larger")
    g.addoption("--tornpage-budget", type=_budget, default=None, metavar="N|Ns",
                help="per crash test: N crash states, or N seconds with an 's' suffix")
    g.addoption("--tornpage-recovery-crashes", action="store_true", default=False,
                help="also crash your recovery itself (up to 8 crashes in its IO after each "
                     "passing crash state): it must recover to a state the checker accepts")
    g.addoption("--tornpage-incomplete", choices=("fail", "skip"), default="fail",
                help="a crash test whose budget ends before every planned crash state was "
                     "checked: fail (default) or skip, with how many were checked; never a pass")


def pytest_configure(config: pytest.Config) -> None:
    seed = config.getoption("tornpage_seed")
    if seed is None:
        worker = getattr(config, "workerinput", None)     # pytest-xdist: the controller's seed
        seed = worker["tornpage_seed"] if worker and "tornpage_seed" in worker \
            else secrets.randbelow(2 ** 32)
    profile = config.getoption("tornpage_profile")
    budget = config.getoption("tornpage_budget")
    max_states, seconds = PROFILES[profile]["max_states"], None
    if budget is not None:
        if budget.endswith("s"):
            seconds = float(budget[:-1])
        else:
            max_states = int(budget)
    config.stash[_SETTINGS] = Settings(seed, profile, budget, max_states, seconds)
    config.pluginmanager.register(_Summary(), "tornpage-summary")


_SETTINGS = pytest.StashKey[Settings]()
_RAN = pytest.StashKey[bool]()           # a crash test ran in this session


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """pytest-xdist: every worker uses the controller's seed."""
    node.workerinput["tornpage_seed"] = node.config.stash[_SETTINGS].seed


def pytest_report_header(config: pytest.Config) -> str:
    s = config.stash[_SETTINGS]
    extra = f", budget {s.budget}" if s.budget else ""
    return f"tornpage: seed {s.seed} (profile {s.profile}{extra})"


def reproduce_command(item: pytest.Item) -> str:
    """The command line that reruns ``item`` with the same seed, profile and budget, runnable
    from the directory pytest was invoked in."""
    config = item.config
    s = config.stash[_SETTINGS]
    nodeid = item.nodeid
    inv = Path(config.invocation_params.dir)
    if inv != config.rootpath:
        path, _, rest = nodeid.partition("::")
        try:
            nodeid = Path(config.rootpath / path).relative_to(inv).as_posix() + \
                ("::" + rest if rest else "")
        except ValueError:
            nodeid = str(config.rootpath / path) + ("::" + rest if rest else "")
    parts = ["pytest", nodeid, "--tornpage-seed", str(s.seed)]
    if config.getoption("tornpage_recovery_crashes"):
        parts.append("--tornpage-recovery-crashes")
    if s.profile != "ci":
        parts += ["--tornpage-profile", s.profile]
    if s.budget:
        parts += ["--tornpage-budget", s.budget]
    parts += ["-p", "tornpage"]
    return " ".join(shlex.quote(p) for p in parts)


# -- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tornpage_seed(pytestconfig: pytest.Config) -> int:
    """The run's seed (``--tornpage-seed``, or the random one in the report header)."""
    return pytestconfig.stash[_SETTINGS].seed


@pytest.fixture
def tornpage_disk() -> SimDisk:
    """A fresh, empty :class:`SimDisk` (device ``sector512``) tracing every IO."""
    return SimDisk(DEFAULT_DEVICE)


@pytest.fixture
def tornpage_fakefs():
    """A running pyfakefs adapter: ``open``/``os`` act on a fake file system (nothing reaches
    the real disk), and IO below ``tornpage_fakefs.root`` is traced in ``.trace``."""
    from tornpage.faultfs.pyfakefs_vfs import FakeFSAdapter
    with FakeFSAdapter() as adapter:
        yield adapter


@pytest.fixture
def crash_test(request: pytest.FixtureRequest):
    """:func:`campaigns.crashtest.crash_test` with the run's seed and budget (``seed``,
    ``max_states``, ``budget``… may still be passed)::

        def test_store(crash_test):
            crash_test(operation, recover, check, vfs_kind="pyfakefs")
    """
    item = request.node
    settings = item.config.stash[_SETTINGS]
    command = reproduce_command(item)

    skip_incomplete = item.config.getoption("tornpage_incomplete") == "skip"

    def bound(operation, recover=None, check=None, **kwargs):
        __tracebackhide__ = True
        kw = settings.kwargs()
        kw.update(kwargs)
        kw.setdefault("reproduce", command)
        if skip_incomplete:
            kw.setdefault("incomplete", "return")
        if item.config.getoption("tornpage_recovery_crashes"):
            kw.setdefault("recovery_crashes", True)
        item.config.stash[_RAN] = True
        try:
            result = crashtest.crash_test(operation, recover, check, **kw)
        except (crashtest.CrashConsistencyError, crashtest.CrashTestIncomplete):
            item.stash[_REPRODUCE] = command
            raise
        if not result.complete:
            pytest.skip(f"tornpage: budget ended after {result.states} of {result.planned} "
                        f"planned crash states (--tornpage-incomplete skip)")
        return result
    return bound


# -- reporting ------------------------------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    command = item.stash.get(_REPRODUCE, None)
    if command is None or report.when != "call" or not report.failed:
        return
    prop = ("tornpage_reproduce", command)
    report.user_properties.append(prop)
    item.user_properties.append(prop)      # junitxml writes the teardown report's properties
    if hasattr(report.longrepr, "addsection"):
        report.longrepr.addsection("tornpage", f"reproduce: {command}")


class _Summary:
    """Collects the reproduction commands of failed tests (from pytest-xdist workers' reports
    too: the command travels as a user property) for the terminal summary."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.failed:
            self.commands += [str(v) for k, v in report.user_properties
                              if k == "tornpage_reproduce"]

    def pytest_terminal_summary(self, terminalreporter) -> None:
        config = terminalreporter.config
        if config.stash.get(_RAN, False) and config.getoption("verbose") < 0:
            # the header (with the seed) is not printed under -q: say it here
            terminalreporter.write_line(f"tornpage: seed {config.stash[_SETTINGS].seed}")
        if self.commands:
            terminalreporter.section("tornpage: reproduce")
            for command in self.commands:
                terminalreporter.write_line(command)
