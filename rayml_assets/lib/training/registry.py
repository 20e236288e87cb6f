"""Model registry: register the tuned model, score it on the pinned test split, set ``challenger``.

Flow for the ``registered_model`` asset:

1. :func:`register_challenger` registers the best model of a tuning run
   (idempotent: a version already registered from the same run and model URI
   is reused), tags it with its lineage (``delta_version``, ``cleaned_table_uri``,
   ``dagster_run_id``), evaluates it on the ``test`` split of the SAME pinned
   Delta version, fits the classical baseline (:mod:`~rayml_assets.lib.training.baseline`)
   on that version's train split and scores it on the same test rows, sets the
   ``challenger`` alias, evaluates the current ``champion`` on that same split and
   returns a :class:`~rayml_assets.lib.training.promotion.PromotionDecision`.
2. The asset's blocking check ``challenger_beats_baseline`` fails when the
   challenger does not pass the gate (the better baseline by ``baseline_margin``,
   and ``min_accuracy`` when set).
3. :func:`~rayml_assets.lib.training.promotion.promote` moves ``champion`` only
   when the decision says so.

The rules themselves are pure functions in :mod:`rayml_assets.lib.training.promotion`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
from mlflow.entities.model_registry import ModelVersion  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from rayml_assets.lib.common.contract import MlflowSettings  # noqa: E402
from rayml_assets.lib.common.storage_options import StorageSettings, write_bytes  # noqa: E402
from rayml_assets.lib.training.baseline import MAX_TRAIN_ROWS, BaselineResult, fit_baseline  # noqa: E402
from rayml_assets.lib.training.delta_stream import DataSpec  # noqa: E402
from rayml_assets.lib.training.evaluation import EvalResult, evaluate  # noqa: E402
from rayml_assets.lib.training.promotion import CHALLENGER, CHAMPION, PromotionDecision, decide_promotion  # noqa: E402
from rayml_assets.lib.common.figures import png_bytes  # noqa: E402
from rayml_assets.lib.training.report_files import log_file_bytes  # noqa: E402
from rayml_assets.lib.training.tracking import load_logged_model, mlflow_uris  # noqa: E402

if TYPE_CHECKING:
    import torch

TEST_SPLIT = "test"


@dataclass
class ChallengerReport:
    model_name: str
    version: str
    model_uri: str
    created: bool  # False when the version already existed for this run and model
    source_run_id: str
    table_uri: str
    delta_version: int
    challenger: EvalResult
    baseline: BaselineResult
    champion_version: str | None
    champion: EvalResult | None
    decision: PromotionDecision
    confusion_png: str
    source_experiment_id: str | None = None  # of source_run_id: builds the run link in the metadata

    def to_dict(self) -> dict:
        return {**asdict(self), "baseline": self.baseline.to_dict()}

    def baseline_numbers(self) -> dict[str, float]:
        """The baseline's figures as logged: MLflow metrics of the run, tags of the version, asset metadata."""
        return {
            "baseline_logreg_accuracy": float(self.baseline.logreg_accuracy),
            "baseline_svc_accuracy": float(self.baseline.svc_accuracy),
            "baseline_accuracy": float(self.decision.baseline_accuracy),
            "baseline_lift": float(self.decision.baseline_lift),
        }


def register_version(
    settings: MlflowSettings, model_name: str, model_uri: str, run_id: str, tags: dict[str, str]
) -> tuple[ModelVersion, bool]:
    """Register ``model_uri`` under ``model_name`` once per (run, model); returns ``(version, created)``."""
    client = settings.client()
    tags = {k: str(v) for k, v in tags.items() if v is not None}
    try:
        # Filter on the name only (Unity Catalog supports few filters) and match in Python.
        existing = [
            v
            for v in client.search_model_versions(f"name='{model_name}'")
            if v.run_id == run_id and v.source == model_uri
        ]
    except MlflowException:
        existing = []
    if existing:
        return existing[0], False
    with mlflow_uris(settings):
        # mlflow.register_model (not the client) links an MLflow 3 logged model to its version
        return mlflow.register_model(model_uri, model_name, tags=tags), True


def evaluate_model(
    settings: MlflowSettings,
    model_uri: str,
    table_uri: str,
    delta_version: int,
    split: str = TEST_SPLIT,
    storage_options: dict | None = None,
) -> EvalResult:
    """Score a logged or registered model on ``split`` of ``table_uri@delta_version``, with the model's own labels."""
    model, spec = load_with_spec(settings, model_uri, table_uri, delta_version)
    return evaluate(model, spec, split, storage_options=storage_options)


