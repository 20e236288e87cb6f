"""Links a browser opens, for the metadata of a report: pure string work, no I/O, no Dagster.

- :func:`storage_url`: where a report folder or file on cloud storage opens. For ADLS Gen2
  (``abfss://<container>@<account>.dfs.core.windows.net/<path>``) it is the blob endpoint
  ``https://<account>.blob.core.windows.net/<container>/<path>``. The storage is private: the
  URL opens for a signed-in user with read access on the container (Azure portal, Storage
  Explorer, or ``az storage blob download``), and carries no SAS or key. A local path has no
  such link: locally the MLflow run link (``make mlflow-ui``) opens the report.
- :func:`mlflow_artifacts_url`: the artifact view of an MLflow run, optionally at one folder:
  ``<workspace>/ml/experiments/<exp>/runs/<run>/artifacts/<path>`` on Databricks and
  ``<ui>/#/experiments/<exp>/runs/<run>/artifacts/<path>`` in the open-source UI (the route of
  MLflow 3's ``Routes.getRunPageRoute(experiment, run, artifactPath)``).
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import quote

# abfss://container@account.dfs.core.windows.net/path (abfs:// too, the same storage without TLS pinning)
_ADLS = re.compile(r"^abfss?://(?P<container>[^@/]+)@(?P<account>[a-z0-9]+)\.dfs\.core\.windows\.net(?:/(?P<path>.*))?$")


class AdlsLocation(NamedTuple):
    container: str
    account: str
    path: str


def adls_location(uri: str | None) -> AdlsLocation | None:
    """The parts of an ADLS Gen2 URI, or ``None`` for a local path or another scheme."""
    match = _ADLS.match(uri or "")
    if not match:
        return None
    return AdlsLocation(match["container"], match["account"], (match["path"] or "").strip("/"))


def storage_url(uri: str | None) -> str | None:
    """The HTTPS URL of an ADLS Gen2 location, or ``None`` for a local path or an unknown scheme."""
    location = adls_location(uri)
    if location is None:
        return None
    base = f"https://{location.account}.blob.core.windows.net/{location.container}"
    return f"{base}/{quote(location.path)}" if location.path else base


def mlflow_run_url(ui_url: str | None, tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    """The run's page in the MLflow UI at ``ui_url`` (``None`` when no UI is configured)."""
    if not ui_url:
        return None
    base = ui_url.rstrip("/")
    if "://" not in base:  # a workspace host given as DATABRICKS_HOST may omit the scheme
        base = f"https://{base}"
    if tracking_uri.startswith("databricks"):  # the workspace's own MLflow pages
        return f"{base}/ml/experiments/{experiment_id}/runs/{run_id}"
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def mlflow_artifacts_url(
    ui_url: str | None, tracking_uri: str, experiment_id: str, run_id: str, artifact_path: str | None = None
) -> str | None:
    """The run's artifact view, opened at ``artifact_path`` when given."""
    run = mlflow_run_url(ui_url, tracking_uri, experiment_id, run_id)
    if run is None:
        return None
    path = (artifact_path or "").strip("/")
    return f"{run}/artifacts/{quote(path)}" if path else f"{run}/artifacts"
