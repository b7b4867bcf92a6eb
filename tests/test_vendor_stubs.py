"""The stand-ins for held vendors' APIs: defined only for vendors whose category is not granted."""

from __future__ import annotations

from consentproxy.banner.markup import consent_mode_code
from consentproxy.banner.stubs import vendor_stubs

ALL = frozenset({"necessary", "preferences", "statistics", "marketing"})


def test_nothing_decided_defines_every_stand_in() -> None:
    code = vendor_stubs(None)
    for name in ("w.gtag", "w.ga", "w._gaq", "w.googletag", "w._paq", "w.fbq", "w.apstag", "w._comscore",
                 "w._qevents", "w._sf_async_config"):
        assert name in code


def test_only_the_vendors_of_categories_not_granted() -> None:
    code = vendor_stubs(frozenset({"necessary", "statistics"}))
    assert "w.fbq" in code and "w.apstag" in code and "w.googletag" in code and "w._qevents" in code
    assert "w._paq" not in code and "w.ga=" not in code and "w._comscore" not in code
    assert vendor_stubs(ALL) == ""


def test_the_stand_ins_follow_the_consent_mode_default_in_one_script() -> None:
    code = consent_mode_code(None)
    assert code.index("'consent','default'") < code.index("w.fbq")
    assert "w.fbq" not in consent_mode_code(ALL)
    assert code.isascii() and "</" not in code


def test_queues_that_the_banner_reorders_are_marked_as_ours() -> None:
    """The banner replays only marked stand-ins (a page's own `_paq` is never replaced)."""
    code = vendor_stubs(None)
    for name in ("_paq", "_comscore", "_qevents", "_gaq"):
        assert f"if(!w.{name}){{w.{name}=[];w.{name}.cp=1}}" in code
    assert "f.cp=1" in code and "cp:1" in code and "g.cp=1" in code
