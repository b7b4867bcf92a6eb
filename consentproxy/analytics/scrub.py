"""Removing the visitor's address and e-mail addresses from any text, and proving none is left.

Trackers put both in odd places: an IP in a custom event parameter, an
e-mail in a page URL after a newsletter click, percent-encoded once or twice
inside another URL. Values are cleaned where they are parsed; `leaks` then
searches the finished request, all encoding layers included, as a last check.
"""

from __future__ import annotations

import functools
import ipaddress
import re

from consentproxy.analytics.model import percent_decode

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

REDACTED = "redacted"
_LAYERS = 3  # percent-encoding inside a URL inside a query parameter: two layers are common, three occur

# Deliberately loose: a false positive costs one parameter, a miss costs an e-mail address.
# "/", "=", "&", "?" and ":" are left out of the local part so a path or query around the address survives.
EMAIL = re.compile(r"[\w.!#$%'*+^`{|}~-]+@(?:[\w-]+\.)+[^\W\d_]{2,}")


@functools.lru_cache(maxsize=4096)  # a visitor sends several hits; parsing costs more than the lookup
def parse_address(ip: str) -> Address | None:
    """The client address as the server saw it; an IPv4-mapped IPv6 address is the IPv4 address."""
    text = ip.strip().strip("[]").split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=4096)
def address_forms(address: Address | None) -> tuple[str, ...]:
    """The spellings of one address to look for, lowercase: dotted, mapped, compressed, exploded."""
    if address is None:
        return ()
    if isinstance(address, ipaddress.IPv4Address):
        mapped = ipaddress.IPv6Address(b"\x00" * 10 + b"\xff\xff" + address.packed)
        hextets = mapped.exploded.split(":")[-2:]
        short = [h.lstrip("0") or "0" for h in hextets]
        forms = [str(address), "ffff:" + ":".join(short), "ffff:" + ":".join(hextets)]
    else:
        exploded = address.exploded
        unpadded = ":".join(h.lstrip("0") or "0" for h in exploded.split(":"))
        forms = [address.compressed, exploded, unpadded]
    # Percent-encoded colons are searched literally too: decoding "%2a02%3A…" would read "%2a" as "*".
    forms += [form.replace(":", colon) for colon in ("%3a", "%253a") for form in forms if ":" in form]
    return tuple(dict.fromkeys(forms))


@functools.lru_cache(maxsize=1024)
def _forms_pattern(forms: tuple[str, ...]) -> re.Pattern[str]:
    """Compiled only when something must be replaced: compiling costs more than a whole hit."""
    return re.compile("|".join(re.escape(f) for f in forms), re.IGNORECASE)


class Scrubber:
    """Cleans text of one visitor's address and of any e-mail address."""

    def __init__(self, address: Address | None) -> None:
        self.forms = address_forms(address)
        # Every form but the dotted IPv4 one holds ":" or "%" (encoded colon): most values need no lowercasing.
        self._dotted = self.forms[0] if isinstance(address, ipaddress.IPv4Address) else None  # str(address)

    def has_address(self, text: str) -> bool:
        if not self.forms:
            return False
        if self._dotted is not None and self._dotted in text:
            return True
        if ":" not in text and "%" not in text:
            return False
        lowered = text.lower()
        return any(form in lowered for form in self.forms)

    def _dirty(self, text: str) -> bool:
        return ("@" in text and EMAIL.search(text) is not None) or self.has_address(text)

    def _clean(self, text: str) -> str:
        # The address first: "jane@89.160.20.115.example" must not become the e-mail "jane@redacted.example".
        if self.has_address(text):
            text = _forms_pattern(self.forms).sub(REDACTED, text)
        if "@" in text:
            text = EMAIL.sub(REDACTED, text)
        return text

    def text(self, value: str) -> str:
        """The value with every address replaced; an encoded one costs the value its encoding layer."""
        value = self._clean(value)
        layer = value
        for _ in range(_LAYERS):
            if "%" not in layer:
                break
            decoded = percent_decode(layer)
            if decoded == layer:
                break
            if self._dirty(decoded):
                value = layer = self._clean(decoded)
            else:
                layer = decoded
        return value

    def is_dirty(self, value: str) -> bool:
        """Whether the value holds an address at any encoding layer."""
        layer = value
        for _ in range(_LAYERS + 1):
            if self._dirty(layer):
                return True
            if "%" not in layer:
                return False
            decoded = percent_decode(layer)
            if decoded == layer:
                return False
            layer = decoded
        return False

    def leaks(self, text: str) -> bool:
        """Whether the visitor's address survives anywhere in a finished request (e-mails are not checked here:
        the backend's own values, such as a Matomo token, may legitimately contain an "@")."""
        if not self.forms:
            return False
        layer = text
        for _ in range(_LAYERS + 1):
            if self.has_address(layer):
                return True
            decoded = percent_decode(layer.replace("+", " "))
            if decoded == layer:
                return False
            layer = decoded
        return False
