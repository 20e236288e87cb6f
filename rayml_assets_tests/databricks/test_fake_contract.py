"""The fake workspace holds its clients to the real API: the SDK's request types and the DBFS limits.

Each test calls the fake through a real ``WorkspaceClient``, as the code under test does,
and checks that what the real service refuses is refused and recorded as a violation
(which fails any other test at teardown).
"""

import base64
import io

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError

from rayml_assets_tests.support.fake_databricks_storage import DEFAULT_READ_LENGTH

pytestmark = pytest.mark.contract
MB = 1024 * 1024
SUBMIT = "/api/2.2/jobs/runs/submit"


@pytest.fixture
def client(fake, pat) -> WorkspaceClient:
    return WorkspaceClient(host=fake.url, token=fake.token)


def _refused(fake, call, code: str, fragment: str) -> None:
    """``call`` fails with the real API's error ``code``; the fake records why, then forgets it."""
    with pytest.raises(DatabricksError) as caught:
        call()
    assert caught.value.error_code == code
    (violation,) = fake.violations
    assert fragment in violation, violation
    fake.violations.clear()


def _task(**extra) -> dict:
    return {"task_key": "t", "spark_python_task": {"python_file": "/Workspace/t.py"}, "new_cluster": {}, **extra}


def test_a_field_the_sdk_does_not_know_is_refused_at_any_depth(fake, client):
    do = client.api_client.do
    _refused(fake, lambda: do("POST", SUBMIT, body={"tasks": [_task()], "run_nam": "x"}),
             "INVALID_PARAMETER_VALUE", "JobsAPI.submit: unknown field 'run_nam'")
    body = {"tasks": [_task(new_cluster={"spark_version": "18.0.x", "num_gpu": 1})]}
    _refused(fake, lambda: do("POST", SUBMIT, body=body), "INVALID_PARAMETER_VALUE",
             "tasks[0].new_cluster: unknown field 'num_gpu' for ClusterSpec")
    _refused(fake, lambda: do("GET", "/api/2.2/jobs/runs/get", query={"run_id": 1, "verbose": "true"}),
             "INVALID_PARAMETER_VALUE", "unknown query parameter 'verbose'")
    assert fake.runs == {}


def test_a_value_the_sdk_dataclasses_would_not_keep_is_refused(fake, client):
    do = client.api_client.do
    # SubmitTask.as_dict drops an empty list: a caller meaning "no libraries" is not what arrives
    _refused(fake, lambda: do("POST", SUBMIT, body={"tasks": [_task(libraries=[])]}),
             "INVALID_PARAMETER_VALUE", "SubmitTask.from_dict/as_dict does not keep tasks[0].libraries")
    _refused(fake, lambda: do("POST", SUBMIT, body={"tasks": [_task(timeout_seconds="2")]}),
             "INVALID_PARAMETER_VALUE", "tasks[0].timeout_seconds: expected an integer")
    _refused(fake, lambda: do("POST", SUBMIT, body={"tasks": [_task(run_if="SOMETIMES")]}),
             "INVALID_PARAMETER_VALUE", "tasks[0].run_if: expected one of RunIf")


def test_an_endpoint_no_sdk_method_calls_is_refused(fake, client):
    _refused(fake, lambda: client.api_client.do("POST", "/api/2.1/jobs/runs/submit", body={}),
             "ENDPOINT_NOT_FOUND", "no databricks-sdk method calls POST /api/2.1/jobs/runs/submit")


def test_the_fakes_own_answers_must_parse_as_the_sdk_reads_them(fake, client, monkeypatch):
    client.dbfs.mkdirs("/tmp/answers")
    real_info = type(fake)._dbfs_info
    monkeypatch.setattr(type(fake), "_dbfs_info", staticmethod(lambda p, t: {**real_info(p, t), "owner": "x"}))
    _refused(fake, lambda: client.dbfs.get_status("/tmp/answers"), "INVALID_PARAMETER_VALUE",
             "unknown field 'owner' for FileInfo")


def test_dbfs_read_has_the_apis_default_and_its_1_mb_limit(fake, client):
    data = bytes(range(256)) * (3 * MB // 256)  # 3 MB
    with client.dbfs.open("/tmp/big.bin", write=True, overwrite=True) as f:  # the SDK writes 1 MB blocks
        f.write(data)
    assert client.dbfs.read("/tmp/big.bin").bytes_read == DEFAULT_READ_LENGTH  # 0.5 MB, as documented
    tail = client.dbfs.read("/tmp/big.bin", offset=len(data) - 10, length=MB)
    assert base64.b64decode(tail.data) == data[-10:]  # past the end: what is there
    assert client.dbfs.read("/tmp/big.bin", offset=len(data), length=MB).bytes_read == 0
    assert client.dbfs.download("/tmp/big.bin").read() == data  # DbfsExt: 1 MB reads to the size
    _refused(fake, lambda: client.dbfs.read("/tmp/big.bin", length=MB + 1),
             "MAX_READ_SIZE_EXCEEDED", "over the 1 MB limit")
    _refused(fake, lambda: client.dbfs.read("/tmp/big.bin", offset=-1),
             "INVALID_PARAMETER_VALUE", "negative offset or length")
    _refused(fake, lambda: client.dbfs.read("/tmp"), "INVALID_PARAMETER_VALUE", "it is a directory")
    with pytest.raises(DatabricksError) as missing:
        client.dbfs.read("/tmp/none.bin")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST" and fake.violations == []


def test_dbfs_writes_take_at_most_1_mb_a_call(fake, client):
    over = base64.b64encode(b"x" * (MB + 1)).decode()
    _refused(fake, lambda: client.dbfs.put("/tmp/put.bin", contents=over), "MAX_BLOCK_SIZE_EXCEEDED",
             "dbfs/put contents holds 1048577 bytes")
    handle = client.dbfs.create("/tmp/blocks.bin").handle
    client.dbfs.add_block(handle, base64.b64encode(b"y" * MB).decode())  # exactly 1 MB is allowed
    _refused(fake, lambda: client.dbfs.add_block(handle, over), "MAX_BLOCK_SIZE_EXCEEDED",
             "dbfs/add-block data holds 1048577 bytes")
    client.dbfs.close(handle)
    assert fake.dbfs("/tmp/blocks.bin").stat().st_size == MB


def test_files_api_serves_unity_catalog_volume_paths(fake, client):
    path = "/Volumes/main/rayml/pipes/dir/a.json"
    client.files.create_directory("/Volumes/main/rayml/pipes/dir")
    client.files.upload(path, io.BytesIO(b'{"a": 1}'), overwrite=True)
    assert client.files.download(path).contents.read() == b'{"a": 1}'
    assert client.files.get_metadata(path).content_length == 8
    (entry,) = client.files.list_directory_contents("/Volumes/main/rayml/pipes/dir")
    assert (entry.path, entry.is_directory, entry.file_size) == (path, False, 8)
    client.files.delete(path)
    client.files.delete_directory("/Volumes/main/rayml/pipes/dir")
    _refused(fake, lambda: client.files.upload("/tmp/a.json", io.BytesIO(b"{}")),
             "INVALID_PARAMETER_VALUE", "/tmp/a.json is not a /Volumes/<catalog>/<schema>/<volume> path")
    _refused(fake, lambda: client.files.create_directory("/Volumes/main"),
             "INVALID_PARAMETER_VALUE", "is not a /Volumes/<catalog>/<schema>/<volume> path")
