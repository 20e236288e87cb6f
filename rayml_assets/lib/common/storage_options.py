"""One storage configuration, turned into what each client needs (docs/infrastructure.md, "Storage access").

A profile's ``storage:`` section is a :class:`StorageSettings`: how to authenticate, the account,
an optional endpoint (an emulator), and the NAMES of the environment variables that hold the
credentials. Values are read from the environment only here, when a client is made:

- :func:`delta_options`: delta-rs ``storage_options`` (object_store's Azure keys);
- :func:`fsspec_kwargs`: adlfs keyword arguments, for every fsspec read and write;
- :func:`checkpoint_storage`: a pyarrow filesystem (adlfs behind ``FSSpecHandler``) for Ray checkpoints;
- :func:`mlflow_artifact_env`: the variables the Azure SDK behind MLflow's artifact stores reads, set
  only while a block runs.

The option mappings are :class:`Options`, whose ``repr`` masks every value, so a mapping that ends
up in a log line or an error shows its keys only. No Dagster here: task scripts import it on a cluster.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # pyarrow loads where Ray checkpoints are set up
    import pyarrow.fs

Auth = Literal["service_principal", "managed_identity", "workload_identity", "connection_string_env", "none"]
AZURE_SCHEMES = ("abfs", "abfss", "az", "wasb", "wasbs")
# The Azure SDK's own variable names: what MLflow's artifact stores (DefaultAzureCredential) read.
_SDK_VARS = {"client_id": "AZURE_CLIENT_ID", "tenant_id": "AZURE_TENANT_ID", "client_secret": "AZURE_CLIENT_SECRET",
             "federated": "AZURE_FEDERATED_TOKEN_FILE", "connection_string": "AZURE_STORAGE_CONNECTION_STRING"}


class StorageError(ValueError):
    """The storage configuration cannot be resolved; the message names variables, never their values."""


class Options(dict):
    """A mapping of client options that never shows its values (some are credentials)."""

    def __repr__(self) -> str:
        return "Options(" + ", ".join(f"{k}=***" for k in self) + ")"

    __str__ = __repr__


class StorageSettings(BaseModel):
    """How every client reaches the profile's storage. The ``*_var`` fields are variable NAMES
    (their field names avoid secret words, so the settings pass ``compute.check_no_secrets``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    auth: Auth = "none"
    account_name: str | None = None
    # The blob endpoint, e.g. http://127.0.0.1:10000/devstoreaccount1 for Azurite; default: the account's.
    endpoint: str | None = None
    client_id_var: str = _SDK_VARS["client_id"]
    tenant_id_var: str = _SDK_VARS["tenant_id"]
    # The service principal's client secret (service_principal) or the connection string (connection_string_env).
    key_var: str | None = None
    federated_file_var: str = _SDK_VARS["federated"]

    def key_variable(self) -> str:
        if self.key_var:
            return self.key_var
        return _SDK_VARS["connection_string" if self.auth == "connection_string_env" else "client_secret"]


def _env(name: str, settings: StorageSettings, required: bool = True) -> str | None:
    value = os.environ.get(name)
    if required and not value:
        raise StorageError(f"storage auth {settings.auth!r} needs the environment variable {name}, which is not set")
    return value


def _connection_string(settings: StorageSettings) -> tuple[str, dict[str, str]]:
    """The connection string and its ``Key=Value`` parts (a value may contain '=')."""
    text = _env(settings.key_variable(), settings) or ""
    parts = dict(p.split("=", 1) for p in text.split(";") if "=" in p)
    return text, parts


def _needs_account(settings: StorageSettings) -> str:
    if not settings.account_name:
        raise StorageError(f"storage auth {settings.auth!r} needs storage.account_name")
    return settings.account_name


def _with_endpoint(options: dict[str, str], endpoint: str | None) -> dict[str, str]:
    if endpoint:
        options["azure_storage_endpoint"] = endpoint.rstrip("/")
        if endpoint.startswith("http://"):  # an emulator on loopback
            options["allow_http"] = "true"
    return options


def delta_options(settings: StorageSettings | None) -> Options | None:
    """delta-rs ``storage_options``; None with ``auth: none`` (a local lake, or delta-rs's own env lookup)."""
    if settings is None or settings.auth == "none":
        return None
    if settings.auth == "connection_string_env":
        _, parts = _connection_string(settings)
        options = {"azure_storage_account_name": parts.get("AccountName") or _needs_account(settings)}
        if "AccountKey" in parts:
            options["azure_storage_account_key"] = parts["AccountKey"]
        if "SharedAccessSignature" in parts:
            options["azure_storage_sas_key"] = parts["SharedAccessSignature"]
        return Options(_with_endpoint(options, parts.get("BlobEndpoint") or settings.endpoint))
    options = {"azure_storage_account_name": _needs_account(settings)}
    if settings.auth == "service_principal":
        options |= {
            "azure_storage_client_id": _env(settings.client_id_var, settings),
            "azure_storage_tenant_id": _env(settings.tenant_id_var, settings),
            "azure_storage_client_secret": _env(settings.key_variable(), settings),
        }
    elif settings.auth == "workload_identity":
        options |= {
            "azure_storage_client_id": _env(settings.client_id_var, settings),
            "azure_storage_tenant_id": _env(settings.tenant_id_var, settings),
            "azure_federated_token_file": _env(settings.federated_file_var, settings),
        }
    elif client_id := _env(settings.client_id_var, settings, required=False):  # a user-assigned identity
        options["azure_storage_client_id"] = client_id
    return Options(_with_endpoint(options, settings.endpoint))


def fsspec_kwargs(settings: StorageSettings | None) -> Options:
    """adlfs keyword arguments for ``fsspec.core.url_to_fs``; empty with ``auth: none``."""
    if settings is None or settings.auth == "none":
        return Options()
    if settings.auth == "connection_string_env":
        return Options(connection_string=_connection_string(settings)[0])
    kwargs: dict[str, Any] = {"account_name": _needs_account(settings)}
    if settings.endpoint:  # adlfs reaches an account host over https only
        split = urlsplit(settings.endpoint)
        kwargs["account_host"] = f"{split.netloc}{split.path}".rstrip("/")
    if settings.auth == "service_principal":
        kwargs |= {
            "client_id": _env(settings.client_id_var, settings),
            "tenant_id": _env(settings.tenant_id_var, settings),
            "client_secret": _env(settings.key_variable(), settings),
        }
    else:  # adlfs talks to the aio blob client, so the credential is an aio one
        from azure.identity.aio import ManagedIdentityCredential, WorkloadIdentityCredential

        client_id = _env(settings.client_id_var, settings, required=settings.auth == "workload_identity")
        kwargs["credential"] = (
            WorkloadIdentityCredential(
                tenant_id=_env(settings.tenant_id_var, settings),
                client_id=client_id,
                token_file_path=_env(settings.federated_file_var, settings),
            )
            if settings.auth == "workload_identity"
            else ManagedIdentityCredential(client_id=client_id)
        )
    return Options(kwargs)


def is_azure(uri: str) -> bool:
    return "://" in uri and uri.split("://", 1)[0].lower() in AZURE_SCHEMES


def filesystem(uri: str, settings: StorageSettings | None = None):
    """``(fs, path)`` of ``uri``: an Azure URI with the settings' credentials, anything else as fsspec opens it."""
    from fsspec.core import url_to_fs

    return url_to_fs(uri, **(fsspec_kwargs(settings) if is_azure(uri) else {}))


def write_bytes(uri: str, data: bytes, settings: StorageSettings | None = None) -> str:
    """Write one file (a report, a plot) at ``uri``, creating its folder where the store has folders."""
    fs, path = filesystem(uri, settings)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, data)
    return uri


