"""The lake, the landing, reports, checkpoints and MLflow artifacts on Azure URIs, against Azurite.

Azurite speaks the Blob API only: what needs ADLS Gen2's hierarchical namespace is listed in
docs/infrastructure.md ("Storage access").
"""

import json

import pyarrow as pa
from dagster import DagsterInstance, build_sensor_context, materialize

from rayml_assets.definitions import resources_for
from rayml_assets.defs.dataset import assets as dataset_assets
from rayml_assets.defs.dataset.sensors import landing_sensor
from rayml_assets.lib.common import lake
from rayml_assets.lib.common import storage_options as so
from rayml_assets.lib.common.contract import MlflowSettings
from rayml_assets.lib.monitoring.report_runs import log_report
from rayml_assets.resources.storage import DatasetPolicy, LandingResource
from rayml_assets.sample import write_batches
from rayml_assets_tests.conftest import TAXONOMY
from rayml_assets_tests.storage.conftest import EMULATOR_KEY


def test_azurite_starts_quickly(azurite):
    assert azurite.start_seconds < 15, f"Azurite took {azurite.start_seconds:.1f} s to listen"


def test_delta_table_is_read_back_at_a_pinned_version(azurite, azure_storage, azure_prefix):
    uri, options = azurite.uri("lake", f"{azure_prefix}/numbers"), so.delta_options(azure_storage)
    schema = pa.schema([("n", pa.int64())])
    lake.append(uri, pa.table({"n": [1, 2]}), schema, {"rayml.batch": "first"}, options)
    lake.merge_insert_new(uri, pa.table({"n": [2, 3]}), "n", schema, {"rayml.batch": "second"}, options)
    assert lake.current_version(uri, options) == 1
    assert sorted(lake.read_at(uri, 0, storage_options=options).column("n").to_pylist()) == [1, 2]
    assert sorted(lake.read_at(uri, 1, storage_options=options).column("n").to_pylist()) == [1, 2, 3]
    assert lake.commit_metadata(uri, 1, options)["rayml.batch"] == "second"


def test_checkpoint_filesystem_writes_into_the_container(azurite, azure_storage, azure_prefix):
    path, fs = so.checkpoint_storage(azurite.uri("checkpoints", f"{azure_prefix}/ray_results"), azure_storage)
    with fs.open_output_stream(f"{path}/trial_0/checkpoint_000001/model.pt") as out:
        out.write(b"weights")
    blob_fs, _ = so.filesystem(azurite.uri("checkpoints"), azure_storage)
    assert blob_fs.cat_file(f"{path}/trial_0/checkpoint_000001/model.pt") == b"weights"


def _upload_landing(azurite, storage, tmp_path, prefix: str, limit: int, dirty: bool = True) -> str:
    local = tmp_path / "landing"
    write_batches(local, dirty=dirty, limit=limit)
    uri = azurite.uri("landing", f"{prefix}/images")
    fs, path = so.filesystem(uri, storage)
    fs.put(f"{local}/", path, recursive=True)
    return uri


def _azure_profile(profile, azurite, storage, prefix, landing_uri):
    return profile.model_copy(update={
        "lake_root": azurite.uri("lake", f"{prefix}/lake"), "landing_uri": landing_uri,
        "reports_root": azurite.uri("reports", prefix), "storage": storage,
    })


def _metadata(result, key):
    return {k: v.value for k, v in result.asset_materializations_for_node(key)[0].metadata.items()}


def test_ingest_and_clean_from_an_azure_landing(azurite, azure_storage, azure_prefix, profile, tmp_path):
    landing_uri = _upload_landing(azurite, azure_storage, tmp_path, azure_prefix, limit=120)
    resources = resources_for(_azure_profile(profile, azurite, azure_storage, azure_prefix, landing_uri))
    resources["dataset_policy"] = DatasetPolicy(taxonomy=list(TAXONOMY), min_train_images_per_class=3)
    with DagsterInstance.ephemeral() as instance:
        run_config = {"ops": {"cleaned_images": {"config": {"backend": "open"}}}}
        result = materialize(
            [dataset_assets.raw_images, dataset_assets.cleaned_images], resources=resources, instance=instance,
            run_config=run_config,
        )
        assert result.success
        raw, cleaned = _metadata(result, "raw_images"), _metadata(result, "cleaned_images")
        assert raw["rows_added"] == raw["dagster/row_count"] > 50 and raw["quarantined"] > 0
        assert cleaned["raw_version"] == raw["delta_version"] and cleaned["excluded"] > 0
        again = materialize([dataset_assets.raw_images], resources=resources, instance=instance)
        assert _metadata(again, "raw_images")["rows_added"] == 0
    # The cleaning report is in the reports container, where its metadata points.
    gallery = cleaned["excluded_gallery_html"]
    assert gallery == azurite.uri("reports", f"{azure_prefix}/cleaning/v{cleaned['delta_version']}/excluded.html")
    fs, path = so.filesystem(gallery, azure_storage)
    assert fs.cat_file(path).decode().count("<figure>") == cleaned["excluded"]
    assert "data:image/png;base64," in cleaned["preview"]
    table = lake.read_at(resources["lake_store"].uri("cleaned_images"), cleaned["delta_version"],
                         storage_options=so.delta_options(azure_storage))
    assert table.num_rows == cleaned["dagster/row_count"]


