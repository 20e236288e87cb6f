"""The Delta table names of the platform, and where a table sits under a lake root.

Apart from ``lake`` (which imports deltalake and pyarrow) so that the code location can
name the tables (asset keys, contracts) without loading the Delta stack.
"""

RAW_IMAGES = "raw_images"
QUARANTINE = "quarantine"
CLEANED_IMAGES = "cleaned_images"
PREDICTIONS = "predictions"
LANDING_INDEX = "landing_index"


def table_uri(lake_root: str, name: str) -> str:
    return f"{lake_root.rstrip('/')}/{name}"
