"""Data-quality gates on the dataset. The excluded-share check blocks training on a broken cleaning run.

They read the tables, so each runs as its own check step; what they read is
``lib.dataset.table_checks``, imported in the step (the Delta stack stays out of the code location).
"""

from collections import Counter

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from rayml_assets.lib.common import tables
from rayml_assets.defs.dataset.assets import cleaned_images, raw_images
from rayml_assets.defs.common.lineage import markdown_table, pinned_version
from rayml_assets.resources.storage import DatasetPolicy, LakeResource

# Split history older than this many versions is not re-read on every check.
SPLIT_HISTORY_VERSIONS = 50


def _table_checks():
    from rayml_assets.lib.dataset import table_checks

    return table_checks


def _duplicate_ids(lake_store: LakeResource, table: str, version: int) -> int:
    return _table_checks().duplicate_ids(lake_store.uri(table), version, lake_store.storage_options())


@asset_check(asset=raw_images, description="image_id (sha256 of the bytes) is unique")
def raw_images_unique_ids(context: AssetCheckExecutionContext, lake_store: LakeResource) -> AssetCheckResult:
    duplicates = _duplicate_ids(lake_store, tables.RAW_IMAGES, pinned_version(context, raw_images.key))
    return AssetCheckResult(passed=duplicates == 0, metadata={"duplicate_ids": duplicates})


@asset_check(asset=cleaned_images, description="image_id is unique in the cleaned version")
def cleaned_images_unique_ids(context: AssetCheckExecutionContext, lake_store: LakeResource) -> AssetCheckResult:
    duplicates = _duplicate_ids(lake_store, tables.CLEANED_IMAGES, pinned_version(context, cleaned_images.key))
    return AssetCheckResult(passed=duplicates == 0, metadata={"duplicate_ids": duplicates})


def _kept(lake_store: LakeResource, context) -> tuple[int, list[dict]]:
    version = pinned_version(context, cleaned_images.key)
    return version, _table_checks().cleaned_rows(lake_store.uri(tables.CLEANED_IMAGES), version, lake_store.storage_options())


@asset_check(asset=cleaned_images, description="Every label is in the configured taxonomy")
def labels_in_taxonomy(
    context: AssetCheckExecutionContext, lake_store: LakeResource, dataset_policy: DatasetPolicy
) -> AssetCheckResult:
    _, rows = _kept(lake_store, context)
    labels = Counter(r["label"] for r in rows)
    unknown = sorted(set(labels) - set(dataset_policy.taxonomy)) if dataset_policy.taxonomy else []
    return AssetCheckResult(
        passed=not unknown,
        metadata={"unknown_labels": MetadataValue.json(unknown), "labels": len(labels)},
    )


@asset_check(asset=cleaned_images, description="Each class has enough kept training images")
def enough_training_images_per_class(
    context: AssetCheckExecutionContext, lake_store: LakeResource, dataset_policy: DatasetPolicy
) -> AssetCheckResult:
    _, rows = _kept(lake_store, context)
    per_class = Counter(r["label"] for r in rows if r["split"] == "train" and not r["excluded"])
    classes = dataset_policy.taxonomy or sorted(per_class)
    short = {c: per_class.get(c, 0) for c in classes if per_class.get(c, 0) < dataset_policy.min_train_images_per_class}
    return AssetCheckResult(
        passed=not short,
        metadata={
            "min_required": dataset_policy.min_train_images_per_class,
            "train_images_per_class": markdown_table(dict(sorted(per_class.items())), "label", "train images"),
            "classes_below_minimum": MetadataValue.json(short),
        },
    )


@asset_check(asset=cleaned_images, description="train/val/test shares are within tolerance of the configured split")
def split_proportions(
    context: AssetCheckExecutionContext, lake_store: LakeResource, dataset_policy: DatasetPolicy
) -> AssetCheckResult:
    _, rows = _kept(lake_store, context)
    kept = [r["split"] for r in rows if not r["excluded"]]
    counts = Counter(kept)
    expected = {
        "train": 1 - dataset_policy.val_fraction - dataset_policy.test_fraction,
        "val": dataset_policy.val_fraction,
        "test": dataset_policy.test_fraction,
    }
    shares = {s: counts.get(s, 0) / max(len(kept), 1) for s in expected}
    deviation = max(abs(shares[s] - expected[s]) for s in expected)
    return AssetCheckResult(
        passed=deviation <= dataset_policy.split_tolerance,
        metadata={
            "shares": MetadataValue.json({s: round(v, 4) for s, v in shares.items()}),
            "max_deviation": round(deviation, 4),
            "tolerance": dataset_policy.split_tolerance,
        },
    )


@asset_check(
    asset=cleaned_images,
    blocking=True,
    description="Cleaning excluded no more than the configured share of images (blocks downstream training)",
)
def excluded_share_within_limit(
    context: AssetCheckExecutionContext, lake_store: LakeResource, dataset_policy: DatasetPolicy
) -> AssetCheckResult:
    _, rows = _kept(lake_store, context)
    share = sum(r["excluded"] for r in rows) / max(len(rows), 1)
    return AssetCheckResult(
        passed=share <= dataset_policy.max_excluded_share,
        severity=AssetCheckSeverity.ERROR,
        metadata={"excluded_share": round(share, 4), "max_excluded_share": dataset_policy.max_excluded_share},
    )


@asset_check(asset=cleaned_images, description="No image is in train in one version and in val/test in another")
def no_split_migration(context: AssetCheckExecutionContext, lake_store: LakeResource) -> AssetCheckResult:
    version = pinned_version(context, cleaned_images.key)
    compared, migrated = _table_checks().split_migrations(
        lake_store.uri(tables.CLEANED_IMAGES), version, SPLIT_HISTORY_VERSIONS, storage_options=lake_store.storage_options()
    )
    return AssetCheckResult(
        passed=not migrated,
        metadata={"versions_compared": compared, "migrations": MetadataValue.json(migrated)},
    )
