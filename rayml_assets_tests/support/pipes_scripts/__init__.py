"""Test-only Pipes job scripts, run through the compute resources like rayml_assets/jobs/*."""
