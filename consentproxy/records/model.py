"""What a consent record is: notice versions (stored once) and consent events (appended).

Shaped after ISO/IEC TS 27560 and the Kantara Consent Receipt, which both let
the parts common to many receipts be stored once and linked: a `NoticeVersion`
holds what the visitor was shown (no personal data) and is addressed by the
SHA-256 of its content, a `ConsentEvent` holds one decision and points at it.

Personal fields of an event (principal, ip, ua, country) are kept raw beside a
salted commitment to each; the hash chain covers only the commitments, so an
erasure can delete the raw values and the salt while the log still verifies
(see `chain.py`).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson

SCHEMA_VERSION = 1

EventType = Literal["given", "refused", "withdrawn", "renewed", "expired"]
Method = Literal["accept_all", "reject_all", "save_selection", "withdraw", "gpc_signal", "expiry"]

EVENT_TYPES: frozenset[str] = frozenset({"given", "refused", "withdrawn", "renewed", "expired"})
# "expiry" is not a visitor's action: it marks the events the system writes when a consent lapses.
METHODS: frozenset[str] = frozenset({"accept_all", "reject_all", "save_selection", "withdraw", "gpc_signal", "expiry"})

# The fields an erasure removes; the chain holds only their commitments.
PERSONAL_FIELDS: tuple[str, ...] = ("principal", "ip", "ua", "country")

# Top-level keys every notice version must say something about (GUIDE §4).
NOTICE_KEYS: tuple[str, ...] = (
    "texts", "purposes", "data_categories", "recipients", "storage_location",
    "retention", "controller", "jurisdiction", "cookies",
)

NECESSARY = "necessary"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
SALT_BYTES = 16


def canonical(value: Any) -> bytes:
    """The one byte form that is hashed and signed: orjson with sorted keys, no white space."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def utc_ms(moment: datetime | None = None) -> datetime:
    """A UTC time truncated to milliseconds, the precision the stores keep (so round trips are exact)."""
    moment = datetime.now(UTC) if moment is None else moment
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def to_ms(moment: datetime) -> int:
    """Milliseconds since the UNIX epoch: how stores keep and index times (integer, exact)."""
    return (moment - EPOCH) // _MILLISECOND


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def iso_ms(moment: datetime) -> str:
    """`2025-01-31T12:00:00.123Z`: fixed width, so the hashed form of a time has one spelling."""
    if moment.tzinfo is not UTC or moment.microsecond % 1000:
        moment = utc_ms(moment)
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"  # drop "+00:00"


def parse_iso_ms(text: str) -> datetime:
    return utc_ms(datetime.fromisoformat(text.replace("Z", "+00:00")))


