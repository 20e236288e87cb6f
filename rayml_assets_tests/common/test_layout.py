"""The layout's rules: lib/ is Dagster-free, loading the code location stays light, modules stay small.

rayml_assets/defs/<domain>/   Dagster definitions only (assets, checks, sensors, jobs)
rayml_assets/lib/<domain>/    plain Python the definitions and the Pipes task scripts call;
rayml_assets/lib/common/      dagster_pipes is allowed there (task scripts report through it), dagster is not
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "rayml_assets"
LIB = PACKAGE / "lib"
# Imported by tasks and by the code paths that run them, never by loading the code location.
# The ML stack, and what only a step reads or draws with (Delta, Arrow, images, plots, the Azure SDK):
# each loads in the step or task that needs it, not in every process that loads the code location.
HEAVY_MODULES = (
    "torch", "ray", "fastdup", "alibi_detect", "shap", "mlflow",
    "deltalake", "pyarrow", "numpy", "PIL", "matplotlib", "pandas", "azure", "databricks",
)
MAX_MODULE_LINES = 400


def _relative(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def _is_dagster(module: str) -> bool:
    """dagster itself or one of its integrations (dagster_databricks, ...), but not dagster_pipes."""
    top = module.split(".")[0]
    return (top == "dagster" or top.startswith("dagster_")) and top != "dagster_pipes"


def dagster_imports(source: str) -> list[tuple[int, str]]:
    """(line, imported module) of every import of Dagster in ``source``, literal import_module calls included."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if _is_dagster(alias.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and _is_dagster(node.module):
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and _is_dagster(node.args[0].value)
        ):
            found.append((node.lineno, node.args[0].value))
    return sorted(found)


def test_the_dagster_import_rule_tells_dagster_from_dagster_pipes():
    source = (
        "import dagster\n"
        "from dagster._core.definitions import AssetKey\n"
        "import dagster_databricks\n"
        "from dagster_pipes import open_dagster_pipes\n"
        "import dagster_pipes\n"
        "from . import dagster\n"
        "importlib.import_module('dagster')\n"
    )
    assert dagster_imports(source) == [
        (1, "dagster"),
        (2, "dagster._core.definitions"),
        (3, "dagster_databricks"),
        (7, "dagster"),
    ]


def test_lib_does_not_import_dagster():
    files = sorted(LIB.rglob("*.py"))
    assert files, f"no modules under {LIB}"
    offenders = [
        f"{_relative(path)}:{line}: {module}"
        for path in files
        for line, module in dagster_imports(path.read_text())
    ]
    assert not offenders, "lib/ must stay Dagster-free (dagster_pipes is allowed):\n" + "\n".join(offenders)


def test_loading_the_code_location_imports_no_heavy_library(tmp_path):
    probe = (
        "import json, sys\n"
        "import rayml_assets.definitions\n"
        f"heavy = {HEAVY_MODULES!r}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))\n"
    )
    env = {**os.environ, "RAYML_HOME": str(tmp_path), "RAYML_PROFILE": "local"}
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=PACKAGE.parent, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = json.loads(run.stdout.strip().splitlines()[-1])
    assert loaded == [], f"`import rayml_assets.definitions` loads {loaded}; import them where they are used"


def test_no_module_is_longer_than_the_limit():
    lengths = {_relative(path): len(path.read_text().splitlines()) for path in sorted(PACKAGE.rglob("*.py"))}
    offenders = {path: lines for path, lines in lengths.items() if lines > MAX_MODULE_LINES}
    assert not offenders, f"modules over {MAX_MODULE_LINES} lines: " + ", ".join(
        f"{path} ({lines})" for path, lines in sorted(offenders.items(), key=lambda item: -item[1])
    )
