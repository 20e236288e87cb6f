"""Runtime parity: the wheel installs and runs on the target runtime, Databricks Runtime 18 LTS ML.

The cluster installs the wheel with its `dependencies` (the cluster set) on top of what the runtime
ships (docs/databricks.md, "Target runtime" and "Dependency sets"). Three layers:

- static: pyproject's metadata admits the runtime's Python 3.12 and leaves the runtime's libraries
  unpinned and the orchestrator's out (these fail on the old pyproject, `requires-python <3.12` and the
  whole orchestrator, pinned torch included, on the cluster);
- resolve (~40 s, needs PyPI): in Python 3.12, `pip install --dry-run --report` of the freshly built wheel
  under the runtime's pins (deploy/cluster-constraints/dbr-18-lts-ml.txt) resolves, keeps every pinned
  library at its pin and pulls in nothing orchestrator-only;
- run (~15 s): the wheel goes with `--no-deps` into .venv-dbr, the cluster set under the same pins
  (`make dbr-venv`, which `make test` runs: built once, about 7 GB and 2.5 min here, rebuilt when pyproject or the pins
  change); `pip check` passes there, every task module imports, and the Pipes entry every task script
  opens (`task_runtime`, log shipping included) runs.

Not covered: the runtime's versions that the stored release notes did not give (torch, torchvision, Ray,
numpy, pandas, pyarrow, scikit-learn, Python's patch level) are not pinned, so pip takes PyPI's newest
allowed ones; the runtime's other preinstalled packages; GPUs; the DBFS/Spark Pipes channels and a task's
own work (its tests run it in the orchestrator's venv). Skips only where no Python 3.12 runs.
"""

from __future__ import annotations

import glob
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
CONSTRAINTS = ROOT / "deploy" / "cluster-constraints" / "dbr-18-lts-ml.txt"
DBR_VENV = ROOT / ".venv-dbr"
# Shipped by the runtime and used as shipped: the cluster set may not pin them.
RUNTIME_SHIPPED = {
    "torch", "torchvision", "mlflow", "ray", "pyspark", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy",
}
ORCHESTRATOR_ONLY = {"dagster", "dagster-webserver", "dagster-databricks", "dagster-mlflow", "fastdup"}
# Must never reach a cluster through the wheel: the orchestrator's, and Spark, which the runtime owns.
NOT_ON_CLUSTER = ORCHESTRATOR_ONLY | {"pyspark"}
TASK_MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts) for p in ROOT.glob("rayml_assets/lib/*/*_task.py")
)


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _python312() -> str | None:
    """The first Python 3.12 that runs, found as the Makefile's PYTHON312 is (a pyenv shim may not run)."""
    pyenv = sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.12.*/bin/python")))
    candidates = [shutil.which("python3.12"), *pyenv]
    for python in filter(None, candidates):
        if subprocess.run([python, "-c", ""], capture_output=True).returncode == 0:
            return python
    return None


def _pins() -> dict[str, str]:
    reqs = [Requirement(line) for line in CONSTRAINTS.read_text().splitlines() if line.strip() and line[0] != "#"]
    return {_name(r.name): str(r.specifier).removeprefix("==") for r in reqs}


def _run(*cmd, timeout: int) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_wheel_installs_on_the_runtime_python():
    spec = SpecifierSet(PROJECT["requires-python"])
    assert "3.12.3" in spec and "3.11.7" in spec, spec


def test_cluster_set_leaves_the_runtime_libraries_as_shipped():
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    names = {_name(r.name) for r in reqs}
    assert not names & NOT_ON_CLUSTER, names & NOT_ON_CLUSTER
    pinned = {_name(r.name) for r in reqs if _name(r.name) in RUNTIME_SHIPPED and r.specifier}
    assert not pinned, f"the cluster set pins runtime libraries: {pinned}"
    assert {"dagster-pipes", "deltalake", "torchvision", "azure-monitor-ingestion"} <= names


def test_orchestrator_set_carries_dagster():
    names = {_name(Requirement(r).name) for r in PROJECT["optional-dependencies"]["orchestrator"]}
    assert {"dagster", "dagster-webserver", "dagster-databricks"} <= names


def test_constraints_pin_the_runtime_mlflow_and_spark():
    # MLflow 3.8.1: `log_model(name=...)` is MLflow 3 (16.4 LTS ML's 2.21 lacks it); Spark 4.1.0.
    pins = _pins()
    assert (pins["mlflow"], pins["pyspark"]) == ("3.8.1", "4.1.0"), pins
    assert TASK_MODULES, "no rayml_assets/lib/*/*_task.py"


