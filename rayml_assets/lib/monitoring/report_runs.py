"""The MLflow runs that hold the monitoring reports, and the links to them in the metadata.

Each day's drift report folder is logged to one run of the project's experiment per report
and day, tagged ``rayml.role`` (``data_drift_report`` / ``model_drift_report``) and ``rayml.date``.
Materializing a day again reuses that run (found by its ``rayml.report_dir`` tag) and overwrites
its artifacts, as the report folder itself is overwritten: a day keeps one link, and retries or
backfills do not add a run each. Dagster keeps the history of materializations.
The SHAP report goes to the champion's own run (``shap_report/``), next to the model it explains.

MLflow loads only through :meth:`MlflowSettings.client`.
"""

from __future__ import annotations

import os
import tempfile

from fsspec.implementations.local import LocalFileSystem

from rayml_assets.lib.common.contract import MlflowSettings
from rayml_assets.lib.common.links import storage_url
from rayml_assets.lib.common.mlflow_search import tag_equals
from rayml_assets.lib.common.storage_options import StorageSettings, filesystem, mlflow_artifact_env
from rayml_assets.lib.common.task_entry import typed

ROLE_TAG = "rayml.role"
DATE_TAG = "rayml.date"
DIR_TAG = "rayml.report_dir"


def report_run(settings: MlflowSettings, role: str, date: str, directory: str, tags: dict[str, str]) -> tuple[str, str]:
    """``(experiment_id, run_id)`` of the run holding ``directory``: the existing one, or a new one."""
    client, experiment = settings.client(), settings.ensure_experiment()
    found = client.search_runs(
        [experiment], filter_string=tag_equals(DIR_TAG, directory), max_results=1
    )
    all_tags = {ROLE_TAG: role, DATE_TAG: date, DIR_TAG: directory, **tags}
    if found:
        run_id = found[0].info.run_id
        for key, value in all_tags.items():
            client.set_tag(run_id, key, value)
        return experiment, run_id
    run = client.create_run(experiment, tags=all_tags, run_name=f"{role} {date}")
    client.set_terminated(run.info.run_id)  # it only holds files: nothing runs in it
    return experiment, run.info.run_id


def log_folder(
    settings: MlflowSettings, run_id: str, directory: str, artifact_path: str, storage: StorageSettings | None = None
) -> None:
    """Log ``directory`` (local or any fsspec URI) as the run's ``artifact_path/``. ``storage`` reaches
    both the folder and the artifact store (its Azure SDK variables, set only while logging)."""
    client = settings.client()
    fs, root = filesystem(directory, storage)
    if isinstance(fs, LocalFileSystem):
        with mlflow_artifact_env(storage):
            client.log_artifacts(run_id, root, artifact_path)
        return
    # MLflow logs from local files: a cloud folder is copied down first (a report is a few MB).
    root = root.rstrip("/")
    with tempfile.TemporaryDirectory(prefix="rayml-report-") as local:
        for remote in fs.find(root):
            target = os.path.join(local, os.path.relpath(remote, root))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            fs.get_file(remote, target)
        with mlflow_artifact_env(storage):
            client.log_artifacts(run_id, local, artifact_path)


def report_links(
    settings: MlflowSettings, experiment: str, run_id: str, artifact_path: str, report_uri: str
) -> dict:
    """Metadata: the run, its artifact view at ``artifact_path`` and, on cloud storage, ``report_url``."""
    links = {"mlflow_run_id": run_id}
    view = settings.artifacts_url(experiment, run_id, artifact_path)
    if view:
        links["mlflow_run_url"] = typed(view, "url")
    storage = storage_url(report_uri)
    if storage:
        links["report_url"] = typed(storage, "url")
    return links


def log_report(
    settings: MlflowSettings, role: str, date: str, directory: str, report_uri: str, tags: dict[str, str],
    storage: StorageSettings | None = None,
) -> dict:
    """Log one day's report folder to its run (:func:`report_run`) and return the links."""
    experiment, run_id = report_run(settings, role, date, directory, tags)
    log_folder(settings, run_id, directory, role, storage)
    return report_links(settings, experiment, run_id, role, report_uri)
