"""The dataset domain's Dagster definitions; ``rayml_assets.definitions`` loads every module here."""
