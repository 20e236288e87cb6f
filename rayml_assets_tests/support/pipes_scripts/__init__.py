"""Test-only Pipes task scripts (``<name>_task.py``), run through the compute resources like rayml_assets/lib/<domain>/*_task.py."""
