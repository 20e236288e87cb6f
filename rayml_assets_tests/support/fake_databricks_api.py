"""CONTRACT-TEST request checking for ``fake_databricks`` -- test code only, never shipped.

The fake does not describe the Databricks REST API itself: each endpoint it serves is
read from the databricks-sdk method that calls it (``JobsAPI.submit``, ``DbfsAPI.read``,
``FilesAPI.upload`` ...). From the method's source come the HTTP verb, the path and which
arguments travel in the JSON body and which in the query; from its type hints, the type of
each argument. databricks-sdk 0.60 has no request dataclasses (``SubmitRun`` is gone), so
the method's signature stands for the request and its typed arguments are parsed with the
SDK's dataclasses, enums and primitives:

- a field the SDK does not know (at any depth) is a :class:`ContractViolation`;
- a value that does not survive ``X.from_dict(value).as_dict()`` unchanged is one too,
  named by the first path that differs, so nothing the caller meant is dropped;
- a response the fake sends is checked the same way against the SDK's response class,
  so the fake cannot invent fields either.

A violation is answered like the service answers a bad request (HTTP 400) and recorded on
the fake, whose test fixture fails the test even when the client swallows the error.
"""

from __future__ import annotations

import dataclasses
import email.parser
import email.policy
import inspect
import json
import re
import typing
from dataclasses import dataclass
from enum import Enum
from typing import Any, Union, get_args, get_origin

from databricks.sdk.service import files, jobs, workspace

MB = 1024 * 1024


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ContractViolation(ApiError):
    """A request the real API refuses, or one the SDK could not have meant: the test fails."""

    def __init__(self, message: str, code: str = "INVALID_PARAMETER_VALUE"):
        super().__init__(400, code, message)


def not_found(what: str) -> ApiError:
    return ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"{what} does not exist")


# -- endpoints, as the SDK calls them ------------------------------------------------------

_DO = re.compile(r'self\._api\.do\(\s*"(?P<verb>[A-Z]+)",\s*f?"(?P<path>[^"]+)"')
_PATH_PARAM = re.compile(r"\{(?:_escape_multi_segment_path_parameter\()?(\w+)\)?\}$")
_ARG = re.compile(r'\b(body|query)\["(\w+)"\]\s*=')


@dataclass(frozen=True)
class Endpoint:
    name: str  # the SDK method, e.g. "JobsAPI.submit"
    verb: str
    path: str  # the whole path, or the prefix before the path parameter
    path_param: str | None
    body: dict[str, Any]  # argument -> type hint
    query: dict[str, Any]
    response: type | None

    def matches(self, verb: str, path: str) -> bool:
        if verb != self.verb:
            return False
        return path.startswith(self.path + "/") if self.path_param else path == self.path


def endpoint(method, response: type | None = None) -> Endpoint:
    source = inspect.getsource(method)
    (verb, template), *_ = _DO.findall(source)
    param = _PATH_PARAM.search(template)
    hints = typing.get_type_hints(method)
    where: dict[str, dict[str, Any]] = {"body": {}, "query": {}}
    for kind, name in _ARG.findall(source):
        where[kind][name] = hints[name]
    return Endpoint(
        name=method.__qualname__,
        verb=verb,
        path=template[: param.start()] if param else template,
        path_param=param.group(1) if param else None,
        body=where["body"],
        query=where["query"],
        response=response,
    )


ENDPOINTS = {
    e.name: e
    for e in (
        endpoint(jobs.JobsAPI.submit, jobs.SubmitRunResponse),
        endpoint(jobs.JobsAPI.get_run, jobs.Run),
        endpoint(jobs.JobsAPI.cancel_run),
        endpoint(jobs.JobsAPI.get_run_output, jobs.RunOutput),
        endpoint(files.DbfsAPI.mkdirs),
        endpoint(files.DbfsAPI.put),
        endpoint(files.DbfsAPI.read, files.ReadResponse),
        endpoint(files.DbfsAPI.get_status, files.FileInfo),
        endpoint(files.DbfsAPI.list, files.ListStatusResponse),
        endpoint(files.DbfsAPI.delete),
        endpoint(files.DbfsAPI.create, files.CreateResponse),
        endpoint(files.DbfsAPI.add_block),
        endpoint(files.DbfsAPI.close),
        endpoint(workspace.WorkspaceAPI.mkdirs),
        endpoint(workspace.WorkspaceAPI.import_),
        endpoint(files.FilesAPI.upload),
        endpoint(files.FilesAPI.download),
        endpoint(files.FilesAPI.get_metadata),
        endpoint(files.FilesAPI.delete),
        endpoint(files.FilesAPI.create_directory),
        endpoint(files.FilesAPI.list_directory_contents, files.ListDirectoryResponse),
        endpoint(files.FilesAPI.get_directory_metadata),
        endpoint(files.FilesAPI.delete_directory),
        endpoint(workspace.SecretsAPI.get_secret, workspace.GetSecretResponse),
    )
}


def find_endpoint(verb: str, path: str) -> Endpoint:
    for e in ENDPOINTS.values():
        if e.matches(verb, path):
            return e
    raise ContractViolation(f"no databricks-sdk method calls {verb} {path}", "ENDPOINT_NOT_FOUND")


