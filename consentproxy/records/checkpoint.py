"""Signed checkpoints: a site's chain head at some seq, signed with the export key (Ed25519).

A hash chain alone proves order and integrity only against someone who cannot
rewrite the whole chain; a checkpoint signed with a key the database never
holds pins the head, so a rewritten, truncated or reordered log no longer
matches. Two kinds:

- `head`: taken periodically; the log must still contain that head;
- `cut`: left by a purge at the last deleted seq; verification of what remains
  starts from its head. Only the key holder can make one, so deleting a prefix
  of the log without a purge is detected.

Signed bytes: `consentproxy-checkpoint-v1\\n` followed by the canonical JSON of
{site, seq, kind, head, time, key_id}.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from consentproxy.records.model import canonical, iso_ms, parse_iso_ms, utc_ms

CheckpointKind = Literal["head", "cut"]
CHECKPOINT_KINDS: frozenset[str] = frozenset({"head", "cut"})
_DOMAIN = b"consentproxy-checkpoint-v1\n"


def _unb64(text: str) -> bytes:
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_private_key(text: str) -> Ed25519PrivateKey:
    """The export key from its file content: 32 random bytes, base64 (see config.secrets.generate_keys)."""
    try:
        raw = _unb64(text)
    except (ValueError, binascii.Error):
        raise ValueError("export key is not base64") from None
    if len(raw) != 32:
        raise ValueError(f"export key must be 32 bytes, got {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def load_private_key_file(path: Path) -> Ed25519PrivateKey:
    return load_private_key(path.read_text("ascii"))


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key_text(key: Ed25519PublicKey) -> str:
    """The public key as base64url, as manifests and the verify command print it."""
    return _b64(public_bytes(key))


def load_public_key(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_unb64(text))


def key_id(key: Ed25519PublicKey) -> str:
    """A short fingerprint naming the signing key, so a verifier notices a checkpoint from another key."""
    return hashlib.sha256(public_bytes(key)).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    site: str
    seq: int
    kind: str
    head: str
    time: datetime
    key_id: str
    signature: str  # base64url of the Ed25519 signature

    def signed_bytes(self) -> bytes:
        return _DOMAIN + canonical({"site": self.site, "seq": self.seq, "kind": self.kind, "head": self.head,
                                    "time": iso_ms(self.time), "key_id": self.key_id})

    def to_dict(self) -> dict[str, Any]:
        return {"site": self.site, "seq": self.seq, "kind": self.kind, "head": self.head,
                "time": iso_ms(self.time), "key_id": self.key_id, "signature": self.signature}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Checkpoint:
        return cls(data["site"], int(data["seq"]), data["kind"], data["head"], parse_iso_ms(data["time"]),
                   data["key_id"], data["signature"])


def sign_checkpoint(key: Ed25519PrivateKey, site: str, seq: int, head: str,
                    kind: CheckpointKind = "head", time: datetime | None = None) -> Checkpoint:
    unsigned = Checkpoint(site, seq, kind, head, utc_ms(time), key_id(key.public_key()), "")
    return Checkpoint(site, seq, kind, head, unsigned.time, unsigned.key_id,
                      _b64(key.sign(unsigned.signed_bytes())))


def checkpoint_problem(checkpoint: Checkpoint, key: Ed25519PublicKey) -> str | None:
    """Why this checkpoint cannot be trusted, or None if it is signed by `key`."""
    if checkpoint.kind not in CHECKPOINT_KINDS:
        return f"checkpoint of unknown kind {checkpoint.kind!r}"
    if checkpoint.key_id != key_id(key):
        return f"checkpoint signed by another key ({checkpoint.key_id})"
    try:
        key.verify(_unb64(checkpoint.signature), checkpoint.signed_bytes())
    except (InvalidSignature, ValueError, binascii.Error):
        return "checkpoint signature does not verify"
    return None