def load_with_spec(
    settings: MlflowSettings, model_uri: str, table_uri: str, delta_version: int
) -> tuple[torch.nn.Module, DataSpec]:
    """The model and the :class:`DataSpec` it reads ``table_uri@delta_version`` with (its labels, size, channels)."""
    model, meta = load_logged_model(model_uri, settings)
    spec = DataSpec(
        table_uri, int(delta_version), tuple(meta["class_labels"]), int(meta["image_size"]), int(meta["channels"])
    )
    return model, spec


def confusion_png(result: EvalResult, title: str = "") -> bytes:
    """The confusion matrix as a PNG (rows: true label, columns: predicted)."""
    labels = result.class_labels
    size = max(4.0, 0.5 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(result.confusion, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=90 if len(labels) > 12 else 0)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"{result.split}: accuracy {result.accuracy:.3f} on {result.n} images")
    if len(labels) <= 20:
        peak = max(max(row) for row in result.confusion) or 1
        for i, row in enumerate(result.confusion):
            for j, count in enumerate(row):
                if count:
                    ax.text(
                        j,
                        i,
                        str(count),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if count > peak / 2 else "black",
                    )
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return png_bytes(fig, dpi=100)


def _alias_version(settings: MlflowSettings, model_name: str, alias: str) -> ModelVersion | None:
    try:
        return settings.client().get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def register_challenger(
    settings: MlflowSettings,
    *,
    model_name: str,
    model_uri: str,
    run_id: str,
    table_uri: str,
    delta_version: int,
    reports_dir: str,
    dagster_run_id: str | None = None,
    promotion_margin: float = 0.0,
    baseline_margin: float = 0.0,
    min_accuracy: float | None = None,
    baseline_max_train_rows: int = MAX_TRAIN_ROWS,
    storage_options: dict | None = None,
    storage: StorageSettings | None = None,
) -> ChallengerReport:
    """Register, test, fit the baseline, alias ``challenger`` and compare with ``champion``, all on the same test split.

    ``storage_options``: delta-rs's, for the table; ``storage``: the report folder's (``reports_dir``, any URI).

    Does not move ``champion``: call :func:`promote` once the asset check passed.
    """
    client = settings.client()
    lineage = {"delta_version": int(delta_version), "cleaned_table_uri": table_uri, "dagster_run_id": dagster_run_id}
    version, created = register_version(settings, model_name, model_uri, run_id, lineage)
    version_uri = f"models:/{model_name}/{version.version}"
    model, spec = load_with_spec(settings, version_uri, table_uri, delta_version)
    challenger = evaluate(model, spec, TEST_SPLIT, storage_options=storage_options)
    # The challenger's own spec: the baseline sees its labels, pixels and test rows.
    baseline = fit_baseline(spec, max_train_rows=baseline_max_train_rows, storage_options=storage_options)
    client.set_registered_model_alias(model_name, CHALLENGER, version.version)

    champion_version = _alias_version(settings, model_name, CHAMPION)
    champion = None
    if champion_version is not None:
        champion = (
            challenger
            if str(champion_version.version) == str(version.version)
            else evaluate_model(
                settings,
                f"models:/{model_name}/{champion_version.version}",
                table_uri,
                delta_version,
                storage_options=storage_options,
            )
        )
    decision = decide_promotion(
        challenger.accuracy,
        champion.accuracy if champion else None,
        baseline_model=baseline.best_model,
        baseline_accuracy=baseline.best_accuracy,
        promotion_margin=promotion_margin,
        baseline_margin=baseline_margin,
        min_accuracy=min_accuracy,
    )

    name = f"confusion_{model_name}_v{version.version}.png"
    png = confusion_png(
        challenger,
        title=f"{model_name} v{version.version} on {TEST_SPLIT}@v{delta_version}: accuracy {challenger.accuracy:.3f}",
    )
    png_uri = write_bytes(f"{reports_dir.rstrip('/')}/{name}", png, storage)
    log_file_bytes(client.log_artifact, run_id, name, png, "evaluation")
    report = ChallengerReport(
        model_name=model_name,
        version=str(version.version),
        model_uri=version_uri,
        created=created,
        source_run_id=run_id,
        table_uri=table_uri,
        delta_version=int(delta_version),
        challenger=challenger,
        baseline=baseline,
        champion_version=str(champion_version.version) if champion_version is not None else None,
        champion=champion,
        decision=decision,
        confusion_png=png_uri,
        source_experiment_id=client.get_run(run_id).info.experiment_id,
    )
    numbers = {"test_accuracy": challenger.accuracy, **report.baseline_numbers()}
    tags = {**{key: f"{value:.6f}" for key, value in numbers.items()}, "test_images": str(challenger.n)}
    for key, value in {**tags, "baseline_model": baseline.best_model}.items():
        client.set_model_version_tag(model_name, version.version, key, value)
    for key, value in numbers.items():
        client.log_metric(run_id, key, value)
    return report
