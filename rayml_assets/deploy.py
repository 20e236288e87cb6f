"""``python -m rayml_assets.deploy --env sit``: put this code where a profile's Databricks runs find it.

The "deploy code" pattern: the same wheel and task scripts are promoted from sit to uat
to prod; only the profile (``rayml_assets/profiles/<env>.yaml``) differs. This builds the
project wheel from the checkout and uploads it, and every task script, to the paths that
:class:`rayml_assets.resources.databricks_compute.DatabricksCompute` submits:

    <workspace_wheel_dir>/rayml_assets-<version>-py3-none-any.whl   (the run's library)
    <workspace_wheel_dir>/../tasks/<task>.py                           (the run's python_file)

Credentials come from the environment only (DATABRICKS_HOST + DATABRICKS_TOKEN, or the
AZURE_* service principal when the profile says ``auth: azure_client_secret``).
"""

from __future__ import annotations

import argparse
import io
import posixpath
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from databricks.sdk import WorkspaceClient
from databricks.sdk.service.workspace import ImportFormat

from rayml_assets.resources.compute import (
    DEFAULT_TASKS_PACKAGE,
    PACKAGE_ROOT,
    PROJECT_NAME,
    available_tasks,
    project_version,
    wheel_filename,
)
from rayml_assets.resources.databricks_compute import (
    DatabricksCredentialsError,
    credentials_for,
    require_credentials,
    workspace_tasks_dir,
    workspace_wheel_path,
)
from rayml_assets.settings import DatabricksSettings, ProfileError, load_profile

# What a wheel build needs from the checkout; copied so that a stale build/ never leaks in.
_BUILD_INPUTS = ("pyproject.toml", "setup.cfg", "setup.py", "README.md", "LICENSE", "MANIFEST.in")


class DeployError(RuntimeError):
    """Deployment cannot go on; the message says what to fix."""


@dataclass
class DeployResult:
    env: str
    wheel: str
    scripts: dict[str, str] = field(default_factory=dict)


def build_wheel(out_dir: Path, project_root: Path = PACKAGE_ROOT) -> Path:
    """Build the project wheel from a clean copy of the sources (pip, no dependencies)."""
    if not (project_root / "pyproject.toml").is_file():
        raise DeployError(f"no pyproject.toml in {project_root}: run deploy from a checkout")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rayml-wheel-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(
            project_root / PROJECT_NAME,
            src / PROJECT_NAME,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        for name in _BUILD_INPUTS:
            if (project_root / name).is_file():
                shutil.copy2(project_root / name, src / name)
        # The backend (setuptools) is already in this venv: no isolated env to download.
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        proc = subprocess.run(
            [*cmd, "--wheel-dir", tmp, str(src)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise DeployError(f"wheel build failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        built = sorted(Path(tmp).glob(f"{PROJECT_NAME}-*.whl"))
        if len(built) != 1:
            raise DeployError(f"expected one {PROJECT_NAME} wheel, pip produced {built}")
        return Path(shutil.copy2(built[0], out_dir / built[0].name))


def workspace_client_from_env(auth: str) -> WorkspaceClient:
    require_credentials(auth)
    # Same credential wiring as the compute resource; initializing resolves the EnvVars.
    with credentials_for(auth).process_config_and_initialize_cm() as credentials:
        return credentials.get_client().workspace_client


def upload(client: WorkspaceClient, local: Path, remote: str) -> None:
    """One file to a workspace path, or to a Unity Catalog volume path (/Volumes/...)."""
    data = local.read_bytes()
    if remote.startswith("/Volumes/"):
        client.files.create_directory(posixpath.dirname(remote))
        client.files.upload(remote, io.BytesIO(data), overwrite=True)
    else:
        client.workspace.mkdirs(posixpath.dirname(remote))
        client.workspace.upload(remote, data, format=ImportFormat.AUTO, overwrite=True)


def deploy(
    env: str,
    *,
    client: WorkspaceClient | None = None,
    wheel: Path | None = None,
    tasks_package: str = DEFAULT_TASKS_PACKAGE,
    dry_run: bool = False,
) -> DeployResult:
    profile = load_profile(env)
    if profile.databricks is None:
        raise DeployError(f"profile {env!r} runs compute {profile.compute!r}: nothing to deploy")
    settings: DatabricksSettings = profile.databricks
    if client is None and not dry_run:
        client = workspace_client_from_env(settings.auth)  # fail before the build, not after
    version = project_version()
    if wheel is None:
        wheel = build_wheel(PACKAGE_ROOT / "dist")
    if wheel.name != wheel_filename(version):
        raise DeployError(
            f"{wheel.name} is not the wheel the compute resource submits "
            f"({wheel_filename(version)}); rebuild from this checkout"
        )
    result = DeployResult(env=env, wheel=workspace_wheel_path(settings, version))
    scripts = available_tasks(tasks_package)
    tasks_dir = workspace_tasks_dir(settings)
    result.scripts = {task: posixpath.join(tasks_dir, f"{task}.py") for task in scripts}
    if dry_run:
        return result
    upload(client, wheel, result.wheel)
    for task, path in scripts.items():
        upload(client, path, result.scripts[task])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rayml_assets.deploy", description="Upload the wheel and task scripts."
    )
    parser.add_argument("--env", required=True, help="profile to deploy: sit, uat or prod")
    parser.add_argument("--wheel", type=Path, help="a wheel built already (default: build one)")
    parser.add_argument("--dry-run", action="store_true", help="build and print, upload nothing")
    args = parser.parse_args(argv)
    try:
        result = deploy(args.env, wheel=args.wheel, dry_run=args.dry_run)
    except (DeployError, DatabricksCredentialsError, ProfileError) as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 2
    verb = "would upload" if args.dry_run else "uploaded"
    print(f"[{result.env}] {verb} wheel -> {result.wheel}")
    for task, path in result.scripts.items():
        print(f"[{result.env}] {verb} task {task} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
