"""What counts as a secret, by its name or by its shape, and how an error is cleaned of secret values.

Secrets reach the project only through the environment (``dagster.EnvVar``) or a secret scope.
These rules keep them out of everything the project writes: Pipes extras and env
(``resources.compute.check_no_secrets``), profiles and their errors (``settings.load_profile``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

# Whole words of a variable or key name, so that ``max_tokens``, ``tokenizer`` or ``PATH`` stay allowed.
_SECRET_WORDS = re.compile(
    r"(?:^|[^A-Z0-9])(?:TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|PRIVATE_KEY|API_KEY|ACCESS_KEY|ACCOUNT_KEY"
    r"|STORAGE_KEY|MASTER_KEY|SAS|PAT|CONNECTION_STRING|CONN_STR|CONNSTR)(?:$|[^A-Z0-9])"
)
# Values that are secrets whatever they are called: Azure connection strings and SAS
# signatures, Databricks and GitHub personal access tokens, PEM private keys.
_SECRET_SHAPES = re.compile(
    r"AccountKey=|SharedAccessSignature=|(?:^|[?&])sig=|\bdapi[0-9a-f]{32}\b|\bghp_[A-Za-z0-9]{36}\b"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
)
MASK = "***"
# Shorter values are not masked: "1" or "true" in a secret-named variable would blank every digit.
_MIN_MASKED = 6


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_WORDS.search(name.upper()))


def looks_like_secret(value: str) -> bool:
    return bool(_SECRET_SHAPES.search(value))


def secret_values(environ: Mapping[str, str] | None = None) -> set[str]:
    """The values in the environment that are secrets, by their variable's name or by their shape."""
    environ = os.environ if environ is None else environ
    return {v for k, v in environ.items() if v and (is_secret_name(k) or looks_like_secret(v))}


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with every secret value of the environment replaced by ``***``, longest first."""
    for value in sorted(secret_values(environ), key=len, reverse=True):
        if len(value) >= _MIN_MASKED:
            text = text.replace(value, MASK)
    return _SECRET_SHAPES.sub(MASK, text) if looks_like_secret(text) else text
