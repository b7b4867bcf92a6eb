"""The visitor's consent state, carried in a signed first-party cookie.

Format: `1.<key id>.<payload>.<signature>`, where payload is base64url of a
compact JSON object and signature is base64url(HMAC-SHA256(key, everything
before the last dot)). Several keys verify, the first one signs, so keys
rotate without asking everyone again. The proxy decides per request from
this cookie alone: an HMAC check, no database. Anything that does not verify,
has expired, or belongs to an older notice revision means "no decision yet".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson

from consentproxy.config.secrets import SigningKey

VERSION = "1"
_CACHE_LIMIT = 8192


@dataclass(frozen=True, slots=True)
class ConsentState:
    """One visitor's decision: what they granted, under which notice revision, until when."""

    principal: str  # random pseudonymous id, never an e-mail address or IP
    granted: frozenset[str]
    revision: int
    decided_at: int  # UNIX seconds
    expires_at: int
    method: str  # accept_all, reject_all, save_selection, withdraw, gpc_signal
    #: per granted category, the digests of the vendors the notice named then (`consent.notice`): a vendor
    #: the visitor was not told of means they are asked again for that category. Empty in older cookies.
    told: tuple[tuple[str, str], ...] = ()


def new_principal() -> str:
    """128 random bits, base64url: pseudonymous and unguessable."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode("ascii")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ConsentCodec:
    """Signs and verifies consent cookies with a site's keys."""

    def __init__(self, keys: tuple[SigningKey, ...]) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        self.keys = keys
        self._by_id = {key.key_id: key.key for key in keys}
        # A visitor sends the same cookie on every request: remember what verified.
        self._verified: dict[str, ConsentState] = {}

    def encode(self, state: ConsentState) -> str:
        key = self.keys[0]
        payload = orjson.dumps({
            "p": state.principal, "g": sorted(state.granted), "r": state.revision,
            "t": state.decided_at, "e": state.expires_at, "m": state.method,
            **({"v": dict(state.told)} if state.told else {}),
        })
        signed = f"{VERSION}.{key.key_id}.{_b64(payload)}"
        signature = hmac.new(key.key, signed.encode("ascii"), hashlib.sha256).digest()
        return f"{signed}.{_b64(signature)}"

    def decode(self, value: str, revision: int, now: float | None = None) -> ConsentState | None:
        """The state in a cookie value, or None if forged, malformed, expired or of an older revision."""
        state = self.verified(value)
        if state is None or state.revision != revision or state.expires_at <= (time.time() if now is None else now):
            return None
        return state

    def verified(self, value: str) -> ConsentState | None:
        """The state if the signature holds, even when expired or of an older revision.

        A new decision keeps the principal of an expired one, so a visitor's
        history stays one history.
        """
        state = self._verified.get(value)
        if state is None:
            state = self._verify(value)
            if state is None:
                return None
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified.clear()
            self._verified[value] = state
        return state

    def _verify(self, value: str) -> ConsentState | None:
        parts = value.split(".")
        if len(parts) != 4 or parts[0] != VERSION:
            return None
        key = self._by_id.get(parts[1])
        if key is None:
            return None
        try:
            expected = hmac.new(key, value[: value.rindex(".")].encode("ascii"), hashlib.sha256).digest()
            # Compare the text, not the decoded bytes: base64 has several spellings of the same
            # bytes (the unused low bits of the last character), and only ours is genuine.
            if not hmac.compare_digest(parts[3].encode("ascii"), _b64(expected).encode("ascii")):
                return None
            data = orjson.loads(_unb64(parts[2]))
            return ConsentState(
                principal=_text(data["p"]), granted=frozenset(_text(x) for x in data["g"]),
                revision=_int(data["r"]), decided_at=_int(data["t"]), expires_at=_int(data["e"]),
                method=_text(data["m"]),
                told=tuple(sorted((_text(c), _text(v)) for c, v in _mapping(data.get("v", {})).items())),
            )
        except (binascii.Error, ValueError, UnicodeError, KeyError, TypeError, orjson.JSONDecodeError):
            return None


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _mapping(value: object) -> dict[object, object]:
    if not isinstance(value, dict):
        raise TypeError("expected an object")
    return value


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("expected an integer")
    return value


def consent_set_cookie(codec: ConsentCodec, state: ConsentState, name: str, secure: bool,
                       now: float | None = None) -> bytes:
    """The Set-Cookie header value that stores `state` in the browser.

    HttpOnly (the banner learns the state from the consent API, never from the
    cookie), SameSite=Lax, Secure on HTTPS, first-party (no Domain), and it lives
    exactly as long as the decision is valid, refusals as long as consents.
    """
    max_age = max(0, state.expires_at - int(time.time() if now is None else now))
    value = f"{name}={codec.encode(state)}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax"
    return (value + "; Secure" if secure else value).encode("ascii")
