"""A request's consent decision: from the signed cookie, else Global Privacy Control, else the regime's default.

Under opt-in (the EEA, and the default everywhere) nothing optional runs
before a choice; under opt-out and notice-only (only where a site configures
them) everything runs until the visitor objects — except when the browser
already objects with Global Privacy Control.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from consentproxy.config.model import CATEGORY_IDS
from consentproxy.consent.state import ConsentState

NECESSARY_ONLY = frozenset({"necessary"})
ALL = frozenset(CATEGORY_IDS)

Kind = Literal["none", "explicit", "gpc"]


@dataclass(frozen=True, slots=True)
class Decision:
    kind: Kind
    allowed: frozenset[str]
    state: ConsentState | None = None
    regime: str = "opt-in"  # opt-in, opt-out or notice-only, by the visitor's place
    country: str | None = None  # ISO 3166-1, only when a GeoIP database is configured
    #: categories the visitor granted under a notice that did not name a vendor now seen: asked again, and
    #: held meanwhile (not in `allowed`); their other choices stand
    reask: frozenset[str] = frozenset()

    def allows(self, category: str) -> bool:
        return category in self.allowed

    @property
    def label(self) -> str:
        """For metrics: none, gpc, all, or partial (anything in between, refusals included)."""
        if self.kind != "explicit":
            return self.kind
        return "all" if self.allowed >= ALL else "partial"


NO_DECISION = Decision("none", NECESSARY_ONLY)
GPC_REFUSAL = Decision("gpc", NECESSARY_ONLY)


def decide(state: ConsentState | None, gpc: bool, regime: str = "opt-in", country: str | None = None,
           reask: frozenset[str] = frozenset(), everything: frozenset[str] = ALL) -> Decision:
    """An explicit, valid decision wins; `Sec-GPC: 1` without one is a refusal of everything optional.

    `reask`: granted categories whose vendors the visitor was not all told of (see `SiteNotices.stale`).
    `everything`: the site's categories, its own included (what an opt-out regime allows until an objection).
    """
    if state is not None:
        return Decision("explicit", (NECESSARY_ONLY | state.granted) - reask, state, regime, country, reask)
    if regime == "opt-in" and country is None:
        return GPC_REFUSAL if gpc else NO_DECISION
    if gpc:
        return Decision("gpc", NECESSARY_ONLY, None, regime, country)
    return Decision("none", NECESSARY_ONLY if regime == "opt-in" else everything, None, regime, country)