def test_landing_sensor_sees_a_new_batch(azurite, azure_storage, azure_prefix, tmp_path):
    landing_uri = _upload_landing(azurite, azure_storage, tmp_path, azure_prefix, limit=20, dirty=False)
    landing = LandingResource(
        images_uri=landing_uri, production_uri=landing_uri, feedback_uri=landing_uri,
        storage=azure_storage.model_dump(exclude_none=True),
    )

    def tick(instance, cursor=None):
        return landing_sensor(build_sensor_context(instance=instance, cursor=cursor, resources={"landing": landing}))

    with DagsterInstance.ephemeral() as instance:
        found = tick(instance)
        assert not found.run_requests
        [first] = tick(instance, found.cursor).run_requests
        quiet = tick(instance, tick(instance, found.cursor).cursor)
        assert not quiet.run_requests
        fs, path = so.filesystem(landing_uri, azure_storage)
        # A batch lands in a folder of its own: object stores have no folder mtimes (lib.common.watch).
        fs.pipe_file(f"{path}/3/batch_001/digit_new.png", fs.cat_file(fs.find(path)[0]))
        seen = tick(instance, quiet.cursor)
        [second] = tick(instance, seen.cursor).run_requests
    assert second.run_key != first.run_key
    assert json.loads(seen.cursor)["pending"], "the new file is pending after the tick that found it"


def test_a_report_on_azure_is_logged_to_mlflow_and_linked(azurite, azure_storage, azure_prefix, rayml_home):
    report = azurite.uri("reports", f"{azure_prefix}/data_drift/2026-01-05")
    so.write_bytes(f"{report}/report.html", b"<html>drift</html>", azure_storage)
    so.write_bytes(f"{report}/plots/p_values.png", b"png", azure_storage)
    settings = MlflowSettings.local(rayml_home).model_copy(update={"ui_url": "http://127.0.0.1:5000"})
    links = log_report(settings, "data_drift_report", "2026-01-05", report, f"{report}/report.html", {}, azure_storage)
    assert links["report_url"]["raw_value"] == (
        f"https://devstoreaccount1.blob.core.windows.net/reports/{azure_prefix}/data_drift/2026-01-05/report.html"
    )
    assert links["mlflow_run_url"]["raw_value"].endswith("/artifacts/data_drift_report")
    names = {f.path for f in settings.client().list_artifacts(links["mlflow_run_id"], "data_drift_report")}
    assert names == {"data_drift_report/report.html", "data_drift_report/plots"}


def test_mlflow_blob_artifact_store_uses_the_scoped_connection_string(azurite, azure_storage, azure_prefix, rayml_home,
                                                                      monkeypatch, tmp_path):
    from mlflow.store.artifact.azure_blob_artifact_repo import AzureBlobArtifactRepository

    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")  # only the scoped block may see it
    monkeypatch.setenv("RAYML_TEST_AZURITE", azurite.connection_string)
    storage = azure_storage.model_copy(update={"key_var": "RAYML_TEST_AZURITE"})
    (tmp_path / "model.txt").write_text("weights")
    with so.mlflow_artifact_env(storage):
        repo = AzureBlobArtifactRepository(f"wasbs://mlflow@devstoreaccount1.blob.core.windows.net/{azure_prefix}")
        repo.log_artifact(str(tmp_path / "model.txt"), "model")
    fs, _ = so.filesystem(azurite.uri("mlflow"), storage)
    assert fs.cat_file(f"mlflow/{azure_prefix}/model/model.txt") == b"weights"
    assert EMULATOR_KEY not in repr(so.mlflow_env(storage))
