"""The package as published: sdist and wheel, installed beside real Synapse.

``python -m build`` makes an sdist and a wheel that ``twine check`` passes; the
wheel carries ``py.typed`` and the admin API's OpenAPI description and
declares the supported Synapse range. Then the wheel is installed into a
fresh virtualenv beside the lowest supported Synapse (constraints-lowest.txt)
and beside the newest (constraints.txt), and the demo runs there: a real
Synapse loads the module from the wheel and a break-out starts.

Slow (two virtualenvs): runs in ``tox -e package`` (BREAKOUT_PACKAGE=1).
"""

from __future__ import annotations

import email.parser
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from test_demo import check_demo

import synapse_breakout
from synapse_breakout.synapse_version import MINIMUM_SYNAPSE

# No database here: the same on SQLite and PostgreSQL (tox -e postgres
# skips it).
pytestmark = pytest.mark.no_database

ROOT = Path(__file__).resolve().parent.parent

if os.environ.get("BREAKOUT_PACKAGE") != "1":
    pytest.skip("run by tox -e package", allow_module_level=True)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return out


def wheel_of(dist: Path) -> Path:
    [wheel] = dist.glob("*.whl")
    return wheel


def test_sdist_and_wheel_pass_twine_check(dist: Path) -> None:
    version = synapse_breakout.__version__
    assert sorted(p.name for p in dist.iterdir()) == [
        f"synapse_breakout-{version}-py3-none-any.whl",
        f"synapse_breakout-{version}.tar.gz",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *dist.iterdir()],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_wheel_carries_types_and_the_api_description(dist: Path) -> None:
    with zipfile.ZipFile(wheel_of(dist)) as wheel:
        names = set(wheel.namelist())
        assert "synapse_breakout/py.typed" in names
        assert (
            wheel.read("synapse_breakout/openapi.yaml")
            == (ROOT / "docs" / "openapi.yaml").read_bytes()
        )
        [metadata_name] = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(wheel.read(metadata_name).decode())
    assert metadata["Version"] == "0.2.0" == synapse_breakout.__version__
    requires = metadata.get_all("Requires-Dist") or []
    assert f"matrix-synapse>={MINIMUM_SYNAPSE}" in requires
    assert metadata["Description-Content-Type"] == "text/markdown"
    # Nothing of the tests or scripts in the wheel.
    assert {n.split("/")[0] for n in names} == {
        "synapse_breakout",
        f"synapse_breakout-{metadata['Version']}.dist-info",
    }


@pytest.mark.parametrize(
    "constraints",
    ["constraints-lowest.txt", "constraints.txt"],
    ids=["lowest", "newest"],
)
def test_wheel_beside_synapse_runs_the_demo(
    dist: Path, tmp_path: Path, constraints: str
) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    pins = ROOT / constraints
    # Only the index: no constraint from the caller's environment.
    env = {k: v for k, v in os.environ.items() if k != "PIP_CONSTRAINT"}
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "-c", str(pins), str(wheel_of(dist))],
        check=True,
        capture_output=True,
        env=env,
        cwd=tmp_path,
    )
    wanted = next(
        line.split("==")[1]
        for line in pins.read_text().splitlines()
        if line.startswith("matrix-synapse==")
    )
    shown = subprocess.run(
        [
            python,
            "-c",
            "import synapse, synapse_breakout;"
            "print(synapse.__version__, synapse_breakout.__file__)",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout.split()
    assert shown[0] == wanted
    assert shown[1].startswith(str(env_dir)), "the module comes from the wheel"
    check_demo(python, tmp_path)
