"""Consent records: the durable, tamper-evident log of every consent decision (GDPR art. 7(1)).

- `model`: notice versions and consent events, `event_type_for`;
- `minimise`: what is kept of the user agent (`reduce_ip`, re-exported here, lives in `privacy.ip`);
- `chain`, `checkpoint`: per-site hash chain, Ed25519-signed checkpoints, `verify_chain`;
- `store` (+ `sqlite`, `postgres`, `migrations`): `open(url)` (alias `open_store`, the name
  `__all__` exports, so a star import never hides the builtin) and the one store interface;
- `writer`: group commit for the asyncio side.
"""

from consentproxy.privacy.ip import reduce_ip
from consentproxy.records.chain import GENESIS, Verdict, verify_chain
from consentproxy.records.checkpoint import Checkpoint, load_private_key, load_private_key_file, sign_checkpoint
from consentproxy.records.minimise import ua_family
from consentproxy.records.model import ConsentEvent, NoticeVersion, event_type_for
from consentproxy.records.store import RecordStore, StoreError, StoreUnavailable, open_store
from consentproxy.records.store import open as open  # records.open(url); not in __all__
from consentproxy.records.writer import RecordWriter

__all__ = [
    "GENESIS", "Checkpoint", "ConsentEvent", "NoticeVersion", "RecordStore", "RecordWriter", "StoreError",
    "StoreUnavailable", "Verdict", "event_type_for", "load_private_key", "load_private_key_file", "open_store",
    "reduce_ip", "sign_checkpoint", "ua_family", "verify_chain",
]
