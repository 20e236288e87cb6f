"""CONTRACT-TEST driver environments of the fake workspace: a cluster's Python with the run's wheel installed.

A Databricks task cluster imports the project from the wheel its ``libraries`` name, never
from a checkout. :class:`DriverEnvs` gives the emulated driver the same: one virtualenv per
set of wheels (by content), built on first use, where

- the submitted wheels are installed with ``pip install --no-deps`` (the package comes only
  from them);
- the heavy libraries (Ray, torch, MLflow, dagster-pipes ...) stand for the ML runtime's:
  the test interpreter's site-packages, as a plain ``.pth`` path line. Its own ``.pth``
  files are not run, so the dev install's editable finder, which would put the repository
  back on the path, never loads;
- the driver script itself is copied in, so nothing of the repository is on ``sys.path``.

Building one takes a few seconds (a bare venv, one ``pip install`` of a wheel without
dependencies), once per test session and wheel.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

DRIVER = Path(__file__).with_name("fake_databricks_driver.py")


class DriverEnvs:
    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()

    @staticmethod
    def site_packages(env: Path) -> Path:
        return env / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"

    def env_for(self, wheels: list[Path]) -> Path:
        """The environment with exactly ``wheels`` installed (built now if it is the first ask)."""
        digest = hashlib.sha256()
        for wheel in sorted(wheels):
            digest.update(wheel.name.encode() + wheel.read_bytes())
        env = self.root / digest.hexdigest()[:16]
        with self._lock:  # runs are driven from threads; a second one waits for the first build
            if not (env / "ready").exists():
                self._build(env, wheels)
        return env

    def command(self, wheels: list[Path]) -> list[str]:
        """The argv prefix that starts the emulated driver in the environment of ``wheels``."""
        env = self.env_for(wheels)
        return [str(env / "bin" / "python"), str(env / DRIVER.name)]

    def _build(self, env: Path, wheels: list[Path]) -> None:
        shutil.rmtree(env, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
        if wheels:
            pip = [sys.executable, "-m", "pip", "--python", str(env / "bin" / "python")]
            # --ignore-installed and no PYTHONPATH: a checkout on the path must not count as "already installed".
            clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            subprocess.run(
                [*pip, "install", "--quiet", "--no-deps", "--no-compile", "--disable-pip-version-check",
                 "--ignore-installed", *map(str, wheels)],
                check=True, env=clean, cwd=env,
            )
        # Only after the install: pip would otherwise find the dev install through this path and skip the wheel.
        (self.site_packages(env) / "zz_runtime_libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        shutil.copy(DRIVER, env / DRIVER.name)
        (env / "ready").touch()
