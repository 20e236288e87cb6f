"""What orchestration adds to the demo graph: wall time of `dagster asset materialize` vs the sum of its step times.

On a fresh RAYML_HOME and DAGSTER_HOME (deploy/dagster.yaml), writes the bundled sample, then
materializes raw_images, cleaned_images, tuned_model, registered_model, champion_model and
shap_report in one run, as `make demo` does. The wall time covers the whole command: interpreter
start, loading the code location, the run's launch, every step, Pipes subprocesses included.
The steps' times come from the run's events in the instance (STEP_START to STEP_SUCCESS or
STEP_FAILURE, `get_run_step_stats`). Prints the wall time, the run's own duration, the sum of
step times and the ratios, measured in this run (no timed asserts). Goal: wall / steps <= 1.15x.

`--small` passes a one-trial, one-epoch, one-worker tuning config (and a smaller sample with
`--limit`), so the run takes minutes, not tens of minutes; such a model does not beat the baseline,
so the gate stops the run at registered_model and the selection ends there; the output says what was run. With local compute the run
executes in process (the profile's executor mode), so the code location loads once per run; in
multiprocess mode each step's process would load it again, and that was the gap before.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SELECTION = "raw_images,cleaned_images,tuned_model,registered_model,champion_model,shap_report"
SMALL_SELECTION = "raw_images,cleaned_images,tuned_model,registered_model"  # a one-epoch model stops at the gate
GOAL = 1.15
# The smallest search that still goes through Tune, Train and MLflow: one trial of one epoch.
SMALL_TUNING = {
    "search_space": {"model": "small_cnn", "lr": 0.1, "momentum": 0.9, "batch_size": 64},
    "num_samples": 1,
    "max_epochs": 1,
    "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
    "num_workers": 1,
    "cpus_per_worker": 1,
    "image_size": 32,
    "channels": 1,
    "seed": 0,
}


def environment(root: Path) -> dict:
    dagster_home = root / "dagster_home"
    dagster_home.mkdir(parents=True)
    shutil.copy(REPO / "deploy" / "dagster.yaml", dagster_home / "dagster.yaml")
    return {
        **os.environ,
        "RAYML_HOME": str(root / "rayml"),
        "DAGSTER_HOME": str(dagster_home),
        "RAYML_PROFILE": os.environ.get("RAYML_PROFILE", "local"),
        # Nothing phones home (as in the Makefile).
        "SENTRY_OPT_OUT": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "RAY_USAGE_STATS_ENABLED": "0",
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1",
    }


def materialize(env: dict, run_config: dict | None) -> float:
    command = [str(Path(sys.executable).with_name("dagster")), "asset", "materialize"]
    command += ["-m", "rayml_assets.definitions", "--select", SMALL_SELECTION if run_config else SELECTION]
    if run_config:
        command += ["--config-json", json.dumps(run_config)]
    start = time.perf_counter()
    run = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if run.returncode != 0:
        print(f"dagster asset materialize exited {run.returncode}:\n{run.stderr[-3000:]}")
    return elapsed


def step_times(dagster_home: str) -> tuple[str, float | None, dict[str, tuple[str, float]]]:
    """(run status, run duration, step -> (status, seconds)) of the one run in the instance."""
    os.environ["DAGSTER_HOME"] = dagster_home  # DagsterInstance.get() reads it
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        [run] = instance.get_runs()
        stats = instance.get_run_stats(run.run_id)
        duration = stats.end_time - stats.start_time if stats.start_time and stats.end_time else None
        steps = {
            step.step_key: (step.status.value if step.status else "?", step.end_time - step.start_time)
            for step in instance.get_run_step_stats(run.run_id)
            if step.start_time and step.end_time
        }
        return run.status.value, duration, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="one-trial, one-epoch, one-worker tuning")
    parser.add_argument("--limit", type=int, help="write only the first N digits of the sample")
    parser.add_argument("--keep", action="store_true", help="keep the temporary homes and print where")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench_orchestration_"))
    try:
        env = environment(root)
        sample = [sys.executable, "-m", "rayml_assets.sample"] + (["--limit", str(args.limit)] if args.limit else [])
        subprocess.run(sample, env=env, cwd=REPO, check=True, capture_output=True)
        run_config = {"ops": {"tuned_model": {"config": {"tuning_yaml": yaml.safe_dump(SMALL_TUNING)}}}}
        tuning = "small (1 trial, 1 epoch, 1 worker)" if args.small else "the profile's search space"
        print(f"materialize {SMALL_SELECTION if args.small else SELECTION}")
        print(f"  sample: {args.limit or 'all'} digits (+ dirty files); tuning: {tuning}")

        wall = materialize(env, run_config if args.small else None)
        status, duration, steps = step_times(env["DAGSTER_HOME"])
        total = sum(seconds for _, seconds in steps.values())
        for step, (step_status, seconds) in sorted(steps.items(), key=lambda item: -item[1][1]):
            print(f"  {step:<48} {step_status:<8} {seconds:7.1f} s")
        print(f"  {len(steps)} steps")
        run_time = f"{duration:.1f} s" if duration else "?"
        print(f"run {status}: wall {wall:.1f} s, run start to end {run_time}, sum of steps {total:.1f} s")
        if total:
            print(f"ratio wall / steps: {wall / total:.2f}x (goal <= {GOAL}x)")
            if duration:
                print(f"ratio run / steps:  {duration / total:.2f}x (inside the run: no CLI start or code load)")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
