"""Append-only NDJSON files for what the stand-in third parties receive.

Every record is a single `os.write` on an `O_APPEND` descriptor: nothing is
buffered in the process and a reader (a test, `tail -f`) never sees half a
line, even while the server is writing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path


def utc_now() -> str:
    """ISO 8601 in UTC with milliseconds, e.g. `2024-05-01T12:00:00.123Z`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class NdjsonLog:
    """One JSON object per line, appended and on disk before `append` returns."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def append(self, record: Mapping[str, object]) -> None:
        data = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        while data:
            written = os.write(self._fd, data)
            data = data[written:]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
