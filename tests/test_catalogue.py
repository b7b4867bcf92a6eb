"""The bundled service catalogue (consentproxy/data/services.toml) and the Open Cookie Database's hosts."""

from __future__ import annotations

from pathlib import Path

import pytest

from consentproxy.config import ConfigError, load_config
from consentproxy.config.model import LANGUAGES

SITE = """
[sites.shop]
hosts = ["shop.example.nl"]
upstream = "http://127.0.0.1:9000"

[[sites.shop.services]]
name = "Shop chat"
category = "marketing"
hosts = ["chat.example.com"]
"""


def _load(tmp_path: Path, extra: str) -> list[str]:
    """The problems `load_config` reports for SITE with `extra` appended to its service table."""
    path = tmp_path / "consentproxy.toml"
    path.write_text(SITE + extra)
    try:
        load_config(path)
    except ConfigError as error:
        return [str(problem) for problem in error.problems]
    return []


def test_site_service_purpose_is_read(tmp_path: Path) -> None:
    path = tmp_path / "consentproxy.toml"
    path.write_text(SITE + 'purpose = { nl = "Chat met de winkel.", en = " Chat with the shop. " }\n')
    service = load_config(path).sites[0].consent.services[0]
    assert service.purpose == {"nl": "Chat met de winkel.", "en": "Chat with the shop."}
    path.write_text(SITE)
    assert load_config(path).sites[0].consent.services[0].purpose == {}
    path.write_text(SITE + 'purpose = "Chat."\n')
    assert load_config(path).sites[0].consent.services[0].purpose == {language: "Chat." for language in LANGUAGES}


@pytest.mark.parametrize(("extra", "key", "reason"), [
    ('purpose = { es = "Chat." }\n', "sites.shop.services[0].purpose.es", "unknown language"),
    ("purpose = { nl = 3 }\n", "sites.shop.services[0].purpose.nl", "expected a text"),
    ('purpose = { en = "" }\n', "sites.shop.services[0].purpose.en", "expected a text"),
    ("purpose = [\"Chat.\"]\n", "sites.shop.services[0].purpose", "expected a string or a table of languages"),
    ("purpose = 7\n", "sites.shop.services[0].purpose", "expected a string or a table of languages"),
])
def test_site_service_purpose_errors_name_file_key_and_reason(tmp_path: Path, extra: str, key: str,
                                                                reason: str) -> None:
    problems = _load(tmp_path, extra)
    assert len(problems) == 1, problems
    file, found_key, found_reason = problems[0].split(": ", 2)
    assert file == str(tmp_path / "consentproxy.toml")
    assert found_key == key and reason in found_reason
