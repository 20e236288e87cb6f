"""raw_images → cleaned_images: thin Dagster wrappers over lib.dataset.ingest and lib.dataset.cleaning.

The Delta, image and plotting stack is imported inside the asset bodies: it loads in the
step that needs it, not with the code location (rayml_assets_tests/common/test_layout.py).
"""

from typing import Literal, Optional

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from rayml_assets.lib.common import tables
from rayml_assets.lib.common.image_limits import DEFAULT_ALLOWED_FORMATS, DEFAULT_MAX_PIXELS
from rayml_assets.lib.common.listing import SETTLE_S
from rayml_assets.lib.dataset.cleaning_backend import CleaningThresholds
from rayml_assets.defs.common import keys
from rayml_assets.defs.common.conditions import upstream_data_changed
from rayml_assets.defs.common.lineage import markdown_table, pinned_version
from rayml_assets.resources.storage import DatasetPolicy, LakeResource, LandingResource, WorkspaceResource

DATASET_GROUP = "dataset"


class RawImagesConfig(Config):
    landing_uri: Optional[str] = Field(None, description="Override the landing location (folder or manifest CSV)")
    allowed_formats: list[str] = Field(list(DEFAULT_ALLOWED_FORMATS), description="Pillow format names accepted")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, description="Decompression-bomb guard: larger images are quarantined")
    max_file_bytes: Optional[int] = Field(None, description="Larger files are quarantined from their size, unread; default 256 MiB")
    batch_bytes: Optional[int] = Field(
        None, description="Files are checked and committed in batches of about this many bytes, so memory stays "
        "bounded as the landing grows; default 32 MiB"
    )
    workers: Optional[int] = Field(None, description="Decoding processes; default: one per core")
    check_every_file: bool = Field(
        False,
        description="Stat every landed file, so a file rewritten in place is read at once. Off: an ingest "
        f"whose local landing folders are all unchanged (and older than {SETTLE_S:g} s) returns after one stat per folder, "
        "and a rewritten file is read by the next ingest that finds a folder changed. landing_sensor's runs turn it on.",
    )


@asset(
    key=keys.RAW_IMAGES,
    deps=[keys.IMAGE_LANDING],
    group_name=DATASET_GROUP,
    kinds={"delta", "python"},
    description="Every valid landed image (bytes + metadata) in a Delta table, merged on the sha256 of its bytes; "
    "rejected files go to the quarantine table with their reason (and are checked again when the file or the policy "
    "changes). The landing decides labels: a moved file is relabelled, bytes under two labels are quarantined.",
)
def raw_images(
    context: AssetExecutionContext,
    config: RawImagesConfig,
    lake_store: LakeResource,
    landing: LandingResource,
    dataset_policy: DatasetPolicy,
) -> MaterializeResult:
    from rayml_assets.lib.dataset.ingest import IngestPolicy, ingest

    landing_uri = config.landing_uri or landing.images_uri
    policy = IngestPolicy(
        allowed_formats=tuple(f.upper() for f in config.allowed_formats),
        max_pixels=config.max_pixels,
        taxonomy=tuple(dataset_policy.taxonomy) if dataset_policy.taxonomy else None,
        check_every_file=config.check_every_file,
        **({"workers": config.workers} if config.workers else {}),
        **({"max_file_bytes": config.max_file_bytes} if config.max_file_bytes else {}),
        **({"batch_bytes": config.batch_bytes} if config.batch_bytes else {}),
        storage=landing.storage_settings(),
    )
    context.log.info(f"ingesting {landing_uri} into {lake_store.uri(tables.RAW_IMAGES)} with {policy.workers} workers")
    result = ingest(
        landing_uri, lake_store.lake_root, policy, batch_id=context.run_id[:12], storage_options=lake_store.storage_options()
    )
    context.log.info(
        f"{result.files_seen} files: {result.rows_added} new images, {result.already_present} already present, "
        f"{sum(result.quarantined.values())} quarantined, {result.relabeled} relabeled, "
        f"{result.label_conflicts_removed} removed for a label conflict, {result.recovered} recovered ({result.landing_check})"
    )
    return MaterializeResult(
        metadata={
            "delta_version": result.delta_version,
            "table_uri": MetadataValue.path(lake_store.uri(tables.RAW_IMAGES)),
            "quarantine_uri": MetadataValue.path(lake_store.uri(tables.QUARANTINE)),
            "landing_uri": MetadataValue.path(landing_uri),
            "batch_id": result.batch_id,
            "files_seen": result.files_seen,
            "landing_check": result.landing_check,
            "rows_added": result.rows_added,
            "already_present": result.already_present,
            "duplicates_in_batch": result.duplicates_in_batch,
            "relabeled": result.relabeled,
            "label_conflicts_removed": result.label_conflicts_removed,
            # Quarantined before, in raw_images now: their quarantine rows stay as history.
            "recovered_from_quarantine": result.recovered,
            "recheck_next_ingest": result.recheck,
            "dagster/row_count": result.total_rows,
            "quarantined": sum(result.quarantined.values()),
            "quarantined_by_reason": markdown_table(dict(sorted(result.quarantined.items())), "reason", "files"),
            "images_per_label": markdown_table(result.label_counts, "label", "images"),
            "content_hash": result.content_hash,
        },
        data_version=DataVersion(result.content_hash),
    )


