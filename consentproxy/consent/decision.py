"""A request's consent decision: from the signed cookie, else from Global Privacy Control, else none."""

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


def decide(state: ConsentState | None, gpc: bool) -> Decision:
    """An explicit, valid decision wins; `Sec-GPC: 1` without one is a refusal of everything optional."""
    if state is not None:
        return Decision("explicit", NECESSARY_ONLY | state.granted, state)
    return GPC_REFUSAL if gpc else NO_DECISION
