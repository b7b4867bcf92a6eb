"""Content-Security-Policy: which nonce our injected scripts and styles carry.

Rules (issue 4, GUIDE §4): a page whose policy already has a nonce for
scripts (or styles) gets that nonce reused; a policy that relies on hashes
or 'strict-dynamic' gets a fresh nonce of ours added; any other policy is
left untouched, and our inline script is avoided where it would be refused.
'unsafe-inline' is never added. A `trusted-types` allow-list gets our
policy's name, which the banner needs to re-activate scripts. Header policies (enforced and Report-Only)
and `<meta http-equiv>` policies are treated alike.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

TRUSTED_TYPES_POLICY = "consentproxy"
_NONCE_RE = re.compile(r"'nonce-([A-Za-z0-9+/_=-]+)'")
_SCRIPT_ORDER = ("script-src-elem", "script-src", "default-src")
_STYLE_ORDER = ("style-src-elem", "style-src", "default-src")
_STYLE_ATTR_ORDER = ("style-src-attr", "style-src", "default-src")


def _directives(policy: str) -> list[tuple[str, str]]:
    out = []
    for part in policy.split(";"):
        words = part.strip().split(None, 1)
        if words:
            out.append((words[0].lower(), words[1] if len(words) > 1 else ""))
    return out


def _effective(directives: list[tuple[str, str]], order: tuple[str, ...]) -> str | None:
    by_name = dict(reversed(directives))  # the first occurrence of a directive wins
    for name in order:
        if name in by_name:
            return by_name[name]
    return None


@dataclass(slots=True)
class NoncePlan:
    """The nonces to put on injected elements, and whether inline script is allowed."""

    script_nonce: str | None = None
    style_nonce: str | None = None
    #: False when a policy restricts scripts with neither nonce nor 'unsafe-inline'
    inline_script_ok: bool = True
    #: False when a policy refuses style attributes (an embed's placeholder then carries its size in data-cp-box)
    inline_style_ok: bool = True
    _fresh: str | None = field(default=None, repr=False)

    def fresh(self) -> str:
        if self._fresh is None:
            self._fresh = secrets.token_urlsafe(18)
        return self._fresh

    def apply(self, policy: str) -> str:
        """Fold one policy into the plan; returns the policy, patched when a nonce of ours is needed."""
        directives = _directives(policy)
        patched = False
        script = _effective(directives, _SCRIPT_ORDER)
        if script is not None:
            nonce = _NONCE_RE.search(script)
            lowered = script.lower()
            if nonce is not None:
                self.script_nonce = self.script_nonce or nonce.group(1)
            elif "'strict-dynamic'" in lowered or "'sha" in lowered:
                self.script_nonce = self.script_nonce or self.fresh()
                directives = _add_source(directives, _SCRIPT_ORDER, f"'nonce-{self.script_nonce}'")
                patched = True
            elif "'unsafe-inline'" not in lowered:
                self.inline_script_ok = False
        attr = (_effective(directives, _STYLE_ATTR_ORDER) or "'unsafe-inline'").lower()
        if "'unsafe-inline'" not in attr or "'nonce-" in attr or "'sha" in attr:
            self.inline_style_ok = False  # (with a nonce or hash in it, browsers ignore 'unsafe-inline')
        style = _effective(directives, _STYLE_ORDER)
        if style is not None:
            nonce = _NONCE_RE.search(style)
            if nonce is not None:
                self.style_nonce = self.style_nonce or nonce.group(1)
            elif "'sha" in style.lower():
                self.style_nonce = self.style_nonce or self.fresh()
                directives = _add_source(directives, _STYLE_ORDER, f"'nonce-{self.style_nonce}'")
                patched = True
        trusted_types = next((value for name, value in directives if name == "trusted-types"), None)
        if trusted_types is not None:
            names = trusted_types.split()
            if TRUSTED_TYPES_POLICY not in names and "*" not in names and "'none'" not in names:
                # the banner re-activates scripts through a Trusted Types policy of this name
                directives = [(n, f"{v} {TRUSTED_TYPES_POLICY}".strip() if n == "trusted-types" else v)
                              for n, v in directives]
                patched = True
        if not patched:
            return policy
        return "; ".join(f"{name} {value}".strip() for name, value in directives)


def _add_source(directives: list[tuple[str, str]], order: tuple[str, ...], source: str) -> list[tuple[str, str]]:
    """Add `source` to every directive of `order` the policy has (each may govern some of our elements)."""
    present = {name for name, _ in directives}
    targets = {name for name in order if name in present} - ({"default-src"} if present & set(order[:2]) else set())
    seen: set[str] = set()
    out = []
    for name, value in directives:
        if name in targets and name not in seen and source not in value.split():
            value = f"{value} {source}".strip()
        seen.add(name)
        out.append((name, value))
    return out


CSP_HEADERS = frozenset({b"content-security-policy", b"content-security-policy-report-only"})


def plan_for_headers(headers: list[tuple[bytes, bytes]]) -> tuple[NoncePlan, list[tuple[bytes, bytes]]] | None:
    """The plan for a response's CSP headers and the headers patched; None when it has no policy."""
    if not any(name in CSP_HEADERS for name, _ in headers):
        return None
    plan = NoncePlan()
    out = []
    for name, value in headers:
        if name in CSP_HEADERS:
            # One header line may carry several policies, separated by commas.
            policies = value.decode("latin-1").split(",")
            value = ",".join(plan.apply(policy) for policy in policies).encode("latin-1")
        out.append((name, value))
    return plan, out