class CleanedImagesConfig(Config):
    backend: Literal["fastdup", "open"] = Field(
        "fastdup",
        description="fastdup (its embeddings and statistics; licensed CC BY-NC-ND) or open: Pillow, NumPy, SciPy and "
        "scikit-learn only (normalized grayscale thumbnails as embeddings, NumPy exposure and blur statistics). "
        "Either way near-duplicates are confirmed on aligned pixels, so both find them at any resolution.",
    )
    candidate_similarity: float = Field(
        CleaningThresholds.candidate_similarity, description="Backend embedding similarity from which a pair is checked on pixels"
    )
    candidate_neighbours: int = Field(
        CleaningThresholds.candidate_neighbours, description="Nearest thumbnails of each image also checked on pixels"
    )
    near_duplicate_distance: float = Field(
        CleaningThresholds.near_duplicate_distance,
        description="A pair is a near-duplicate when its aligned pixel difference is below this share of the change "
        "a 2.5 % crop makes to the image itself (a copy: ~0.05; a distinct image: >= ~1)",
    )
    outlier_similarity: float = Field(
        CleaningThresholds.outlier_similarity,
        description="Nearest-neighbour embedding similarity below which an image is an outlier",
    )
    outlier_max_share: float = Field(
        CleaningThresholds.outlier_max_share,
        description="At most this share of the images is excluded as outliers, the least similar first",
    )
    dark_mean: float = Field(CleaningThresholds.dark_mean, description="Mean intensity (0-255) below which a flat image is too dark")
    bright_mean: float = Field(CleaningThresholds.bright_mean, description="Mean intensity above which a flat image is too bright")
    exposure_contrast: float = Field(
        CleaningThresholds.exposure_contrast,
        description="Std of intensities below which an image is flat: only a flat image is too dark or too bright "
        "(white strokes on black have a dark mean and plenty of contrast)",
    )
    blur_min: float = Field(CleaningThresholds.blur_min, description="Variance of the Laplacian below which an image is too blurry")
    fastdup_threads: Optional[int] = Field(None, description="Default: one per core")

    def thresholds(self) -> CleaningThresholds:
        return CleaningThresholds(**self.model_dump(exclude={"fastdup_threads", "backend"}))


TAXONOMY_UNCHANGED = AssetCheckSpec(
    "taxonomy_unchanged",
    asset=keys.CLEANED_IMAGES,
    description="The kept labels are those of the previous materialization; a new or vanished label warns, "
    "because it changes the class count the champion was trained for",
)


def _previous_taxonomy(context: AssetExecutionContext) -> list[str] | None:
    event = context.instance.get_latest_materialization_event(context.asset_key)
    entry = (event.asset_materialization.metadata if event and event.asset_materialization else {}).get("taxonomy")
    return list(entry.value) if entry is not None else None


def taxonomy_record(context: AssetExecutionContext, labels: list[str], fixed: bool) -> tuple[dict, AssetCheckResult]:
    """The taxonomy metadata of a cleaned version and the warning check that compares it with the last one."""
    previous = _previous_taxonomy(context)
    new = sorted(set(labels) - set(previous)) if previous is not None else []
    removed = sorted(set(previous) - set(labels)) if previous is not None else []
    if new or removed:
        context.log.warning(f"the taxonomy changed: new labels {new}, vanished labels {removed}")
    changes = {"new_labels": MetadataValue.json(new), "removed_labels": MetadataValue.json(removed)}
    metadata = {
        "taxonomy": MetadataValue.json(labels),
        "taxonomy_source": "profile" if fixed else "landing label folders",
        "num_classes": len(labels),
        **changes,
    }
    check = AssetCheckResult(
        check_name=TAXONOMY_UNCHANGED.name,
        passed=not new and not removed,
        severity=AssetCheckSeverity.WARN,
        metadata={"previous_taxonomy": MetadataValue.json(previous or []), **changes},
    )
    return metadata, check


