"""The console's session cookie as data: signed, expiring, bound to a token that is still configured."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

from consentproxy.admin.auth import AdminContext, AdminToken
from consentproxy.admin.console import session as sessions

OPS = AdminToken("ops", "full", hashlib.sha256(b"ops-token").digest())
DPO = AdminToken("dpo", "read", hashlib.sha256(b"dpo-token").digest())


def test_a_session_names_its_token_until_it_expires_or_the_token_goes(tmp_path: Path) -> None:
    context = AdminContext(tmp_path, (OPS, DPO))
    value = sessions.issue(context, DPO, now=1_000_000)
    found = sessions.read(context, value, now=1_000_001)
    assert found is not None and found.token == DPO and found.csrf
    assert b"dpo-token" not in value.encode() and DPO.digest.hex() not in value
    assert sessions.read(context, value, now=1_000_000 + sessions.LIFETIME) is None  # expired
    assert sessions.read(AdminContext(tmp_path, (OPS,)), value, now=1_000_001) is None  # token removed
    assert sessions.read(context, value[:-1] + ("A" if value[-1] != "A" else "B"), now=1_000_001) is None
    other = sessions.issue(context, DPO, now=1_000_000)
    assert sessions.read(context, other, now=1_000_001).csrf != found.csrf  # type: ignore[union-attr]
    assert stat.S_IMODE((tmp_path / sessions.SECRET_FILE).stat().st_mode) == 0o600


def test_a_new_secret_signs_everyone_out(tmp_path: Path) -> None:
    context = AdminContext(tmp_path, (OPS,))
    value = sessions.issue(context, OPS, now=1_000_000)
    sessions._secrets.clear()
    (tmp_path / sessions.SECRET_FILE).unlink()
    assert sessions.read(context, value, now=1_000_001) is None