def commitment(salt: str, name: str, value: str) -> str:
    """SHA-256(salt ‖ field name ‖ 0x00 ‖ value), hex.

    The random salt makes a short value (a country, an IPv4 address) impossible
    to guess from its commitment; the field name keeps two fields with the same
    value from having the same commitment.
    """
    return hashlib.sha256(bytes.fromhex(salt) + name.encode("ascii") + b"\x00" + value.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class NoticeVersion:
    """What a site showed under one revision; no personal data, so kept longer than events."""

    id: str
    site: str
    revision: int
    created: datetime
    content: Mapping[str, Any]

    @classmethod
    def create(cls, site: str, revision: int, content: Mapping[str, Any],
               created: datetime | None = None) -> NoticeVersion:
        """A notice whose id is the SHA-256 of its canonical content: the same notice is stored once."""
        missing = [key for key in NOTICE_KEYS if key not in content]
        if missing:
            raise ValueError(f"notice content lacks {', '.join(missing)}")
        texts = content["texts"]
        if not isinstance(texts, Mapping) or not texts or not all(
                isinstance(lang, str) and isinstance(text, str) for lang, text in texts.items()):
            raise ValueError("notice texts must map each language to the text shown")
        purposes = content["purposes"]
        if not isinstance(purposes, list) or not all(
                isinstance(p, Mapping) and "id" in p and "legal_basis" in p for p in purposes):
            raise ValueError("notice purposes must be a list of objects with an id and a legal_basis")
        body = canonical(dict(content))
        return cls(hashlib.sha256(body).hexdigest(), site, revision, utc_ms(created), orjson.loads(body))

    @property
    def text_digests(self) -> dict[str, str]:
        """SHA-256 of each language's text, for receipts that name the exact wording shown."""
        texts: Mapping[str, str] = self.content["texts"]
        return {lang: hashlib.sha256(text.encode("utf-8")).hexdigest() for lang, text in texts.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "site": self.site, "revision": self.revision,
                "created": iso_ms(self.created), "content": dict(self.content)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NoticeVersion:
        return cls(data["id"], data["site"], int(data["revision"]), parse_iso_ms(data["created"]),
                   dict(data["content"]))


@dataclass(frozen=True, slots=True)
class ConsentEvent:
    """One decision, append-only. `seq`, `prev_hash` and `hash` are set by the store.

    No validation here on purpose: a row read back from a tampered database must
    still load, so that verification can name it. `new()` validates what callers build.
    """

    record_id: str
    site: str
    time: datetime
    principal: str | None
    notice_id: str
    event_type: str
    method: str
    choices: Mapping[str, bool]
    expires_at: datetime
    ip: str | None = None
    ua: str | None = None
    country: str | None = None
    regime: str | None = None
    idempotency_key: str | None = None
    salt: str | None = None  # hex; deleted on erasure together with the raw personal fields
    commitments: Mapping[str, str | None] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    seq: int = 0
    prev_hash: str = ""
    hash: str = ""

    @classmethod
    def new(cls, *, site: str, principal: str, notice_id: str, event_type: EventType, method: Method,
            choices: Mapping[str, bool], expires_at: datetime, ip: str | None = None, ua: str | None = None,
            country: str | None = None, regime: str | None = None, idempotency_key: str | None = None,
            time: datetime | None = None) -> ConsentEvent:
        """A fresh event with its own record id, salt and commitments; not yet stored."""
        if not site or not principal or not notice_id:
            raise ValueError("site, principal and notice_id are required")
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event_type!r}")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}")
        if (event_type == "expired") != (method == "expiry"):
            raise ValueError("method 'expiry' goes with event type 'expired' and only with it")
        if not all(isinstance(k, str) and isinstance(v, bool) for k, v in choices.items()):
            raise ValueError("choices map category names to booleans")
        if idempotency_key is not None and not 0 < len(idempotency_key) <= 200:
            raise ValueError("idempotency key must be 1-200 characters")
        salt = secrets.token_hex(SALT_BYTES)
        raw = {"principal": principal, "ip": ip, "ua": ua, "country": country}
        return cls(
            record_id=str(uuid.uuid4()), site=site, time=utc_ms(time), principal=principal,
            notice_id=notice_id, event_type=event_type, method=method, choices=dict(choices),
            expires_at=utc_ms(expires_at), ip=ip, ua=ua, country=country, regime=regime,
            idempotency_key=idempotency_key, salt=salt,
            commitments={name: None if value is None else commitment(salt, name, value) for name, value in raw.items()},
        )

    def chained(self, seq: int, prev_hash: str, hash: str) -> ConsentEvent:
        """This event placed in the chain (what `dataclasses.replace` does, at a fraction of its cost)."""
        return ConsentEvent(
            self.record_id, self.site, self.time, self.principal, self.notice_id, self.event_type, self.method,
            self.choices, self.expires_at, self.ip, self.ua, self.country, self.regime, self.idempotency_key,
            self.salt, self.commitments, self.schema_version, seq, prev_hash, hash,
        )

    @property
    def erased(self) -> bool:
        return self.salt is None

    @property
    def granted(self) -> frozenset[str]:
        return frozenset(name for name, value in self.choices.items() if value)

    def to_dict(self) -> dict[str, Any]:
        """Everything stored, for exports: raw fields (None once erased), salt, commitments, chain fields."""
        return {
            "record_id": self.record_id, "schema_version": self.schema_version, "site": self.site,
            "seq": self.seq, "time": iso_ms(self.time), "principal": self.principal,
            "notice_id": self.notice_id, "event_type": self.event_type, "method": self.method,
            "choices": dict(self.choices), "expires_at": iso_ms(self.expires_at), "ip": self.ip, "ua": self.ua,
            "country": self.country, "regime": self.regime, "idempotency_key": self.idempotency_key,
            "salt": self.salt, "commitments": dict(self.commitments), "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConsentEvent:
        return cls(
            record_id=data["record_id"], schema_version=int(data["schema_version"]), site=data["site"],
            seq=int(data["seq"]), time=parse_iso_ms(data["time"]), principal=data.get("principal"),
            notice_id=data["notice_id"], event_type=data["event_type"], method=data["method"],
            choices=dict(data["choices"]), expires_at=parse_iso_ms(data["expires_at"]), ip=data.get("ip"),
            ua=data.get("ua"), country=data.get("country"), regime=data.get("regime"),
            idempotency_key=data.get("idempotency_key"), salt=data.get("salt"),
            commitments=dict(data["commitments"]), prev_hash=data["prev_hash"], hash=data["hash"],
        )


def event_type_for(method: Method, choices: Mapping[str, bool], previous: ConsentEvent | None = None) -> EventType:
    """The event type of a visitor's decision, given their previous event (if any).

    - `withdraw` → withdrawn, whatever the choices;
    - no optional category granted (anything but "necessary") → refused;
    - some granted, and the previous event was given/renewed with exactly the
      same choices → renewed: the proxy only asks again after expiry or a
      notice revision change (or the visitor re-saves an unchanged selection),
      so the same grant again is a confirmation, not a new consent;
    - otherwise → given (a first grant, a change, or a grant after a
      refusal, withdrawal or expiry).
    """
    if method == "withdraw":
        return "withdrawn"
    if not any(value for name, value in choices.items() if name != NECESSARY):
        return "refused"
    if previous is not None and previous.event_type in ("given", "renewed") and dict(previous.choices) == dict(choices):
        return "renewed"
    return "given"
