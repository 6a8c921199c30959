# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The audit trail's hash chain, the one definition: the betaskill.payops.audit callback writes with
it and `payops audit verify` checks with it.

Each line is a JSON object carrying `prev` (the previous line's hash) and `hash`: SHA-256 over
`prev`, a newline and the line's canonical JSON without `hash`. The first line's `prev` is GENESIS.
"""

from __future__ import annotations

import hashlib
import json

GENESIS = "0" * 64


def chain_hash(prev, record):
    """The hash of one line: the previous hash and the line's own canonical JSON (without `hash`)."""
    body = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256((prev + "\n" + body).encode("utf-8")).hexdigest()
