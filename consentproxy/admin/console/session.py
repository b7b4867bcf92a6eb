"""The console's sign-in session: a signed, expiring cookie that names a token without holding it.

The cookie carries a reference to the token (an HMAC of its SHA-256 under
the session secret: useless to anyone who reads it), an expiry and a random
nonce, signed with HMAC-SHA-256. Every request looks the reference up among
the tokens configured now, so removing a token from the configuration and
reloading ends its sessions too. The secret lives in the data directory
(0600), so every worker and a restarted process accept the same sessions;
deleting the file (and restarting) signs everyone out.

Forms carry a synchronizer token derived from the session's nonce, and every
POST must also come from the console's own origin (Origin, or
Sec-Fetch-Site when a browser sends no Origin): a cross-site form cannot act.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request

from consentproxy.admin.auth import AdminContext, AdminToken

COOKIE = "cp_console"
LIFETIME = 8 * 3600  # seconds: a working day, then sign in again
SECRET_FILE = "console-session.key"  # noqa: S105 (a file name)
_secrets: dict[Path, bytes] = {}
_lock = threading.Lock()


def session_secret(data_dir: Path) -> bytes:
    """The data directory's session secret, made (0600, atomically) on first use."""
    path = data_dir / SECRET_FILE
    with _lock:
        known = _secrets.get(path)
        if known is not None:
            return known
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            secret = path.read_bytes()
        else:
            secret = secrets.token_bytes(32)
            with os.fdopen(fd, "wb") as out:
                out.write(secret)
        if len(secret) < 32:  # another worker is writing it right now; its 32 bytes follow in a moment
            time.sleep(0.05)
            secret = path.read_bytes()
        _secrets[path] = secret
        return secret


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _mac(secret: bytes, purpose: bytes, *parts: str) -> bytes:
    return hmac.new(secret, purpose + b"\x00" + "\x00".join(parts).encode("utf-8"), hashlib.sha256).digest()


def _token_ref(secret: bytes, token: AdminToken) -> str:
    return _b64(_mac(secret, b"token", token.digest.hex())[:18])


@dataclass(frozen=True, slots=True)
class Session:
    token: AdminToken
    nonce: str
    expires: int
    csrf: str  # the synchronizer token every form of this session carries


def issue(context: AdminContext, token: AdminToken, now: float | None = None) -> str:
    """A cookie value for a fresh session of `token`."""
    secret = session_secret(context.data_dir)
    expires = int(now if now is not None else time.time()) + LIFETIME
    body = f"{_token_ref(secret, token)}.{expires}.{_b64(secrets.token_bytes(16))}"
    return f"{body}.{_b64(_mac(secret, b'session', body))}"


def read(context: AdminContext, value: str | None, now: float | None = None) -> Session | None:
    """The session a cookie value holds: None when unsigned, tampered with, expired, or its token is gone."""
    if not value or value.count(".") != 3 or len(value) > 200:
        return None
    secret = session_secret(context.data_dir)
    body, _, mac = value.rpartition(".")
    if not hmac.compare_digest(mac, _b64(_mac(secret, b"session", body))):
        return None
    ref, expires_text, nonce = body.split(".")
    if not expires_text.isdigit() or int(expires_text) <= (now if now is not None else time.time()):
        return None
    token = next((t for t in context.tokens if hmac.compare_digest(_token_ref(secret, t), ref)), None)
    if token is None:
        return None
    return Session(token, nonce, int(expires_text), _b64(_mac(secret, b"csrf", nonce)[:18]))


def secure(request: Request) -> bool:
    """Served over https, directly or behind a proxy that says so: the cookie is then sent over https only."""
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


def cookie_header(value: str, request: Request, max_age: int = LIFETIME) -> str:
    """Set-Cookie for the session: HttpOnly, SameSite=Strict, Path=/, Secure over https; Max-Age 0 ends it."""
    flags = f"{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict"
    return flags + ("; Secure" if secure(request) else "")


def same_origin(request: Request) -> bool:
    """A POST the console's own pages sent: Origin is this listener's, or (no Origin) Sec-Fetch-Site says so."""
    origin = request.headers.get("origin")
    if origin is not None:
        host = request.headers.get("host", "")
        return origin in (f"http://{host}", f"https://{host}") and bool(host)
    return request.headers.get("sec-fetch-site") == "same-origin"


def constant_equal(presented: str, expected: str) -> bool:
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))
