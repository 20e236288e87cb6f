"""Reading the exact versions that upstream materializations recorded."""

from __future__ import annotations

from dagster import AssetKey, Failure, MetadataValue


def upstream_metadata(context, asset_key: str | AssetKey) -> dict:
    """The metadata of ``asset_key``'s latest materialization, as plain values."""
    key = AssetKey.from_coercible(asset_key)
    event = context.instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        raise Failure(
            description=f"{key.to_user_string()} has never been materialized; materialize it first.",
        )
    return {k: (v.value if isinstance(v, MetadataValue) else v) for k, v in event.asset_materialization.metadata.items()}


def pinned_version(context, asset_key: str | AssetKey) -> int:
    """The Delta version an upstream asset recorded: downstream never reads 'the latest'."""
    metadata = upstream_metadata(context, asset_key)
    if "delta_version" not in metadata:
        raise Failure(description=f"{AssetKey.from_coercible(asset_key).to_user_string()} recorded no delta_version")
    return int(metadata["delta_version"])


def markdown_table(rows: dict, key: str, value: str) -> MetadataValue:
    lines = [f"| {key} | {value} |", "| --- | ---: |"] + [f"| {k} | {v} |" for k, v in rows.items()]
    return MetadataValue.md("\n".join(lines))
