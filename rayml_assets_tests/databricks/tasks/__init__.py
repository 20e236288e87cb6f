"""Test-only Pipes task scripts (``<name>_task.py``) that only the Databricks contract tests run."""
