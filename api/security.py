"""API keys: who may read, who may change things, and which addresses need keys at all.

With no keys configured every route is open; ``insiders api`` allows that only on a loopback
address (protected mode, as Redis has it) or with ``--insecure``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)
from pydantic import SecretStr

Role = Literal["read", "admin"]
BEARER = {"WWW-Authenticate": "Bearer"}


def _digest(key: str) -> bytes:
    # Equal-length digests: the comparison time depends on neither the key nor its length.
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True, slots=True)
class ApiKeys:
    """The keys the API accepts, kept as digests. No key at all means every route is open.

    >>> keys = ApiKeys.of(read=[SecretStr("r-key")], admin=[SecretStr("a-key")])
    >>> keys.role_of("r-key"), keys.role_of("a-key"), keys.role_of("r-key "), keys.role_of(None)
    ('read', 'admin', None, None)
    >>> keys.enabled, ApiKeys().enabled
    (True, False)
    """

    read: tuple[bytes, ...] = field(default=(), repr=False)
    admin: tuple[bytes, ...] = field(default=(), repr=False)

    @classmethod
    def of(cls, read: Iterable[SecretStr] = (), admin: Iterable[SecretStr] = ()) -> ApiKeys:
        return cls(
            tuple(_digest(k.get_secret_value()) for k in read),
            tuple(_digest(k.get_secret_value()) for k in admin),
        )

    @property
    def enabled(self) -> bool:
        return bool(self.read or self.admin)

    def role_of(self, presented: str | None) -> Role | None:
        """What ``presented`` may do; every stored key is compared, in constant time."""
        if presented is None:
            return None
        digest = _digest(presented)
        admin = [hmac.compare_digest(digest, key) for key in self.admin]
        read = [hmac.compare_digest(digest, key) for key in self.read]
        return "admin" if any(admin) else "read" if any(read) else None


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only.

    >>> [is_loopback(h) for h in ("127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost")]
    [True, True, True, True, True]
    >>> [is_loopback(h) for h in ("0.0.0.0", "::", "", "10.0.0.5", "api.internal")]
    [False, False, False, False, False]
    """
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False  # a name other than localhost may resolve to anything
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def keys_of(request: Request) -> ApiKeys:
    keys: ApiKeys = request.app.state.api_keys
    return keys


bearer = HTTPBearer(
    auto_error=False,
    description="An API key: one of INSIDERS_API_KEYS, or of INSIDERS_ADMIN_KEYS.",
)


class _PageBasic(HTTPBasic):
    """HTTP Basic for the dashboard, so a browser asks for the key; malformed is absent."""

    async def __call__(self, request: Request) -> HTTPBasicCredentials | None:  # type: ignore[override]
        try:
            return await super().__call__(request)
        except HTTPException:
            return None


basic = _PageBasic(
    auto_error=False,
    realm="Insiders dashboard",
    description="The dashboard only, for browsers: any user name, an API key as the password.",
)

BearerKey = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
BasicKey = Annotated[HTTPBasicCredentials | None, Depends(basic)]


def require_key(request: Request, credentials: BearerKey) -> Role | None:
    """Any valid key, read or admin; ``None`` when the API runs without keys."""
    keys = keys_of(request)
    if not keys.enabled:
        return None
    if credentials is None:
        raise HTTPException(401, "an API key is needed: send Authorization: Bearer <key>", BEARER)
    role = keys.role_of(credentials.credentials)
    if role is None:
        raise HTTPException(401, "unknown API key", BEARER)
    return role


def require_admin(role: Annotated[Role | None, Depends(require_key)]) -> Role | None:
    """An admin key, for routes that change anything; a read key gets a 403.

    Add ``Depends(require_admin)`` (or the ``Admin`` alias) to such a route.
    """
    if role == "read":
        raise HTTPException(403, "this route needs an admin key (INSIDERS_ADMIN_KEYS)")
    return role


def require_page_key(request: Request, token: BearerKey, login: BasicKey) -> Role | None:
    """For the dashboard: a valid key as a Bearer token or as the Basic password.

    Its 401 asks for Basic, so a browser shows its sign-in box.
    """
    keys = keys_of(request)
    if not keys.enabled:
        return None
    presented = token.credentials if token else login.password if login else None
    role = keys.role_of(presented)
    if role is None:
        raise HTTPException(401, PAGE_HINT, {"WWW-Authenticate": PAGE_CHALLENGE})
    return role


PAGE_HINT = (
    "an API key is needed: sign in with any user name and the key as the password, "
    "or send Authorization: Bearer <key>"
)
PAGE_CHALLENGE = 'Basic realm="Insiders dashboard", charset="UTF-8"'

Reader = Annotated[Role | None, Depends(require_key)]
Admin = Annotated[Role | None, Depends(require_admin)]
