"""The training reports on an Azure reports folder, against Azurite: written through
``storage_options.write_bytes``, pointed at by their URI, and logged to MLflow from a local copy."""

from rayml_assets.lib.common import storage_options as so
from rayml_assets.lib.common.contract import MlflowSettings
from rayml_assets.lib.training.comparison import plot_accuracies
from rayml_assets.lib.training.delta_stream import discover_labels
from rayml_assets.lib.training.models import build_model
from rayml_assets.lib.training.registry import register_challenger
from rayml_assets.lib.training.tracking import log_model
from rayml_assets_tests.support.training_fixtures import write_digits_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_at(uri: str, storage) -> bytes:
    fs, path = so.filesystem(uri, storage)
    return fs.cat_file(path)


def test_the_confusion_matrix_lands_in_the_reports_container(azurite, azure_storage, azure_prefix, tmp_path):
    uri, version = write_digits_table(str(tmp_path / "lake"), n=120, image_size=16)
    settings = MlflowSettings.local(tmp_path / "home", experiment_name="test-azure-reports")
    run_id = settings.client().create_run(settings.ensure_experiment()).info.run_id
    meta = {"model": "small_cnn", "class_labels": list(discover_labels(uri, version)), "channels": 1,
            "image_size": 16, "table_uri": uri, "delta_version": version}
    model_uri = log_model(settings, run_id, build_model("small_cnn", 10, 1).eval(), meta)
    reports = azurite.uri("reports", f"{azure_prefix}/registry")

    report = register_challenger(settings, model_name="azure-reports", model_uri=model_uri, run_id=run_id,
                                 table_uri=uri, delta_version=version, reports_dir=reports, storage=azure_storage)

    assert report.confusion_png == f"{reports}/confusion_azure-reports_v1.png"  # what the asset's metadata shows
    assert _png_at(report.confusion_png, azure_storage).startswith(PNG_MAGIC)
    logged = {f.path for f in settings.client().list_artifacts(run_id, "evaluation")}
    assert logged == {"evaluation/confusion_azure-reports_v1.png"}

    chart = plot_accuracies({"challenger": 0.9, "champion": None, "baseline": 0.8}, f"{reports}/comparison.png",
                            lines={"to beat": 0.85}, storage=azure_storage)
    assert chart == f"{reports}/comparison.png" and _png_at(chart, azure_storage).startswith(PNG_MAGIC)
