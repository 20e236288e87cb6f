"""Contract tests of log shipping to Azure Monitor, against a local fake of the Logs Ingestion API.

The fake listens on 127.0.0.1 only, over TLS with a throwaway certificate (the
SDK refuses bearer tokens over plain HTTP), and implements the endpoint's
contract: ``POST /dataCollectionRules/{ruleId}/streams/{stream}?api-version=...``
with a bearer token, a JSON array body (gzip-encoded by the SDK) and a 204 reply.
It can also answer 503 or 400, or not listen at all, to play an outage.
"""

from __future__ import annotations

import datetime as dt
import gzip
import ipaddress
import json
import logging
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dagster import Definitions, job, op

from rayml_assets.observability import azure_monitor
from rayml_assets.observability.azure_monitor import (
    COLUMNS,
    AzureMonitorHandler,
    attach_to_root_logger,
    handler_from_profile,
)
from rayml_assets.observability.dagster_logger import dagster_logger_run_config, dagster_loggers
from rayml_assets.settings import AzureMonitorSettings

pytestmark = pytest.mark.contract

RULE_ID = "dcr-00000000000000000000000000000000"
STREAM = "Custom-RaymlLogs_CL"
TOKEN = "fake-token-for-tests"
INGEST_PATH = re.compile(r"^/dataCollectionRules/(?P<rule>[^/]+)/streams/(?P<stream>[^/]+)$")


class FakeCredential:
    """A TokenCredential that hands out a fixed token and remembers the scopes asked for."""

    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken(TOKEN, int(time.time()) + 3600)


@dataclass
class Upload:
    rule: str
    stream: str
    api_version: str
    authorization: str
    content_encoding: str
    records: list[dict]


class _IngestionHandler(BaseHTTPRequestHandler):
    server: FakeIngestionServer

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        match = INGEST_PATH.match(url.path)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if match is None or not self.headers.get("Authorization", "").startswith("Bearer "):
            self.send_response(404 if match is None else 401)
        else:
            records = json.loads(body)
            assert isinstance(records, list)
            self.server.record(
                Upload(
                    rule=match["rule"],
                    stream=match["stream"],
                    api_version=parse_qs(url.query).get("api-version", [""])[0],
                    authorization=self.headers["Authorization"],
                    content_encoding=self.headers.get("Content-Encoding", ""),
                    records=records,
                )
            )
            self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args) -> None:  # keep test output clean
        pass


class FakeIngestionServer(ThreadingHTTPServer):
    """The Logs Ingestion endpoint on 127.0.0.1; ``status`` is what it answers."""

    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _IngestionHandler)
        self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.status = 204
        self.attempts = 0
        self.uploads: list[Upload] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"

    def record(self, upload: Upload) -> None:
        with self._lock:
            self.attempts += 1
            if self.status == 204:
                self.uploads.append(upload)

    @property
    def records(self) -> list[dict]:
        with self._lock:
            return [r for upload in self.uploads for r in upload.records]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1: its path (for the client) and the server's TLS context."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_path, key_path)
    return str(cert_path), tls


@pytest.fixture
def server(certificate):
    srv = FakeIngestionServer(certificate[1])
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def make_handler(certificate):
    """Build handlers that trust the fake's certificate; every one is closed after the test."""
    handlers = []

    def make(endpoint: str, **options) -> AzureMonitorHandler:
        options = {"credential": FakeCredential(), "connection_verify": certificate[0], **options}
        handler = AzureMonitorHandler(endpoint, RULE_ID, STREAM, **options)
        handlers.append(handler)
        return handler

    yield make
    for handler in handlers:
        handler.close(timeout=1)


def _logger(handler: logging.Handler, name: str) -> logging.Logger:
    """A logger outside the logging hierarchy, so tests leave no global state behind."""
    log = logging.Logger(name, logging.INFO)
    log.addHandler(handler)
    return log


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_contract_records_arrive_in_batches_with_the_table_columns(server, make_handler):
    credential = FakeCredential()
    # A long flush interval: only full batches and close() send, so the batch sizes are exact.
    handler = make_handler(
        server.url, credential=credential, environment="sit", run_id="run-42", batch_size=10, flush_interval=30
    )
    log = _logger(handler, "rayml.contract.batches")

    for i in range(24):
        log.info("step %d of %s", i, "training")
    try:
        raise ZeroDivisionError("loss is nan")
    except ZeroDivisionError:
        log.exception("trial failed")
    handler.close(timeout=10)

    assert [len(upload.records) for upload in server.uploads] == [10, 10, 5]
    for upload in server.uploads:
        assert (upload.rule, upload.stream) == (RULE_ID, STREAM)
        assert upload.api_version
        assert upload.authorization == f"Bearer {TOKEN}"
        assert upload.content_encoding == "gzip"
    assert set(credential.scopes) == {"https://monitor.azure.com/.default"}

    records = server.records
    assert all(set(record) == set(COLUMNS) for record in records)
    assert [r["Message"] for r in records[:2]] == ["step 0 of training", "step 1 of training"]
    first, last = records[0], records[-1]
    assert first["Level"] == "INFO" and first["Logger"] == "rayml.contract.batches"
    assert first["Environment"] == "sit" and first["RunId"] == "run-42"
    assert first["Host"] == socket.gethostname() and isinstance(first["ProcessId"], int)
    assert dt.datetime.fromisoformat(first["TimeGenerated"]).tzinfo is not None
    assert first["Exception"] == ""
    assert last["Level"] == "ERROR" and "ZeroDivisionError" in last["Exception"]
    assert handler.stats() == {
        "sent": 25,
        "dropped": 0,
        "rejected": 0,
        "buffered": 0,
        "failed_uploads": 0,
        "last_error": None,
    }


