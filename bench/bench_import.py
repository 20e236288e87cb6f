"""Cost of loading the code location: `import rayml_assets.definitions` vs `import dagster` alone.

Each import runs in a fresh interpreter (`python -c`, wall time, the interpreter's own start
included in both), alternating the two, after one unmeasured warm-up of each (bytecode and
page cache). Prints both medians and their ratio, measured in this run (no timed asserts).
Goal: <= 1.3x, i.e. what the code location adds on top of Dagster (profile, resources, the
defs folders) stays under a third of Dagster's own import; torch, ray, mlflow and the like
load only in the tasks that need them.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

STATEMENTS = {"dagster": "import dagster", "definitions": "import rayml_assets.definitions"}
GOAL = 1.3


def wall_time(statement: str, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "RAYML_HOME": home,
            "RAYML_PROFILE": os.environ.get("RAYML_PROFILE", "local"),
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "DO_NOT_TRACK": "1",
        }
        times: dict[str, list[float]] = {name: [] for name in STATEMENTS}
        for statement in STATEMENTS.values():
            wall_time(statement, env)  # warm-up
        for _ in range(args.repeats):
            for name, statement in STATEMENTS.items():
                times[name].append(wall_time(statement, env))
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["definitions"] / medians["dagster"]
    print(f"fresh interpreters, median of {args.repeats} each (wall time of python -c)")
    for name, statement in STATEMENTS.items():
        spread = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"  {statement:<32} {medians[name]:6.2f} s   ({spread})")
    print(f"ratio definitions / dagster: {ratio:.2f}x (goal <= {GOAL}x)")


if __name__ == "__main__":
    main()
