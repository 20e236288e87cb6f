from dagster import Definitions

from rayml_assets.defs.dataset import assets, checks

defs = Definitions(
    assets=[assets.raw_images, assets.cleaned_images],
    asset_checks=[
        checks.raw_images_unique_ids,
        checks.cleaned_images_unique_ids,
        checks.labels_in_taxonomy,
        checks.enough_training_images_per_class,
        checks.split_proportions,
        checks.excluded_share_within_limit,
        checks.no_split_migration,
    ],
)