def checkpoint_storage(uri: str, settings: StorageSettings | None) -> tuple[str, pyarrow.fs.FileSystem | None]:
    """``(storage_path, storage_filesystem)`` for Ray's ``RunConfig``: a local path as it is; an Azure
    URI as its container path on a pyarrow filesystem wrapping adlfs (pyarrow has no Azure auth of its own
    that takes a service principal or a connection string), which pickles without credentials
    (:mod:`rayml_assets.lib.common.checkpoint_fs`)."""
    if not is_azure(uri):
        return uri, None
    from rayml_assets.lib.common.checkpoint_fs import azure_checkpoint_filesystem

    return azure_checkpoint_filesystem(uri, settings)


def download(uri: str, local_dir: str, settings: StorageSettings | None = None) -> None:
    """Copy the folder at ``uri`` (any fsspec URI; Azure with the settings' credentials) into ``local_dir``."""
    fs, path = filesystem(uri, settings)
    fs.get(f"{path.rstrip('/')}/", f"{local_dir.rstrip('/')}/", recursive=True)


def mlflow_env(settings: StorageSettings | None) -> Options:
    """The Azure SDK variables MLflow's artifact stores read: its ADLS store (abfss://) takes
    DefaultAzureCredential (service principal, workload or managed identity); its blob store (wasbs://)
    also a connection string."""
    if settings is None or settings.auth == "none":
        return Options()
    if settings.auth == "connection_string_env":
        return Options({_SDK_VARS["connection_string"]: _connection_string(settings)[0]})
    names = {"client_id": settings.client_id_var}
    if settings.auth == "service_principal":
        names |= {"tenant_id": settings.tenant_id_var, "client_secret": settings.key_variable()}
    elif settings.auth == "workload_identity":
        names |= {"tenant_id": settings.tenant_id_var, "federated": settings.federated_file_var}
    required = settings.auth != "managed_identity"  # a system-assigned identity needs no client id
    values = {_SDK_VARS[k]: _env(name, settings, required) for k, name in names.items()}
    return Options({k: v for k, v in values.items() if v})


@contextlib.contextmanager
def mlflow_artifact_env(settings: StorageSettings | None) -> Iterator[None]:
    """Set :func:`mlflow_env` while the block runs, then put the environment back as it was."""
    scoped: Mapping[str, str] = mlflow_env(settings)
    saved = {k: os.environ.get(k) for k in scoped}
    os.environ.update(scoped)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
