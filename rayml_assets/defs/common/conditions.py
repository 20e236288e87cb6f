"""Declarative automation keyed on data versions, not the clock.

raw_images and cleaned_images record a content hash as their DataVersion, tuned_model
the Tune experiment (data version + search config), registered_model the model
version. An asset with this condition is requested only when an upstream data
version actually changed: an unchanged re-ingest (same content hash) triggers nothing.
"""

from dagster import AutomationCondition

upstream_data_changed = (
    AutomationCondition.any_deps_match(AutomationCondition.data_version_changed()).since_last_handled()
    & ~AutomationCondition.any_deps_missing()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("upstream data version changed")