# -- values, as the SDK's types parse them -------------------------------------------------


def _unoptional(hint):
    if get_origin(hint) is Union:
        (hint,) = [a for a in get_args(hint) if a is not type(None)]
    return hint


def _first_difference(sent: Any, kept: Any, path: str) -> str:
    if isinstance(sent, dict) and isinstance(kept, dict):
        for key in sent.keys() | kept.keys():
            if sent.get(key, ...) != kept.get(key, ...):
                return _first_difference(sent.get(key), kept.get(key), f"{path}.{key}")
    if isinstance(sent, list) and isinstance(kept, list) and len(sent) == len(kept):
        for i, (a, b) in enumerate(zip(sent, kept)):
            if a != b:
                return _first_difference(a, b, f"{path}[{i}]")
    return f"{path} (sent {json.dumps(sent)[:80]}, kept {json.dumps(kept)[:80]})"


def check_value(value: Any, hint: Any, where: str) -> None:
    """Refuse ``value`` unless the SDK type ``hint`` parses it whole."""
    hint = _unoptional(hint)
    origin, args = get_origin(hint), get_args(hint)
    if origin is list:
        _expect(isinstance(value, list), value, "a list", where)
        for i, item in enumerate(value):
            check_value(item, args[0], f"{where}[{i}]")
    elif origin is dict:
        _expect(isinstance(value, dict), value, "an object", where)
        for key, item in value.items():
            check_value(item, args[1], f"{where}.{key}")
    elif dataclasses.is_dataclass(hint):
        _expect(isinstance(value, dict), value, f"a {hint.__name__}", where)
        fields = typing.get_type_hints(hint)
        for key, item in value.items():
            if key not in fields:
                raise ContractViolation(f"{where}: unknown field {key!r} for {hint.__name__}")
            check_value(item, fields[key], f"{where}.{key}")
        kept = hint.from_dict(value).as_dict()
        if kept != value:
            lost = _first_difference(value, kept, where)
            raise ContractViolation(f"{hint.__name__}.from_dict/as_dict does not keep {lost}")
    elif isinstance(hint, type) and issubclass(hint, Enum):
        _expect(value in {m.value for m in hint}, value, f"one of {hint.__name__}", where)
    elif hint is bool:
        _expect(isinstance(value, bool), value, "a boolean", where)
    elif hint is int:
        _expect(isinstance(value, int) and not isinstance(value, bool), value, "an integer", where)
    elif hint is float:
        _expect(isinstance(value, int | float) and not isinstance(value, bool), value, "a number", where)
    elif hint is str:
        _expect(isinstance(value, str), value, "a string", where)


def _expect(ok: bool, value: Any, what: str, where: str) -> None:
    if not ok:
        raise ContractViolation(f"{where}: expected {what}, got {json.dumps(value, default=str)[:80]}")


def _from_query(raw: str, hint: Any, where: str) -> Any:
    hint = _unoptional(hint)
    if hint is bool:
        _expect(raw in ("true", "false"), raw, "true or false", where)
        return raw == "true"
    if hint is int:
        _expect(raw.lstrip("-").isdigit(), raw, "an integer", where)
        return int(raw)
    return raw


# -- a whole request ------------------------------------------------------------------------


def parse_request(e: Endpoint, path: str, query: dict[str, str], headers, raw: bytes) -> dict[str, Any]:
    """The typed arguments of one request to ``e``; a :class:`ContractViolation` otherwise."""
    args: dict[str, Any] = {}
    if e.path_param:
        args[e.path_param] = path[len(e.path) :]
    for key, value in query.items():
        if key not in e.query:
            raise ContractViolation(f"{e.name}: unknown query parameter {key!r}")
        args[key] = _from_query(value, e.query[key], key)
    content_type = headers.get("Content-Type") or ""
    if content_type.startswith("multipart/form-data"):
        for key, value in _multipart(content_type, raw).items():
            if key not in e.body:
                raise ContractViolation(f"{e.name}: unknown form field {key!r}")
            args[key] = value
    elif e.body:
        body = json.loads(raw or b"{}")
        for key, value in body.items():
            if key not in e.body:
                raise ContractViolation(f"{e.name}: unknown field {key!r}")
            check_value(value, e.body[key], key)
        args.update(body)
    elif e.name == "FilesAPI.upload":  # the one raw body: the file's bytes
        args["contents"] = raw
    elif raw:
        raise ContractViolation(f"{e.name} takes no request body")
    return args


def _multipart(content_type: str, raw: bytes) -> dict[str, Any]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True)
        fields[name] = data if part.get_filename() else data.decode().strip()
    return fields


def check_response(e: Endpoint, payload: Any) -> None:
    """The fake's own answer must be what the SDK's response class reads back whole."""
    if e.response is not None:
        check_value(payload, e.response, f"{e.name} response")
    elif payload not in (None, {}) and not isinstance(payload, bytes):
        raise ContractViolation(f"{e.name} answers with an empty body, the fake sent {payload!r}")
