"""The installed layout: everything under the one ``tornpage`` package, a small public facade, and
a user's own top-level ``engine``/``checkers``/``campaigns``/``faultfs`` packages left alone while
the plugin is loaded (it is auto-loaded into every pytest session of every user)."""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import tornpage

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.timeout(120)


def test_the_distribution_installs_only_the_tornpage_package():
    # the installed distribution (not a tornpage.egg-info a build left in the source tree)
    purelib = sysconfig.get_paths()["purelib"]
    (dist,) = [d for d in importlib.metadata.distributions(path=[purelib])
               if d.metadata["Name"] == "tornpage"]
    tops = {Path(str(f)).parts[0] for f in dist.files or ()}
    tops = {t for t in tops if not t.endswith(".dist-info") and t != ".." and
            not t.startswith("__editable__") and not t.endswith(".pth") and t != "__pycache__"}
    # an editable install lists only a finder and a .pth; a wheel install lists the package
    assert tops <= {"tornpage"}, tops
    eps = {ep.name: ep.value for ep in dist.entry_points}
    assert eps["tornpage"].startswith("tornpage.")


def test_the_facade_names_the_public_api():
    for name in ("crash_test", "ack", "begin", "mark", "Promised", "CrashConsistencyError",
                 "SimDisk", "VFS", "VFSFile", "OsVFS", "DEVICES", "DEVICE_NAMES",
                 "DEFAULT_DEVICE", "get_device"):
        assert hasattr(tornpage, name), name
    assert set(tornpage.__all__) >= {"crash_test", "SimDisk", "VFS"}
    assert tornpage.DEFAULT_DEVICE in tornpage.DEVICE_NAMES
    assert "engine" not in tornpage.__all__


USER_PACKAGES = {
    "engine/__init__.py": "from engine.core import X\n",
    "engine/core.py": "X = 'the user engine'\n",
    "checkers/__init__.py": "CHECK = 'the user checkers'\n",
    "campaigns/__init__.py": "RUN = 'the user campaigns'\n",
    "faultfs/__init__.py": "FS = 'the user faultfs'\n",
    "tests/test_user.py": (
        "import engine, checkers, campaigns, faultfs\n"
        "from engine import X\n"
        "def test_own_packages(crash_test):\n"
        "    assert X == 'the user engine'\n"
        "    assert checkers.CHECK == 'the user checkers'\n"
        "    assert campaigns.RUN == 'the user campaigns'\n"
        "    assert faultfs.FS == 'the user faultfs'\n"
        "    assert callable(crash_test)          # the plugin is loaded\n"),
}


@pytest.mark.parametrize("how", ["pytest", "python -m pytest"])
def test_a_user_project_with_its_own_engine_package_runs_green(pytester, how):
    for rel, text in USER_PACKAGES.items():
        path = pytester.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (pytester.path / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    pytest_cmd = [str(Path(sys.executable).with_name("pytest"))] if how == "pytest" \
        else [sys.executable, "-m", "pytest"]
    r = subprocess.run(pytest_cmd + ["-q", "-p", "no:cacheprovider", "tests"],
                       cwd=pytester.path, capture_output=True, text=True, timeout=110)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout
