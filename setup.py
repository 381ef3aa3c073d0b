"""Packaging metadata lives in setup.cfg; this only ships the API description.

docs/openapi.yaml is the one copy of the admin API's OpenAPI description (the
docs link it, tests check it); the wheel carries it as
``synapse_breakout/openapi.yaml``, copied at build time.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED_DOCS = {"docs/openapi.yaml": "openapi.yaml"}


class BuildPy(build_py):
    """build_py, plus the documents the package ships (``SHIPPED_DOCS``)."""

    def run(self) -> None:
        super().run()
        for source, name in SHIPPED_DOCS.items():
            target = Path(self.build_lib) / "synapse_breakout" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / source, target)


setup(cmdclass={"build_py": BuildPy})
