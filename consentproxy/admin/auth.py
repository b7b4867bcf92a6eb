"""Who may use the admin API: bearer tokens known only by their SHA-256, each with a name and a scope.

The configuration holds digests, never tokens, so a leaked configuration file
(or backup, or process listing) grants nothing. The name is what the audit
log records; the token itself is never stored or logged. Scopes:

- `read`: everything that only reads (sites, a person's events for an access
  request, event exports, verification, the audit log, the cookie inventory);
- `full`: also what changes the log (erasure, signing a checkpoint).

`[secrets] admin_token` remains the operator's token: named "admin", full scope.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from consentproxy.config.model import SECRETS_TOKEN_NAME, AdminScope, Config

SCOPE_RANK: dict[str, int] = {"read": 1, "full": 2}


@dataclass(frozen=True, slots=True)
class AdminToken:
    name: str
    scope: AdminScope
    digest: bytes  # SHA-256 of the token

    def allows(self, needed: AdminScope) -> bool:
        return SCOPE_RANK[self.scope] >= SCOPE_RANK[needed]


def bearer(header: str) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header, or None."""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


@dataclass(frozen=True, slots=True)
class AdminContext:
    """What the admin API needs from the running configuration (rebuilt on every reload)."""

    data_dir: Path
    tokens: tuple[AdminToken, ...] = ()
    sites: tuple[str, ...] = ()  # the configured sites; the log may hold more (sites since removed)
    export_key_ref: str | None = None  # `file:`/`env:` reference, read when a signature is needed
    config_source: Path | None = None  # the configuration file, re-read by the console's banner preview

    @classmethod
    def build(cls, config: Config, secrets_token_digest: bytes | None) -> AdminContext:
        tokens = [AdminToken(t.name, t.scope, bytes.fromhex(t.sha256)) for t in config.server.admin_tokens]
        if secrets_token_digest is not None:
            tokens.insert(0, AdminToken(SECRETS_TOKEN_NAME, "full", secrets_token_digest))
        return cls(config.server.data_dir, tuple(tokens), tuple(site.name for site in config.sites),
                   config.secrets.export_key, config.source)

    def identify(self, header: str) -> AdminToken | None:
        """The token an Authorization header presents, or None.

        Compared digest to digest in constant time, and against every
        configured token without stopping early, so timing tells neither how
        much of a token was right nor which one matched.
        """
        token = bearer(header)
        if token is None:
            return None
        presented = hashlib.sha256(token.encode("utf-8")).digest()
        found: AdminToken | None = None
        for candidate in self.tokens:
            if hmac.compare_digest(presented, candidate.digest) and found is None:
                found = candidate
        return found

    def authorized(self, header: str, scope: AdminScope = "read") -> bool:
        token = self.identify(header)
        return token is not None and token.allows(scope)
