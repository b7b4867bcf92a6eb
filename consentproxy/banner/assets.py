"""The banner's JavaScript and CSS, served from content-hashed URLs under the consent prefix.

The files live in `static/banner/` at the top of the project (a deployment
may point elsewhere with `CONSENTPROXY_STATIC_DIR`). They are read once at
start; their URLs carry a hash of their content, so browsers may cache them
for a year and a new version is fetched the moment it ships. Scripts are
served compacted (`compaction.py`); compressed variants are made once, at
start.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import brotli

from consentproxy.banner.compaction import compact_script
from consentproxy.html.codings import accepted

STATIC_ENV = "CONSENTPROXY_STATIC_DIR"
_FILES = ("banner.js", "banner.css")
_TYPES = {"js": b"text/javascript; charset=utf-8", "css": b"text/css; charset=utf-8"}
_IMMUTABLE = b"public, max-age=31536000, immutable"


class AssetsMissing(RuntimeError):
    """The banner files are not where they should be."""


def static_dir() -> Path:
    configured = os.environ.get(STATIC_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "static"


@dataclass(frozen=True, slots=True)
class Asset:
    path: str  # under the consent prefix, e.g. "banner.3f2a9c1d7b0e.js"
    content_type: bytes
    identity: bytes
    gzip: bytes
    br: bytes

    def body(self, accept_encoding: bytes | None) -> tuple[bytes, bytes | None]:
        codings = accepted(accept_encoding)
        if b"br" in codings:
            return self.br, b"br"
        if b"gzip" in codings:
            return self.gzip, b"gzip"
        return self.identity, None

    def headers(self, coding: bytes | None, length: int) -> list[tuple[bytes, bytes]]:
        out = [(b"content-type", self.content_type), (b"cache-control", _IMMUTABLE),
               (b"x-content-type-options", b"nosniff"), (b"vary", b"Accept-Encoding"),
               (b"content-length", str(length).encode("ascii"))]
        if coding is not None:
            out.append((b"content-encoding", coding))
        return out


class BannerAssets:
    """The banner files by URL path, with their hashed names (and the sites' guard files, see guard.py)."""

    def __init__(self, directory: Path | None = None) -> None:
        base = (directory or static_dir()) / "banner"
        self.by_path: dict[str, Asset] = {}
        self.url_of: dict[str, str] = {}
        for name in _FILES:
            data = _read(base, name)
            if name.endswith(".js"):  # served without our comments and indentation
                data = compact_script(data.decode("utf-8")).encode("utf-8")
            self.url_of[name] = self.add(name, data)
        #: guard.js without a table: each site serves it with its own (consentproxy/banner/guard.py)
        self.guard_source = _read(base, "guard.js").decode("utf-8")

    def add(self, name: str, data: bytes) -> str:
        """Serve `data` under `name` with its content's hash in it ("guard.js" → "guard.3f2a9c1d7b0e.js");
        returns that path. The same content twice is compressed once."""
        hashed = hashed_name(name, data)
        if hashed not in self.by_path:
            self.by_path[hashed] = make_asset(name, data)
        return hashed

    def put(self, asset: Asset) -> str:
        """Serve an asset made elsewhere (one compiled guard shared by many sites); returns its path."""
        self.by_path.setdefault(asset.path, asset)
        return asset.path

    def copy(self) -> BannerAssets:
        """Another registry with the same files (shared, not copied): each configuration registers its own
        sites' guards in its own, so a reload drops the guards no site uses any more."""
        other = object.__new__(BannerAssets)
        other.by_path = dict(self.by_path)
        other.url_of = dict(self.url_of)
        other.guard_source = self.guard_source
        return other


def hashed_name(name: str, data: bytes) -> str:
    stem, _, ext = name.rpartition(".")
    return f"{stem}.{hashlib.sha256(data).hexdigest()[:12]}.{ext}"


def make_asset(name: str, data: bytes) -> Asset:
    """`data` served under its hashed name, compressed once (brotli at 11 is slow: never per request)."""
    hashed = hashed_name(name, data)
    return Asset(hashed, _TYPES[hashed.rpartition(".")[2]], data, gzip.compress(data, 9, mtime=0),
                 brotli.compress(data, quality=11))


def fingerprint(directory: Path | None = None) -> tuple[object, ...]:
    """What the banner files are made from (their paths, sizes and times): a changed file is read again."""
    base = (directory or static_dir()) / "banner"
    found: list[object] = [str(base)]
    for name in (*_FILES, "guard.js"):
        try:
            stat = (base / name).stat()
        except OSError:
            found.append(None)
        else:
            found.append((stat.st_size, stat.st_mtime_ns))
    return tuple(found)


def _read(base: Path, name: str) -> bytes:
    file = base / name
    try:
        return file.read_bytes()
    except OSError as exc:
        raise AssetsMissing(
            f"banner asset {file} cannot be read ({exc.strerror}); set {STATIC_ENV} to the folder that "
            f"holds banner/{name}") from exc