@pytest.fixture(scope="module")
def python312() -> str:
    python = _python312()
    if python is None:
        pytest.skip("no Python 3.12 here (the runtime's Python): the venv part of the parity check needs one")
    return python


@pytest.fixture(scope="module")
def wheel(python312, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run(python312, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT), timeout=300)
    (built,) = out.glob("rayml_assets-*.whl")
    return built


def test_wheel_resolves_under_the_runtime_pins(python312, wheel, tmp_path):
    report = tmp_path / "report.json"
    _run(
        python312, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed", "--report", str(report),
        "-c", str(CONSTRAINTS), str(wheel), timeout=600,
    )
    chosen = {_name(i["metadata"]["name"]): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    moved = {n: (chosen[n], pin) for n, pin in _pins().items() if n in chosen and chosen[n] != pin}
    assert not moved, f"would replace the runtime's versions (chosen, runtime): {moved}"
    assert "mlflow" in chosen and not chosen.keys() & NOT_ON_CLUSTER, sorted(chosen.keys() & NOT_ON_CLUSTER)


@pytest.fixture(scope="module")
def runtime_python(python312, wheel) -> str:
    """.venv-dbr's Python with the freshly built wheel installed (once for the module)."""
    # `make dbr-venv` is a no-op when .venv-dbr is current; `make test` has already run it.
    _run("make", "-s", "dbr-venv", timeout=900)
    python = str(DBR_VENV / "bin" / "python")
    _run(python, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel), timeout=300)
    return python


def test_task_modules_run_in_the_runtime_venv(runtime_python):
    python = runtime_python
    _run(python, "-m", "pip", "check", timeout=120)
    probe = (
        "import importlib, json, sys\n"
        f"for m in {TASK_MODULES!r}: importlib.import_module(m)\n"
        "from rayml_assets.lib.common.pipes_runtime import task_runtime\n"
        "with task_runtime() as (pipes, ray_address): pass\n"
        "print(json.dumps(sorted({k.split('.')[0] for k in sys.modules})))\n"
    )
    # Run from / so that the installed wheel, not this checkout, is what imports.
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=300, cwd="/")
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    assert {"torch", "mlflow", "deltalake", "dagster_pipes"} <= loaded
    assert not loaded & {"dagster", "pyspark", "fastdup"}, loaded & {"dagster", "pyspark", "fastdup"}


def test_a_task_script_runs_through_pipes_on_the_runtime(runtime_python, tmp_path):
    """End to end across the two sets: Dagster (the orchestrator's Python) runs the drift task's
    predictions step in .venv-dbr (Python 3.12, MLflow 3.8.1) through Pipes. The champion was
    logged by the orchestrator's MLflow 3 and is loaded by the runtime's; the day's predictions
    land in a Delta table that the orchestrator reads back."""
    from dagster import DailyPartitionsDefinition, PipesSubprocessClient, asset, materialize

    from rayml_assets import sample_stream
    from rayml_assets.lib.common import lake
    from rayml_assets.lib.common.contract import LakeSettings
    from rayml_assets.lib.monitoring.contract import DriftTaskParams, PredictStep
    from rayml_assets_tests.support.monitoring_support import champion_params, saved_model_uri, shared_champion

    _, champion = shared_champion()
    production = str(tmp_path / "production")
    (day,) = sample_stream.write_stream(production, str(tmp_path / "feedback"), days=1, start="2026-01-01", per_day=40)
    params = DriftTaskParams(
        step=PredictStep(production_root=production),
        dates=[day.date],
        lake=LakeSettings(root=str(tmp_path / "lake")),
        **champion_params(champion, saved_model_uri()),
    )

    @asset(partitions_def=DailyPartitionsDefinition(start_date="2026-01-01"), required_resource_keys={"pipes"})
    def predictions(context):
        return context.resources.pipes.run(
            command=[runtime_python, "-m", "rayml_assets.lib.monitoring.drift_task"],
            context=context,
            extras=params.to_extras(),
            cwd="/",  # the installed wheel imports, not this checkout
        ).get_materialize_result()

    result = materialize([predictions], resources={"pipes": PipesSubprocessClient()}, partition_key=day.date)
    assert result.success
    metadata = result.asset_materializations_for_node("predictions")[0].metadata
    assert metadata["dagster/row_count"].value == 40
    table = lake.open_table(params.lake.table_uri(lake.PREDICTIONS)).to_pyarrow_table()
    assert table.num_rows == 40 and set(table.column("model_version").to_pylist()) == {champion.model_version}
