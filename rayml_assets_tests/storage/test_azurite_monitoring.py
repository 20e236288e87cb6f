"""The monitoring side against Azurite: a production day and its feedback in an Azure landing,
``predictions`` written by the drift task script into a lake on the emulator."""

import os

import pytest

from rayml_assets import sample_stream
from rayml_assets.lib.common import lake
from rayml_assets.lib.common import storage_options as so
from rayml_assets.lib.common.contract import LakeSettings
from rayml_assets.lib.common.storage_options import StorageSettings
from rayml_assets.lib.monitoring import drift_task
from rayml_assets.lib.monitoring.contract import DriftTaskParams, PredictStep
from rayml_assets.lib.monitoring.inference import read_predictions
from rayml_assets.lib.monitoring.production import list_partition_keys, read_feedback
from rayml_assets_tests.storage.conftest import CONNECTION_VAR
from rayml_assets_tests.support.monitoring_support import champion_params, saved_model_uri, shared_champion

PER_DAY = 40


@pytest.fixture
def scoped_storage(azure_storage, monkeypatch) -> StorageSettings:
    """The emulator's connection string under a name adlfs does not read by itself: the landing
    is reached only where the settings are passed."""
    monkeypatch.setenv("RAYML_TEST_AZURITE", os.environ[CONNECTION_VAR])
    monkeypatch.delenv(CONNECTION_VAR)
    return azure_storage.model_copy(update={"key_var": "RAYML_TEST_AZURITE"})


def _upload(local, uri: str, storage) -> str:
    fs, path = so.filesystem(uri, storage)
    fs.put(f"{local}/", path, recursive=True)
    return uri


def test_predictions_for_one_day_from_an_azure_landing(azurite, scoped_storage, azure_prefix, tmp_path):
    # write_stream writes through plain fsspec, so the day is written locally and uploaded.
    (day,) = sample_stream.write_stream(
        str(tmp_path / "production"), str(tmp_path / "feedback"), days=1, per_day=PER_DAY
    )
    production = _upload(tmp_path / "production", azurite.uri("landing", f"{azure_prefix}/production"), scoped_storage)
    feedback = _upload(tmp_path / "feedback", azurite.uri("landing", f"{azure_prefix}/feedback"), scoped_storage)
    assert list_partition_keys(production, storage=scoped_storage) == [day.date]
    landed = read_feedback(feedback, day.date, scoped_storage)
    assert landed.found and len(landed.rows) == day.n_feedback_rows

    _, champion = shared_champion()
    params = DriftTaskParams(
        step=PredictStep(production_root=production),
        dates=[day.date],
        lake=LakeSettings(root=azurite.uri("lake", f"{azure_prefix}/lake"), storage=scoped_storage),
        **champion_params(champion, saved_model_uri()),
    )
    metadata = drift_task.run(params, lambda _: None)
    assert day.n_images == PER_DAY and metadata["dagster/row_count"] == PER_DAY

    uri = params.lake.table_uri(lake.PREDICTIONS)
    table = read_predictions(uri, day.date, ["source_uri"], params.lake.delta_options())
    assert table.num_rows == PER_DAY
    assert all(so.is_azure(u) and f"/{day.date}/" in u for u in table.column("source_uri").to_pylist())
