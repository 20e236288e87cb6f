"""The typed contract between ``tuned_model`` and its Pipes task script ``train_task.py``.

The asset builds one :class:`TrainTaskParams` and sends ``params.to_extras()``;
the task script validates ``pipes.extras`` with :meth:`TrainTaskParams.from_extras`.
Unknown fields are refused on both sides (see :class:`~rayml_assets.lib.common.contract.Contract`),
so a renamed field fails ``rayml_assets_tests/training/test_contract.py``, not a cluster run.
Light on purpose (pydantic and YAML only): the Dagster code location imports it.
"""

from __future__ import annotations

from pydantic import Field

from rayml_assets.lib.common.contract import Contract, LakeSettings, MlflowSettings, RaySettings
from rayml_assets.lib.training.tuning_config import TuningConfig


class TrainTaskParams(Contract):
    """What ``train_task.py`` needs: the data, the search, MLflow, Ray, where to write, and lineage tags."""

    lake: LakeSettings = Field(description="The Delta lake that holds cleaned_images")
    cleaned_version: int = Field(ge=0, description="The pinned Delta version of cleaned_images to train on")
    tuning: TuningConfig
    mlflow: MlflowSettings
    # The field name is lib.common.contract.RAY_KEY: the Pipes runtime sets ray.address to Ray on Spark.
    ray: RaySettings = Field(default_factory=RaySettings)
    checkpoint_root: str = Field(description="Ray Tune storage: one experiment folder per tuning run")
    reports_dir: str = Field(description="Where the learning-curve PNG goes")
    experiment_name: str | None = Field(None, description="Tune experiment to create or resume; None: derived")
    dagster_run_id: str | None = None
    asset_key: str | None = None
    git_sha: str | None = None
