"""Azurite (the Azure Storage emulator) for the session: started once on a free loopback port, data in a
temporary folder, killed at the end. ``make azurite`` installs it into .azurite/; without it the tests fail."""

import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from rayml_assets.lib.common.storage_options import StorageSettings

AZURITE_BIN = Path(__file__).resolve().parents[2] / ".azurite" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
# The emulator's published account key (docs of Azurite): a test value, never in a profile.
EMULATOR_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
CONNECTION_VAR = "AZURE_STORAGE_CONNECTION_STRING"
CONTAINERS = ("lake", "landing", "reports", "checkpoints", "mlflow")
START_TIMEOUT_S = 30


@dataclass(frozen=True)
class Azurite:
    endpoint: str
    connection_string: str
    start_seconds: float

    def uri(self, container: str, path: str = "") -> str:
        return f"abfss://{container}@{ACCOUNT}.dfs.core.windows.net/{path}".rstrip("/")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"azurite-blob exited with {process.returncode}: {process.stderr.read().decode()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"azurite-blob did not listen on port {port} within {START_TIMEOUT_S} s")


@pytest.fixture(scope="session")
def azurite():
    if not AZURITE_BIN.exists():
        pytest.fail(f"Azurite is not installed at {AZURITE_BIN}: run `make azurite` (npm ci into .azurite/)")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="rayml-azurite-") as data:
        started = time.monotonic()
        process = subprocess.Popen(
            [str(AZURITE_BIN), "--silent", "--loose", "--skipApiVersionCheck", "--disableTelemetry",
             "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", data],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            _wait_listening(port, process)
            endpoint = f"http://127.0.0.1:{port}/{ACCOUNT}"
            conn = f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={EMULATOR_KEY};BlobEndpoint={endpoint};"
            server = Azurite(endpoint, conn, time.monotonic() - started)
            print(f"\nAzurite listening on {endpoint} after {server.start_seconds:.2f} s")
            from azure.storage.blob import BlobServiceClient

            service = BlobServiceClient.from_connection_string(conn)
            for name in CONTAINERS:
                service.create_container(name)
            yield server
        finally:
            process.kill()
            process.wait(10)


@pytest.fixture
def azure_storage(azurite, monkeypatch) -> StorageSettings:
    """The profile's storage section for the emulator: the connection string comes from the environment."""
    monkeypatch.setenv(CONNECTION_VAR, azurite.connection_string)
    monkeypatch.setenv("RAYML_SENSOR_SETTLE_SECONDS", "0")  # files written by the test are complete
    return StorageSettings(auth="connection_string_env", account_name=ACCOUNT, key_var=CONNECTION_VAR)


@pytest.fixture
def azure_prefix(request) -> str:
    """A folder of its own for each test inside the shared containers."""
    return f"t-{request.node.name[:40].replace('[', '-').replace(']', '')}-{os.getpid()}-{time.time_ns() % 10**9}"
