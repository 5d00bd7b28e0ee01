"""The contract's bytes: compact JSON out, checked JSON in, and its timestamps.

``encode``/``decode`` turn a payload into bytes and back, refusing what no
payload may be: over MAX_PAYLOAD_BYTES, not UTF-8, not one JSON object, nested
past the parser's stack, or holding a number that is not finite or not within
+-2**53. ``now_rfc3339``/``parse_rfc3339`` write and read every payload's
``ts``. ``ContractError`` is the one error every check of the contract raises
(``agent_kit.contract`` re-exports all of these: import them from there).
"""

from __future__ import annotations

import functools
import json
import math
import re
from datetime import datetime, timezone

MAX_PAYLOAD_BYTES = 4096
RFC3339_RE = re.compile(
    r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})\Z", re.ASCII)


class ContractError(ValueError):
    """A name, topic or payload that breaks the contract.

    ``reason`` is a short machine-readable code (``not-json``, ``unknown-verb``,
    ...) used to count and report drops without echoing the payload.
    """

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# --- time -------------------------------------------------------------------

def now_rfc3339() -> str:
    """UTC now, RFC 3339 with millisecond precision (``2026-03-18T21:30:00.123Z``)."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def parse_rfc3339_uncached(value: object) -> datetime:
    """Parse an RFC 3339 timestamp into an aware datetime, or raise ContractError."""
    if not isinstance(value, str) or not RFC3339_RE.fullmatch(value):
        raise ContractError("bad-ts", "ts must be an RFC 3339 timestamp")
    text = value.replace("Z", "+00:00")
    if "." in text:  # fromisoformat on 3.9/3.10 takes at most 6 fraction digits
        head, rest = text.split(".", 1)
        digits = re.match(r"\d+", rest).group(0)
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits):]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise ContractError("bad-ts", str(exc)) from None


# --- encoding ---------------------------------------------------------------

def encode(payload: dict) -> bytes:
    """Compact JSON bytes; raises ContractError if over MAX_PAYLOAD_BYTES."""
    try:
        data = json.dumps(payload, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False).encode()
    except ValueError:
        raise ContractError("bad-number", "NaN or Infinity is not JSON") from None
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ContractError("oversized", f"{len(data)} bytes > {MAX_PAYLOAD_BYTES}")
    return data


# Numbers on the bus are finite and no larger than a float holds exactly (2**53,
# JSON's safe-integer range). Python's json accepts NaN, Infinity and integers
# of thousands of digits; one 400-digit number in a heartbeat once made the
# exporter's /metrics answer 500 for the whole fleet, and NaN is not JSON.
MAX_NUMBER = 2 ** 53
_MAX_NUMBER_TEXT = 32     # characters of one number literal (a float's repr fits in 24)


def _bounded(value):
    if not math.isfinite(value) or abs(value) > MAX_NUMBER:
        raise ContractError("bad-number", "a number is not finite or exceeds 2**53")
    return value


# The hooks run once per number of every payload (five in a heartbeat): one call
# each, the bound as one chained comparison (NaN fails it, as +-inf does).
def _parse_int(text: str) -> int:
    if len(text) > _MAX_NUMBER_TEXT:
        raise ContractError("bad-number", f"a {len(text)}-digit integer")
    value = int(text)
    if -MAX_NUMBER <= value <= MAX_NUMBER:
        return value
    raise ContractError("bad-number", "a number is not finite or exceeds 2**53")


def _parse_float(text: str) -> float:
    if len(text) > _MAX_NUMBER_TEXT:
        raise ContractError("bad-number", f"a {len(text)}-character number")
    value = float(text)
    if -MAX_NUMBER <= value <= MAX_NUMBER:
        return value
    raise ContractError("bad-number", "a number is not finite or exceeds 2**53")


def _refuse_constant(text: str):
    raise ContractError("bad-number", f"{text} is not JSON")


# Every number goes through the checking hooks. Measured (Python 3.11), a hooked
# C decoder costs about what plain json.loads does, while a regex that looked
# for the rare unbounded literal first cost more than the parse itself.
CHECKED_JSON = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float,
                                 parse_constant=_refuse_constant)


def decode(data: bytes, limit: int = MAX_PAYLOAD_BYTES) -> dict:
    """Bytes to a JSON object, refusing oversized, non-UTF-8 and non-object input,
    and any number that is not finite or not within +-2**53 (``bad-number``)."""
    if len(data) > limit:
        raise ContractError("oversized", f"{len(data)} bytes > {limit}")
    try:
        text = data.decode("utf-8")
        # JSONDecoder.decode without its two Python layers (what it does, in one call):
        # leading whitespace, one value, trailing whitespace, nothing else.
        value, end = _SCAN(text, _SPACE(text, 0).end())
        if _SPACE(text, end).end() != len(text):
            raise ContractError("not-json")
    except ContractError:
        raise
    except (UnicodeDecodeError, ValueError, StopIteration):
        raise ContractError("not-json") from None
    except RecursionError:  # 4 KiB of '[' nests deeper than the parser's stack
        raise ContractError("too-deep") from None
    if not isinstance(value, dict):
        raise ContractError("not-object", type(value).__name__)
    return value


_SCAN = CHECKED_JSON.scan_once
_SPACE = json.decoder.WHITESPACE.match



# --- a parsed ts is remembered ------------------------------------------------------
# A payload's ts is parsed by check_schema and again by its reader (monitor,
# exporter): 20,000 parses for a 10,000-agent snapshot. Only strings are cached
# (errors never are), so any other value still gets the uncached answer.

_parse_rfc3339_cached = functools.lru_cache(maxsize=1024)(parse_rfc3339_uncached)


def parse_rfc3339(value: object) -> datetime:
    """Parse an RFC 3339 timestamp into an aware datetime, or raise ContractError."""
    if isinstance(value, str):
        return _parse_rfc3339_cached(value)
    return parse_rfc3339_uncached(value)