def test_contract_outage_buffers_up_to_the_bound_then_drops_and_recovers(server, make_handler):
    server.status = 503
    handler = make_handler(server.url, batch_size=10, buffer_size=50, flush_interval=0.05)
    log = _logger(handler, "rayml.contract.outage")

    for i in range(500):  # the "pipeline": it must neither block nor raise (no wall-clock assert: CI load varies)
        log.info("record %d", i)

    _wait_for(lambda: handler.stats()["failed_uploads"] >= 2)
    stats = handler.stats()
    assert stats["dropped"] == 500 - 50 == handler.dropped
    assert stats["buffered"] == 50 and stats["sent"] == 0
    assert stats["last_error"] == "HttpResponseError (HTTP 503)"

    server.status = 204  # back up: what was buffered is delivered, oldest first
    handler.close(timeout=10)
    assert handler.stats()["sent"] == 50
    assert [r["Message"] for r in server.records] == [f"record {i}" for i in range(50)]


def test_contract_unreachable_endpoint_never_blocks_the_caller(make_handler):
    handler = make_handler(f"https://127.0.0.1:{_closed_port()}", batch_size=5, buffer_size=20, flush_interval=0.05)
    log = _logger(handler, "rayml.contract.down")

    for i in range(200):
        log.warning("record %d", i)
    assert handler.dropped == 180

    _wait_for(lambda: handler.stats()["failed_uploads"] >= 1)
    assert handler.stats()["last_error"] == "ServiceRequestError"
    handler.close(timeout=2)  # bounded: returns even though nothing can be delivered


def test_contract_rejected_batches_are_counted_not_retried(server, make_handler):
    server.status = 400  # e.g. a record that does not match the stream declaration
    handler = make_handler(server.url, batch_size=4, flush_interval=30)
    log = _logger(handler, "rayml.contract.rejected")
    for i in range(4):
        log.info("record %d", i)
    _wait_for(lambda: handler.stats()["rejected"] == 4)
    assert server.attempts == 1
    assert handler.stats()["buffered"] == 0 and handler.dropped == 0


def test_the_shipper_ignores_its_own_and_the_azure_sdk_logs(server, make_handler):
    handler = make_handler(server.url, batch_size=1, flush_interval=0.05)
    for name in ("azure.core.pipeline.policies.http_logging_policy", azure_monitor.__name__, "rayml.contract.kept"):
        _logger(handler, name).warning("from %s", name)
    handler.close(timeout=10)
    assert [r["Message"] for r in server.records] == ["from rayml.contract.kept"]


@pytest.fixture
def monitored_profile(profile, server, certificate, monkeypatch):
    """The local profile plus an azure_monitor section aimed at the fake; Azure auth faked."""
    monkeypatch.setattr(azure_monitor, "DefaultAzureCredential", FakeCredential)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certificate[0])  # requests' CA bundle for the fake's certificate
    settings = AzureMonitorSettings(endpoint=server.url, rule_id=RULE_ID, stream_name=STREAM)
    return profile.model_copy(update={"name": "uat", "azure_monitor": settings})


def test_log_shipping_is_off_in_profiles_without_azure_monitor(profile):
    assert profile.azure_monitor is None
    assert handler_from_profile(profile) is None
    assert attach_to_root_logger(profile) is None
    assert dagster_loggers(profile) == {}
    assert dagster_logger_run_config(profile) == {}


def test_contract_workers_attach_once_to_the_root_logger(monitored_profile, server):
    root = logging.getLogger()
    level = root.level
    handler = attach_to_root_logger(monitored_profile, run_id="run-7")
    try:
        assert attach_to_root_logger(monitored_profile) is handler
        logging.getLogger("rayml.jobs.train").info("epoch 1 done")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close(timeout=10)
    [record] = server.records
    assert (record["Message"], record["RunId"], record["Environment"]) == ("epoch 1 done", "run-7", "uat")


def test_contract_dagster_run_logs_carry_run_and_step(monitored_profile, server):
    @op
    def greet(context):
        context.log.info("hello from the op")

    @job
    def shipped():
        greet()

    defs = Definitions(jobs=[shipped], loggers=dagster_loggers(monitored_profile))
    run_config = dagster_logger_run_config(monitored_profile)
    assert run_config == {"loggers": {"console": {}, "azure_monitor": {}}}
    result = defs.resolve_job_def("shipped").execute_in_process(run_config=run_config)
    assert result.success

    # The run's handler sends on its flush interval; its thread outlives the run.
    _wait_for(lambda: any(r["Message"] == "hello from the op" for r in server.records))
    [record] = [r for r in server.records if r["Message"] == "hello from the op"]
    assert record["RunId"] == result.run_id
    assert record["StepKey"] == "greet"
    assert record["Environment"] == "uat"
