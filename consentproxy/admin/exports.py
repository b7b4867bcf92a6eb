"""The export files the admin API makes (`DATA_DIR/exports/`): their names, the listing, safe lookup.

Exports hold personal data, so the directory is the owner's only (0700) and
`export_site` writes every file 0600. A name taken from a URL is never joined
to a path as it stands: it must be exactly the name of a regular file listed
in the directory (not a symlink, not an unfinished `.partial`), so no `..`,
absolute path or link can reach anything else, and a name that merely looks
right but is not there is simply unknown.

An export is complete when its manifest exists: `export_site` renames the
data file into place, then writes the manifest. Only complete exports are
offered for download; a data file left without its manifest (a crash between
the two) is listed as incomplete so that it can be deleted.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from consentproxy.records.manifest import MANIFEST_SUFFIX
from consentproxy.records.model import iso_ms

EXPORTS_DIRNAME = "exports"
PARTIAL_SUFFIX = ".partial"
EXTENSIONS: dict[str, str] = {"ndjson": ".ndjson", "csv": ".csv", "receipts": ".receipts.ndjson"}
MEDIA_TYPES: tuple[tuple[str, str], ...] = (  # by how the name ends; the most specific first
    (MANIFEST_SUFFIX, "application/json"), (".ndjson", "application/x-ndjson"), (".csv", "text/csv; charset=utf-8"),
)
# What a listing tells of each manifest: enough to pick an export, not the notices it carries in full.
SUMMARY_FIELDS = ("site", "format", "count", "first_seq", "last_seq", "range", "exported_at", "sha256", "bytes",
                  "key_id")
# The characters of the names we make (site names are of these too); a file named otherwise, put there by
# hand, is left alone, so no name ever needs quoting in a Content-Disposition header.
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,255}")


def exports_dir(data_dir: Path, create: bool = False) -> Path:
    """`DATA_DIR/exports`; created (and kept) owner-only when `create`, as it will hold personal data."""
    directory = data_dir / EXPORTS_DIRNAME
    if create:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if stat.S_IMODE(directory.stat().st_mode) != 0o700:  # made by hand, or under a loose umask
            directory.chmod(0o700)
    return directory


def new_name(site: str, fmt: str, now: datetime | None = None) -> str:
    """`SITE-YYYYMMDDTHHMMSSZ-RANDOM.EXT`: sorts by time, and workers exporting at once never collide.

    A long site name is cut to 64 characters (the manifest names the site in
    full), so the manifest's name stays within a file system's 255 bytes.
    """
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{site[:64]}-{stamp}-{secrets.token_hex(4)}{EXTENSIONS[fmt]}"


def media_type(name: str) -> str:
    return next((media for suffix, media in MEDIA_TYPES if name.endswith(suffix)), "application/octet-stream")


def _files(directory: Path) -> dict[str, os.stat_result]:
    """The regular files in the directory (symlinks excluded), by name; none when it does not exist yet."""
    found: dict[str, os.stat_result] = {}
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):  # removed while listed
                    if entry.is_file(follow_symlinks=False):
                        found[entry.name] = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        pass
    return found


def _is_data(name: str) -> bool:
    return _NAME_RE.fullmatch(name) is not None and not name.endswith((PARTIAL_SUFFIX, MANIFEST_SUFFIX))


def data_names(directory: Path) -> set[str]:
    """The export data files present (complete or not), the only names DELETE accepts."""
    return {name for name in _files(directory) if _is_data(name)}


def _summary(path: Path) -> dict[str, Any] | None:
    try:
        manifest = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return {key: manifest.get(key) for key in SUMMARY_FIELDS} if isinstance(manifest, dict) else None


def listing(directory: Path) -> list[dict[str, Any]]:
    """Every export data file with its size and its manifest's summary (null: incomplete), oldest first."""
    files = _files(directory)
    listed = []
    for name, info in files.items():
        if not _is_data(name):
            continue
        manifest_name = name + MANIFEST_SUFFIX
        summary = _summary(directory / manifest_name) if manifest_name in files else None
        listed.append({
            "name": name, "bytes": info.st_size,
            "created": iso_ms(datetime.fromtimestamp(info.st_mtime, UTC)),
            "complete": summary is not None, "manifest": summary,
            "download": download_path(name) if summary is not None else None,
            "manifest_download": download_path(manifest_name) if summary is not None else None,
        })
    listed.sort(key=lambda entry: (entry["created"], entry["name"]))
    return listed


def download_path(name: str) -> str:
    return f"/api/exports/{name}"


@dataclass(frozen=True, slots=True)
class Opened:
    handle: BinaryIO
    filename: str
    size: int


def open_download(directory: Path, name: str, manifest: bool) -> Opened | None:
    """The complete export `name` (or its manifest) opened for reading; None for any other name.

    Opened before the answer starts, so a DELETE meanwhile cannot cut the
    download short (the open file stays readable until closed).
    """
    files = _files(directory)
    if not _is_data(name) or name not in files or name + MANIFEST_SUFFIX not in files:
        return None
    filename = name + MANIFEST_SUFFIX if manifest else name
    try:
        fd = os.open(directory / filename, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # removed meanwhile, or replaced by a link (ELOOP)
        return None
    handle = os.fdopen(fd, "rb")
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        handle.close()
        return None
    return Opened(handle, filename, info.st_size)


def remove(directory: Path, name: str) -> list[str]:
    """Delete the export `name` and its manifest; the names removed.

    The manifest goes first, so a half-done removal never leaves a pair that
    looks complete.
    """
    removed = []
    for filename in (name + MANIFEST_SUFFIX, name):
        try:
            (directory / filename).unlink()
        except FileNotFoundError:
            continue
        removed.append(filename)
    return removed
