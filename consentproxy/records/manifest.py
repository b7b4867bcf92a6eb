"""The signed manifest that travels with every export (`OUT.manifest.json`).

It says what the export claims to be — site, range, count, first and last seq,
the hash the first record continues from and the last hash, the SHA-256 of
the file, the notice versions the records point at (in full, so the export is
self-contained), the signed checkpoint at the last seq (and the purge's cut
checkpoint the first record continues from, if any) — and signs all of it
with the export key, so none of it can be changed without the key.

Signed bytes: `consentproxy-export-manifest-v1\\n` followed by the canonical
JSON (`model.canonical`) of the manifest without its `signature` field. The
public key is inside the signed part; a verifier that must know *who* signed
compares its `key_id` with the operator's key (or pins it: `verify --public-key`).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consentproxy.records.checkpoint import key_id, load_public_key, public_key_text
from consentproxy.records.model import canonical

MANIFEST_TYPE = "consentproxy-export-manifest"
MANIFEST_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"
_DOMAIN = b"consentproxy-export-manifest-v1\n"

#: field → the JSON types it may have; checked after the signature, so a failure here is our bug, not tampering
_FIELDS: dict[str, tuple[type, ...]] = {
    "type": (str,), "version": (int,), "format": (str,), "file": (str,), "bytes": (int,), "sha256": (str,),
    "site": (str,), "range": (dict,), "count": (int,), "first_seq": (int, type(None)),
    "last_seq": (int, type(None)), "first_prev_hash": (str, type(None)), "last_hash": (str, type(None)),
    "checkpoint": (dict, type(None)), "cut": (dict, type(None)), "notices": (dict,),
    "public_key": (str,), "key_id": (str,), "signature": (str,),
}


class ManifestUnreadable(Exception):
    """The manifest is missing or not a manifest at all (as opposed to one whose signature fails)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def manifest_path(out: Path) -> Path:
    return out.with_name(out.name + MANIFEST_SUFFIX)


def _signed_bytes(manifest: Mapping[str, Any]) -> bytes:
    return _DOMAIN + canonical({k: v for k, v in manifest.items() if k != "signature"})


def sign_manifest(body: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """The manifest with the public key, its id and the signature over everything else."""
    public = key.public_key()
    signed = {**body, "public_key": public_key_text(public), "key_id": key_id(public)}
    signed["signature"] = _b64(key.sign(_signed_bytes(signed)))
    return signed


def signature_problem(manifest: Mapping[str, Any], pinned: Ed25519PublicKey | None = None) -> str | None:
    """Why the manifest cannot be trusted, or None when its signature verifies (with the pinned key, if given)."""
    try:
        public = load_public_key(str(manifest["public_key"]))
        signature = _unb64(str(manifest["signature"]))
    except (ValueError, binascii.Error):
        return "the manifest's public key or signature is not valid base64url Ed25519 material"
    if manifest.get("key_id") != key_id(public):
        return "the manifest's key_id does not belong to its public key (manifest edited)"
    try:
        public.verify(signature, _signed_bytes(manifest))
    except InvalidSignature:
        return "the manifest's signature does not verify: the manifest was edited after signing"
    if pinned is not None and key_id(pinned) != key_id(public):
        return f"the manifest is signed by key {key_id(public)}, not by the expected key {key_id(pinned)}"
    return None


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest as JSON, with the two fields needed to check its signature; raises ManifestUnreadable."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ManifestUnreadable(f"{path}: no such file (every export is written with its manifest)") from None
    except OSError as exc:
        raise ManifestUnreadable(f"{path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise ManifestUnreadable(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("type") != MANIFEST_TYPE:
        raise ManifestUnreadable(f"{path}: not a consentproxy export manifest")
    if not isinstance(data.get("public_key"), str) or not isinstance(data.get("signature"), str):
        raise ManifestUnreadable(f"{path}: the manifest has no public key or no signature")
    return data


def structure_problem(manifest: Mapping[str, Any]) -> str | None:
    """A field missing or of the wrong type (checked once the signature holds)."""
    if manifest.get("version") != MANIFEST_VERSION:
        return f"manifest version {manifest.get('version')!r} is not one this consentproxy reads ({MANIFEST_VERSION})"
    for name, types in _FIELDS.items():
        value = manifest.get(name)
        if name not in manifest or not isinstance(value, types) or (isinstance(value, bool) and int in types):
            return f"manifest field {name!r} is missing or of the wrong type"
    return None


def write_atomically(path: Path, data: bytes) -> None:
    """Write via PATH.partial, fsync, rename: the file is whole or absent, never half."""
    partial = path.with_name(path.name + ".partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """Indented for people; the signature does not depend on the layout."""
    return orjson.dumps(dict(manifest), option=orjson.OPT_INDENT_2) + b"\n"