@asset(
    key=keys.CLEANED_IMAGES,
    automation_condition=upstream_data_changed,
    deps=[raw_images],
    group_name=DATASET_GROUP,
    kinds={"delta", "python"},
    check_specs=[TAXONOMY_UNCHANGED],
    description="A tagged Delta snapshot of the dataset: each image with its split and, if excluded by cleaning "
    "(duplicates, outliers, invalid, dark/bright/blurry), the reason; its kept labels are the taxonomy.",
)
def cleaned_images(
    context: AssetExecutionContext,
    config: CleanedImagesConfig,
    lake_store: LakeResource,
    workspace: WorkspaceResource,
    dataset_policy: DatasetPolicy,
) -> MaterializeResult:
    from rayml_assets.lib.dataset.cleaning import clean
    from rayml_assets.lib.dataset.cleaning_backend import backend_named
    from rayml_assets.lib.common.previews import read_preview
    from rayml_assets.lib.dataset.gallery import html_gallery, png_grid, reason_strips

    raw_version = pinned_version(context, raw_images.key)
    context.log.info(f"cleaning raw_images@v{raw_version} with the {config.backend} backend")
    result = clean(
        lake_store.uri(tables.RAW_IMAGES),
        raw_version,
        lake_store.uri(tables.CLEANED_IMAGES),
        workspace.scratch(config.backend, f"raw-v{raw_version}"),
        backend_named(config.backend, num_threads=config.fastdup_threads),
        config.thresholds(),
        val_fraction=dataset_policy.val_fraction,
        test_fraction=dataset_policy.test_fraction,
        commit_tags={"rayml.dagster_run_id": context.run_id},
        storage_options=lake_store.storage_options(),
    )
    report_dir, storage = workspace.report_dir("cleaning", f"v{result.delta_version}"), workspace.storage_settings()
    captions = [(f"{reason}\nlabel {label} · {image_id[:8]}", data) for image_id, label, reason, data in result.excluded_examples]
    title = f"Excluded by cleaning (raw v{raw_version})"
    gallery = png_grid(captions, f"{report_dir}/excluded.png", title=title, storage=storage) if captions else None
    page = html_gallery(
        captions, f"{report_dir}/excluded.html", f"cleaned_images v{result.delta_version}: excluded examples", storage
    )
    excluded = result.total - result.kept
    context.log.info(f"kept {result.kept}/{result.total}; excluded {dict(result.reasons)}")
    metadata = {
        "delta_version": result.delta_version,
        "raw_version": raw_version,
        "delta_tag": f"cleaned-from-raw-v{raw_version}",
        "table_uri": MetadataValue.path(lake_store.uri(tables.CLEANED_IMAGES)),
        "dagster/row_count": result.total,
        "kept": result.kept,
        "excluded": excluded,
        "excluded_share": round(excluded / max(result.total, 1), 4),
        "excluded_by_reason": markdown_table(dict(sorted(result.reasons.items())), "reason", "images"),
        "kept_by_split": markdown_table(dict(sorted(result.splits.items())), "split", "images"),
        "excluded_gallery_html": MetadataValue.path(page),
        "cleaning_backend": config.backend,
        "content_hash": result.content_hash,
    }
    taxonomy, taxonomy_check = taxonomy_record(context, sorted(result.labels), fixed=bool(dataset_policy.taxonomy))
    metadata.update(taxonomy)
    if gallery:
        metadata["excluded_gallery_png"] = MetadataValue.path(gallery)
        examples = [(reason, data) for _, _, reason, data in result.excluded_examples]
        strips = reason_strips(examples, f"{report_dir}/by_reason.png", storage=storage)
        metadata["preview"] = MetadataValue.md(read_preview(strips, "excluded images, by reason", storage))
    return MaterializeResult(
        metadata=metadata, data_version=DataVersion(result.content_hash), check_results=[taxonomy_check]
    )
