"""CI's CLI check: every profile's code location validates with no cloud credentials in the environment.

The `dagster asset materialize` smoke is test_dataset_assets.py::test_cli_materializes_the_dataset.
"""

import subprocess

from rayml_assets.settings import PROFILES_DIR
from rayml_assets_tests.support.dagster_stack import BIN, REPO, clean_env

PROFILES = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def test_definitions_validate_for_every_profile_without_credentials(tmp_path):
    assert {"local", "sit", "uat", "prod"} <= set(PROFILES)
    procs = {}
    for name in PROFILES:  # in parallel: each process imports the whole stack (about 15 s of CPU)
        # One DAGSTER_HOME each: processes sharing a fresh one race its SQLite schema migration.
        (tmp_path / name / "dagster_home").mkdir(parents=True)
        home = tmp_path / name
        env = clean_env(RAYML_PROFILE=name, RAYML_HOME=str(home), DAGSTER_HOME=str(home / "dagster_home"))
        assert not [k for k in env if k.startswith(("DATABRICKS_", "AZURE_"))]
        procs[name] = subprocess.Popen(
            [str(BIN / "dagster"), "definitions", "validate", "-m", "rayml_assets.definitions"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
    failures = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0 or "Validation successful" not in out:
            failures[name] = out[-3000:]
    assert not failures, failures
