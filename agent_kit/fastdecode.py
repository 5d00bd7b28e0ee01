"""The common case of the typed decode in one pass: a valid heartbeat, state or reply.

``messages.decode`` asks here first, twice. ``canonical_heartbeat`` and
``canonical_state`` read a payload exactly as agent_kit writes it with one
regular expression, before any JSON is parsed. Failing that, ``heartbeat``,
``state`` and ``reply`` take the object ``contract.decode`` made of the
payload (every value of an exact JSON type, every number bounded) and check
it in one pass. Each returns the message's fields when the payload passes
every rule of ``contract.validate_heartbeat`` / ``validate_status``, or None
for anything else, and then the full validators run and name the reason.
So these paths refuse nothing on their own, and accept only what the full
path accepts, with the same values: ``tests/agent_kit/test_fastdecode.py``
holds them equal on generated and hostile payloads.

Why: a 10,000-agent snapshot folds 20,000 retained messages. The schema
loop (a generic walk with two isinstance calls per key), a second parse of
``ts`` through ``datetime`` and the per-field ``__init__`` of a frozen
dataclass were most of the fold's time; here the keys and value types are
checked once per payload shape (one lookup after the first), strings by a
precompiled full match, and ``ts`` by one match and integer arithmetic.

Standard library only, like the rest of agent_kit.
"""

from __future__ import annotations

import functools
import re
from datetime import date
from typing import Optional

from . import contract
from .contract import INSTANCE_RE, KEY_RE, NAME_RE, SLUG_RE

# The timestamps agents write (contract.now_rfc3339): UTC with a "Z". Others
# (an offset, a bad field) take the full path, which parses or refuses them.
_TS_RE = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}):([0-5]\d)(?:\.(\d{1,9}))?Z", re.ASCII)
_EPOCH_DAY = date(1970, 1, 1)
_MICRO_SCALE = {1: 100_000, 2: 10_000, 3: 1_000, 4: 100, 5: 10, 6: 1}


@functools.lru_cache(maxsize=1024)
def _minute_start(minute: str) -> Optional[int]:
    """Epoch seconds at the start of a YYYY-MM-DDTHH:MM minute (None: no such minute)."""
    hour, mins = int(minute[11:13]), int(minute[14:16])
    try:
        day = date.fromisoformat(minute[:10])
    except ValueError:
        return None
    return None if hour > 23 or mins > 59 else (day - _EPOCH_DAY).days * 86400 + hour * 3600 + mins * 60


def epoch(value: str) -> Optional[float]:
    """``contract.parse_rfc3339(value).timestamp()`` for a UTC ("Z") timestamp, else None.

    Exact, not close: datetime.timestamp() divides whole microseconds by 10**6
    (an exact integer division rounded once), and so does this; the fraction
    is cut to microseconds as parse_rfc3339 cuts it.
    """
    found = _TS_RE.fullmatch(value)
    return None if found is None else _epoch_of(*found.groups())


def _epoch_of(minute: str, second: str, fraction: Optional[str]) -> Optional[float]:
    start = _minute_start(minute)
    if start is None:
        return None
    if fraction:
        digits = fraction[:6]
        return ((start + int(second)) * 1_000_000 + int(digits) * _MICRO_SCALE[len(digits)]) / 1_000_000
    return float(start + int(second))


# --- a payload as agent_kit writes it, read with one match -------------------------
# contract.encode writes compact JSON with the keys in the make_* functions' order.
# A payload of exactly that form, with strings drawn from the contract's own
# character sets (so no escapes) and numbers of at most 15 digits before and after
# the point (so bounded, at most 32 characters, and parsed as json would parse
# them), is read here without building the JSON object at all. Anything else
# (other key order, spaces, exponents, escapes) takes the JSON path below.

_NAME = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_INT = r"-?(?:0|[1-9][0-9]{0,14})"
_NUM = _INT + r"(?:\.[0-9]{1,15})?"
# uptime, mem_kb, cpu and interval are never negative (contract.validate_heartbeat): a
# negative one takes the JSON path, which refuses it; so does an interval of 0.
_UINT = r"(?:0|[1-9][0-9]{0,14})"
_UNUM = _UINT + r"(?:\.[0-9]{1,15})?"
_TS = r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}):([0-5][0-9])(?:\.([0-9]{1,9}))?Z"
_KEY = r"[a-z][a-z0-9_-]{0,31}"
_HEAD = r'\{"v":' + str(contract.SCHEMA_VERSION) + r',"ts":"' + _TS + r'","agent":"(' + _NAME + r')"'
_INSTANCE = r'(?:,"instance":"([a-z0-9]{8,32})")?\}'
_CANONICAL_BEAT = re.compile(
    _HEAD + r',"ok":(true|false),"uptime":(' + _UNUM + r')(?:,"mem_kb":(' + _UINT + r'))?'
    r'(?:,"cpu":(' + _UNUM + r'))?(?:,"errors":\{((?:"' + _KEY + '":' + _INT + r',)*"' + _KEY + '":' + _INT
    + r')?\})?(?:,"interval":(' + _UNUM + r'))?(?:,"version":"([a-z0-9][a-z0-9._-]{0,63})")?' + _INSTANCE,
    re.ASCII)
_CANONICAL_STATE = re.compile(
    _HEAD + r',"kind":"state","state":"(' + contract.STATE_ONLINE + "|" + contract.STATE_OFFLINE + ')"'
    + _INSTANCE, re.ASCII)
