"""The README's "Use your own images" steps, run exactly as written, in a fresh HOME.

RGB photos with non-digit labels, a user profile file outside the package with no taxonomy, the default
tuning config: the graph must reach ``champion_model`` and ``predictions`` must score a production day.
"""

import json
import os
import re
import subprocess
from pathlib import Path

import pyarrow.dataset as pads
from deltalake import DeltaTable

REPO = Path(__file__).resolve().parents[2]


def readme_steps() -> str:
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- own-images:start -->\n```bash\n(.*?)```\n<!-- own-images:end -->", text, re.S)
    assert block, "the README lost its 'Use your own images' block"
    return block.group(1)


def test_the_readme_steps_reach_a_champion_and_predictions(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAYML_", "DAGSTER_HOME"))}
    env["HOME"] = str(tmp_path)
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_steps()], cwd=REPO, env=env, capture_output=True, text=True, timeout=1500
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-8000:]

    import mlflow

    uri = f"sqlite:///{tmp_path}/rayml/mlflow/mlflow.db"
    # both URIs: an earlier test in this process may have set MLflow's global registry URI
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("my_photo_classifier", "champion")
    run_params = client.get_run(champion.run_id).data.params
    assert sorted(json.loads(run_params["class_labels"])) == ["astronaut", "camera", "cat", "coffee", "rocket"]
    assert (run_params["image_size"], run_params["channels"]) == ("64", "3")  # from the data: RGB, 96 px held to the 64 px bound

    predictions = DeltaTable(str(tmp_path / "rayml" / "lake" / "predictions")).to_pyarrow_dataset()
    day = predictions.to_table(filter=pads.field("date") == "2026-01-01")
    assert day.num_rows == 5 * 8
    assert set(day.column("model_name").to_pylist()) == {"my_photo_classifier"}
