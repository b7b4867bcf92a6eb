"""Secrets: referenced from the configuration, never stored in it.

A reference is `file:/path/to/file` or `env:VARIABLE`. `generate_keys` writes
fresh material (mode 0600) for `consentproxy keys generate` and for the quick
start, which keeps its keys in its data directory.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

SECRET_REF_HELP = "use \"file:/path/to/file\" or \"env:VARIABLE_NAME\""  # noqa: S105 - help text

CONSENT_KEYS_FILE = "consent-keys"
ADMIN_TOKEN_FILE = "admin-token"  # noqa: S105 - a file name
EXPORT_KEY_FILE = "export-ed25519.key"


class SecretError(Exception):
    """A secret reference that cannot be resolved; the message says which and why."""


def is_secret_ref(value: str) -> bool:
    return (value.startswith("file:") and len(value) > 5) or (value.startswith("env:") and len(value) > 4)


def read_secret(ref: str) -> str:
    """Resolve a reference to its text, stripped of surrounding white space."""
    if ref.startswith("env:"):
        name = ref[4:]
        value = os.environ.get(name)
        if value is None or not value.strip():
            raise SecretError(f"environment variable {name} is not set or empty")
        return value.strip()
    if ref.startswith("file:"):
        path = Path(ref[5:]).expanduser()
        try:
            text = path.read_text("utf-8").strip()
        except OSError as exc:
            raise SecretError(f"cannot read secret file {path}: {exc.strerror or exc}") from None
        if not text:
            raise SecretError(f"secret file {path} is empty")
        return text
    raise SecretError(f"not a secret reference: {ref!r}; {SECRET_REF_HELP}")


@dataclass(frozen=True, slots=True)
class SigningKey:
    key_id: str
    key: bytes


def parse_consent_keys(text: str, origin: str) -> tuple[SigningKey, ...]:
    """Lines of `KEY_ID:BASE64KEY`; the first signs, all verify (so keys rotate)."""
    keys: list[SigningKey] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key_id, sep, encoded = line.partition(":")
        if not sep or not key_id.isalnum():
            raise SecretError(f"{origin} line {number}: expected KEY_ID:BASE64KEY")
        try:
            key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError:
            raise SecretError(f"{origin} line {number}: key is not base64") from None
        if len(key) < 32:
            raise SecretError(f"{origin} line {number}: key must be at least 32 bytes, got {len(key)}")
        keys.append(SigningKey(key_id, key))
    if not keys:
        raise SecretError(f"{origin}: no keys")
    return tuple(keys)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _write_private(path: Path, text: str, overwrite: bool) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: two processes starting at once never both write (and disagree on) a key.
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
    return True


def generate_keys(directory: Path, overwrite: bool = False) -> dict[str, Path]:
    """Write consent-cookie keys, an admin token and an export signing key.

    Existing files are kept unless `overwrite` (so restarting the quick start
    does not invalidate every visitor's consent cookie). Returns what exists.
    """
    key_id = secrets.token_hex(4)
    files = {
        "consent_keys": (CONSENT_KEYS_FILE, f"{key_id}:{_b64(secrets.token_bytes(32))}\n"),
        "admin_token": (ADMIN_TOKEN_FILE, secrets.token_urlsafe(32) + "\n"),
        # An Ed25519 private key is 32 random bytes (RFC 8032 §5.1.5).
        "export_key": (EXPORT_KEY_FILE, _b64(secrets.token_bytes(32)) + "\n"),
    }
    out: dict[str, Path] = {}
    for name, (filename, content) in files.items():
        path = directory / filename
        _write_private(path, content, overwrite)
        out[name] = path
    return out
