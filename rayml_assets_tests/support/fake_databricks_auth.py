"""CONTRACT-TEST fake of Databricks authentication -- test code only, never shipped.

Two ways in, the two ``databricks.auth`` modes of the profiles:

- ``pat``: ``Authorization: Bearer <the fake's token>``;
- ``azure_client_secret``: the SDK's ``azure-client-secret`` strategy (OAuth 2.0 client
  credentials against Microsoft Entra ID). The fake serves the Entra ID v1 token endpoint
  ``POST <aad>/<tenant>/oauth2/token`` (form: ``grant_type=client_credentials``,
  ``client_id``, ``client_secret``, ``resource``) and accepts on the workspace API only a
  token it issued for the Azure Databricks resource id, plus, where sent, the
  ``X-Databricks-Azure-SP-Management-Token`` issued for the management endpoint.

The SDK finds the Entra ID endpoint from the host's DNS zone, which 127.0.0.1 has none
of; :meth:`Auth.azure_environment` is the Azure environment pointing at the fake, for a
test to set as ``databricks.sdk.config.Config.databricks_environment``. Logins are
recorded by client id and resource, never with the secret.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs

from databricks.sdk.environments import (
    ARM_DATABRICKS_RESOURCE_ID,
    AzureEnvironment,
    Cloud,
    DatabricksEnvironment,
)

from rayml_assets_tests.support.fake_databricks_api import ApiError

_TOKEN_PATH = re.compile(r"^/aad/(?P<tenant>[^/]+)/oauth2/token$")
MANAGEMENT_HEADER = "X-Databricks-Azure-SP-Management-Token"


@dataclass(frozen=True)
class ServicePrincipal:
    """The Entra ID app the fake knows: values for AZURE_CLIENT_ID/SECRET/TENANT_ID."""

    client_id: str = "6f1d2c3b-0000-4000-8000-00000000c11e"
    client_secret: str = "contract-test-sp-secret-0003"
    tenant_id: str = "6f1d2c3b-0000-4000-8000-0000000074e2"


class TokenError(Exception):
    """An Entra ID error answer: ``{"error": ..., "error_description": ...}``."""

    def __init__(self, error: str, description: str):
        super().__init__(description)
        self.body = {"error": error, "error_description": description}


class Auth:
    def __init__(self, url: str, pat: str, principal: ServicePrincipal):
        self.url, self.pat, self.principal = url, pat, principal
        self.management_resource = f"{url}/azure-management/"
        self._issued: dict[str, str] = {}  # access token -> resource
        self.logins: list[tuple[str, str]] = []  # (client_id, resource)
        self.bad_auth: list[str] = []  # paths called without a valid token

    def azure_environment(self) -> DatabricksEnvironment:
        return DatabricksEnvironment(
            Cloud.AZURE,
            ".azuredatabricks.net",
            azure_application_id=ARM_DATABRICKS_RESOURCE_ID,
            azure_environment=AzureEnvironment(
                name="PUBLIC",
                service_management_endpoint=self.management_resource,
                resource_manager_endpoint=f"{self.url}/azure-resource-manager/",
                active_directory_endpoint=f"{self.url}/aad/",
            ),
        )

    @staticmethod
    def is_token_request(path: str) -> bool:
        return _TOKEN_PATH.match(path) is not None

    def token(self, path: str, raw: bytes) -> dict:
        """Answer one client-credentials grant, as Entra ID v1 does."""
        tenant = _TOKEN_PATH.match(path)["tenant"]
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        p = self.principal
        if tenant != p.tenant_id:
            raise TokenError("invalid_request", f"AADSTS90002: Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            raise TokenError("unsupported_grant_type", "AADSTS70003: grant_type must be client_credentials.")
        if (form.get("client_id"), form.get("client_secret")) != (p.client_id, p.client_secret):
            raise TokenError("invalid_client", "AADSTS7000215: Invalid client secret provided.")
        resource = form.get("resource")
        if resource not in (ARM_DATABRICKS_RESOURCE_ID, self.management_resource):
            raise TokenError("invalid_resource", f"AADSTS500011: resource {resource!r} not found.")
        token = f"aad-{secrets.token_hex(16)}"
        self._issued[token] = resource
        self.logins.append((p.client_id, resource))
        return {"token_type": "Bearer", "expires_in": "3599", "resource": resource, "access_token": token}

    def check(self, headers, path: str) -> None:
        bearer = (headers.get("Authorization") or "").removeprefix("Bearer ")
        management = headers.get(MANAGEMENT_HEADER)
        ok = bearer == self.pat or self._issued.get(bearer) == ARM_DATABRICKS_RESOURCE_ID
        if management is not None and self._issued.get(management) != self.management_resource:
            ok = False
        if not ok:
            self.bad_auth.append(path)
            raise ApiError(401, "UNAUTHENTICATED", "invalid access token")
