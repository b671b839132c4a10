"""Signed owner links and per-link CSRF tokens: HMAC-SHA256 over the owner, an expiry and a link id. Pure.

A link is `<base_url>/o/<token>`; the token is `<payload>.<signature>` in URL-safe base64 without
padding. Nothing is stored on the server: the secret (a credential file) is the only state, so
changing the secret revokes every link. The expiry is checked only once the signature holds, so a
refused link tells nothing about the owners the server knows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

LINK_PURPOSE = b"acqd owner link v1\n"
CSRF_PURPOSE = b"acqd owner form v1\n"
MIN_SECRET_BYTES = 32


class LinkError(Exception):
    """A link that is not honoured; `status` is the HTTP status the page answers with."""

    def __init__(self, message: str, status: int, link: Link | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.link = link


@dataclass(frozen=True, slots=True)
class Link:
    owner: str
    expires: float  # seconds since the epoch
    link_id: str  # random, for the audit log (which e-mail the link came from)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_secret(secret: bytes, where: str) -> bytes:
    """The key from a credential file; refuse one too short to resist guessing."""
    key = secret.strip()
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(
            f"{where}: the secret has {len(key)} bytes, at least {MIN_SECRET_BYTES} are needed "
            "(e.g. `head -c 48 /dev/urandom | base64 > FILE`)"
        )
    return key


def _sign(secret: bytes, purpose: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, purpose + payload, hashlib.sha256).digest()


def make_token(secret: bytes, owner: str, expires: float, link_id: str | None = None) -> tuple[str, Link]:
    link = Link(owner, float(int(expires)), link_id or secrets.token_hex(8))
    payload = json.dumps([link.owner, int(link.expires), link.link_id], separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_sign(secret, LINK_PURPOSE, payload))}", link


def read_token(secret: bytes, token: str, now: float) -> Link:
    """The link a token stands for; LinkError 403 (tampered or malformed) or 410 (expired)."""
    try:
        head, _, sig = token.partition(".")
        payload, mac = _unb64(head), _unb64(sig)
    except (ValueError, UnicodeEncodeError):
        raise LinkError("this link is damaged or was not issued by this facility", 403) from None
    if not sig or not hmac.compare_digest(mac, _sign(secret, LINK_PURPOSE, payload)):
        raise LinkError("this link is damaged or was not issued by this facility", 403)
    try:
        owner, expires, link_id = json.loads(payload)
        link = Link(str(owner), float(expires), str(link_id))
    except (ValueError, TypeError):
        raise LinkError("this link is damaged or was not issued by this facility", 403) from None
    if now >= link.expires:
        raise LinkError("this link has expired", 410, link)
    return link


def csrf_token(secret: bytes, link: Link) -> str:
    """The token every form of one link carries (signed; bound to the link, so useless elsewhere)."""
    payload = f"{link.link_id}\n{link.owner}\n{int(link.expires)}".encode()
    return _b64(_sign(secret, CSRF_PURPOSE, payload))


def csrf_ok(secret: bytes, link: Link, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(str(token), csrf_token(secret, link))


def facility_ok(expected: bytes, given: str | None) -> bool:
    """The facility view's credential (a bearer token, or the password of HTTP Basic)."""
    return bool(given) and hmac.compare_digest((given or "").encode(), expected)