_ERROR_PAIR = re.compile(r'"(' + _KEY + r')":(' + _INT + r')', re.ASCII)


def _number(text: Optional[str]):
    """What json (with contract's hooks) makes of a number _NUM matched."""
    if text is None:
        return None
    return float(text) if "." in text else int(text)


def _matched(pattern: re.Pattern, payload: bytes) -> Optional[re.Match]:
    # Bytes that are not UTF-8 become U+FFFD, which nothing in the patterns matches.
    return pattern.fullmatch(payload.decode("utf-8", "replace")) \
        if len(payload) <= contract.MAX_PAYLOAD_BYTES else None


def canonical_heartbeat(payload: bytes) -> Optional[tuple]:
    """messages.Heartbeat's fields for a heartbeat as agent_kit writes it, or None."""
    found = _matched(_CANONICAL_BEAT, payload)
    if found is None:
        return None
    minute, second, fraction, agent, ok, uptime, mem_kb, cpu, errors, interval, version, instance \
        = found.groups()
    ts = _epoch_of(minute, second, fraction)
    if ts is None or (interval is not None and not float(interval)):
        return None
    return (agent, ts, ok == "true", float(uptime) if "." in uptime else int(uptime),
            None if mem_kb is None else int(mem_kb), _number(cpu),
            {key: int(count) for key, count in _ERROR_PAIR.findall(errors)} if errors else {},
            _number(interval), version, instance)


def canonical_state(payload: bytes) -> Optional[tuple]:
    """messages.State's fields for a retained state as agent_kit writes it, or None."""
    found = _matched(_CANONICAL_STATE, payload)
    if found is None:
        return None
    minute, second, fraction, agent, state, instance = found.groups()
    ts = _epoch_of(minute, second, fraction)
    return None if ts is None else (agent, ts, state == contract.STATE_ONLINE, instance)


# --- a decoded JSON object ------------------------------------------------------------

def _exact_types(schema: dict) -> dict:
    """key -> the exact types it may hold. JSON gives exact types only, and bool is its own
    type here, so a bool is never taken where the schema means a number."""
    return {key: frozenset(types if isinstance(types, tuple) else (types,))
            for key, (types, _required) in schema.items()}


class _Shapes:
    """check_schema's key and type rules for one schema, answered per payload *shape* (its
    keys and their value types, in order): a fleet sends a handful of shapes, so after the
    first payload of each the answer is one dict lookup. At most MAX shapes are kept (a
    hostile sender minting new shapes only makes its own payloads take the long way)."""

    MAX = 256

    def __init__(self, schema: dict):
        self.types = _exact_types(schema)
        self.required = frozenset(key for key, (_types, required) in schema.items() if required)
        self.known: dict = {}

    def fits(self, data: dict) -> bool:
        shape = (tuple(data), tuple(map(type, data.values())))
        fits = self.known.get(shape)
        if fits is None:
            fits = self._fits(shape)
            if len(self.known) < self.MAX:
                self.known[shape] = fits
        return fits

    def _fits(self, shape: tuple) -> bool:
        keys, kinds = shape
        return self.required <= set(keys) and all(
            key in self.types and kind in self.types[key] for key, kind in zip(keys, kinds))


_BEAT, _STATE, _REPLY = (_Shapes(s) for s in (contract.HEARTBEAT_SCHEMA, contract.STATE_SCHEMA,
                                              contract.REPLY_SCHEMA))
_STATES = (contract.STATE_ONLINE, contract.STATE_OFFLINE)


def _shaped(data: dict, shapes: _Shapes) -> Optional[float]:
    """The payload's epoch ts if it passes check_schema and its name is a name, else None."""
    if not shapes.fits(data) or data["v"] != contract.SCHEMA_VERSION \
            or not NAME_RE.fullmatch(data["agent"]):
        return None
    instance = data.get("instance")
    if instance is not None and not INSTANCE_RE.fullmatch(instance):
        return None
    return epoch(data["ts"])


def heartbeat(data: dict) -> Optional[tuple]:
    """messages.Heartbeat's fields, in order, for a valid heartbeat; None: take the full path."""
    ts = _shaped(data, _BEAT)
    if ts is None:
        return None
    errors = data.get("errors")
    if errors:
        for key, count in errors.items():
            if type(count) is not int or not KEY_RE.fullmatch(key):
                return None
    version = data.get("version")
    if version is not None and not SLUG_RE.fullmatch(version):
        return None
    if any(data.get(key, 0) < 0 for key in contract.HEARTBEAT_NOT_NEGATIVE) \
            or data.get("interval", 1) <= 0:
        return None         # the full path refuses it
    return (data["agent"], ts, data["ok"], data["uptime"], data.get("mem_kb"), data.get("cpu"),
            dict(errors) if errors else {}, data.get("interval"), version, data.get("instance"))


def state(data: dict) -> Optional[tuple]:
    """messages.State's fields for a valid retained state; None: take the full path."""
    ts = _shaped(data, _STATE)
    if ts is None or data["state"] not in _STATES:
        return None
    return (data["agent"], ts, data["state"] == contract.STATE_ONLINE, data.get("instance"))


def reply(data: dict) -> Optional[tuple]:
    """messages.Reply's fields for a valid reply; None: take the full path."""
    ts = _shaped(data, _REPLY)
    if ts is None:
        return None
    result = data.get("result")
    return (data["agent"], ts, data["id"], data["verb"], data["ok"], dict(result) if result else {},
            data.get("error"), data.get("instance"))
