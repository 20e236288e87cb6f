"""Where the platform's data lives: the Delta lake, the landings and the working folders.

Each resource carries the profile's ``storage`` settings (``lib.common.storage_options``):
the auth kind, the account and variable NAMES only; credentials are read from the
environment when a client is made, so no secret is ever part of a resource's config.
"""


from pathlib import Path
from typing import Optional

from dagster import ConfigurableResource
from pydantic import Field

from rayml_assets.lib.common import tables
from rayml_assets.lib.common.contract import LakeSettings
from rayml_assets.lib.common.storage_options import Options, StorageSettings, delta_options


class _StorageAccess(ConfigurableResource):
    storage: dict[str, str] = Field(
        default={}, description="The profile's storage settings: auth, account_name, endpoint, *_var (variable names)"
    )

    def storage_settings(self) -> StorageSettings:
        return StorageSettings.model_validate(self.storage)


class LakeResource(_StorageAccess):
    """The Delta lake root: a local folder, or ``abfss://`` in the cloud profiles."""

    lake_root: str = Field(description="Root URI of the Delta tables")

    def uri(self, table: str) -> str:
        return tables.table_uri(self.lake_root, table)

    def storage_options(self) -> Options | None:
        """delta-rs ``storage_options`` with the credentials resolved from the environment."""
        return delta_options(self.storage_settings())

    def settings(self) -> LakeSettings:
        """The lake as task scripts receive it (``lake`` of their contract): settings, never credentials."""
        return LakeSettings(root=self.lake_root, storage=self.storage_settings())

    def current_version(self, table: str) -> int | None:
        from rayml_assets.lib.common import lake  # deltalake loads where a table is read

        return lake.current_version(self.uri(table), self.storage_options())


class WorkspaceResource(_StorageAccess):
    """Folders for reports, scratch work (fastdup) and Ray checkpoints."""

    reports_root: str = Field(description="Where HTML/PNG reports are written")
    scratch_root: str = Field(description="Local scratch folder, e.g. fastdup work directories")
    checkpoint_root: str = Field(description="Ray Tune/Train checkpoints (cloud storage in the cloud profiles)")

    def scratch(self, *parts: str) -> Path:
        path = Path(self.scratch_root, *parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def report_dir(self, *parts: str) -> str:
        """The URI of a report folder under ``reports_root`` (a local folder or any fsspec URI).
        Object stores have no folders: writers create what they write (``storage_options.write_bytes``)."""
        return "/".join([self.reports_root.rstrip("/"), *parts])


class DatasetPolicy(ConfigurableResource):
    """What makes the dataset usable: the taxonomy, the split and the quality gates."""

    taxonomy: Optional[list[str]] = Field(None, description="Allowed labels; None accepts any label folder")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    split_tolerance: float = Field(0.05, description="Allowed absolute deviation of each split's share")
    min_train_images_per_class: int = Field(20, ge=1)
    max_excluded_share: float = Field(0.2, description="Cleaning may exclude at most this share of the images")


class LandingResource(_StorageAccess):
    """Landing locations that users and upstream systems drop files into."""

    images_uri: str = Field(description="Labelled training images: <label>/<file> folder or uri,label manifest CSV")
    production_uri: str = Field(description="Production images, one YYYY-MM-DD folder per day")
    feedback_uri: str = Field(description="Feedback labels, one YYYY-MM-DD.csv per day")
