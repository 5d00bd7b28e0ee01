"""What a decoded payload says beyond its shape: free text, personal data, secrets.

``problems(value)`` walks a decoded JSON value (a payload, or a message's MQTT
v5 properties) and returns ``(rule, detail)`` pairs, masked like every
finding. Each string and each key goes through ``pii.scan`` (with its
normalised variants). Then the parts of a value split over several fields are
joined and scanned again:

- neighbouring string values, and the keys of one object in order (an e-mail
  as the keys ``john``, ``doe``, ``example``, ``com`` of a heartbeat's
  ``errors``), are read run together (``john.doe`` + ``@example.com``) and
  with a space between the parts, which lets the normaliser read a
  spelled-out ``at``/``dot`` across fields (``john_at_example``, ``dot_com``)
  and words that spell an address (``pii.variants``);
- runs of short integers are read run together (a card number in four fields).

A joined hit counts only if no single field holds it. Used by ``observe.audit``.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Iterator, Optional

from agent_kit import contract
from hatchery.security import pii

FREE_TEXT = "free-text"
# Fields that are random by design (signatures, digests, ids, commit hashes):
# exempt from the high-entropy rule only, still scanned for named secrets (and
# for what they decode to: pii scans a decoded variant with every rule).
OPAQUE_KEYS = frozenset({"sig", "digest", "id", "version"})
PROSE_WORDS = 5          # this many words, most of them alphabetic, read as a sentence
LONG_STRING = 200        # no field of the contract needs a string this long
_SAFE_KEY = re.compile(r"\A[A-Za-z_][A-Za-z0-9_-]{0,31}\Z")

# Split fields: the parts of an address or a card number in neighbouring fields.
# Values of these keys are the topic's agent or a word of the vocabulary (other
# values are schema or agent-mismatch findings already): they join nothing.
FIXED_KEYS = frozenset({"agent", "kind", "verb", "state"})
# The contract's own keys are vocabulary, not data: they join nothing either.
SCHEMA_KEYS = frozenset().union(
    contract.COMMAND_SCHEMA, contract.HEARTBEAT_SCHEMA, contract.STATE_SCHEMA,
    contract.REPLY_SCHEMA, contract.ALERT_SCHEMA, contract.EVENT_ENVELOPE)
JOIN_PART_DIGITS = (2, 6)      # a card split into integers: each part this many digits


def problems(value, root: str = "$") -> list:
    """(rule, detail) for personal data, secrets and free text anywhere in ``value``,
    the values one by one, then the parts of split values joined."""
    found: list = []
    seen: set = set()           # masks already reported: a joined hit must be new
    strings: list = []          # string values, in order
    keys: dict = {}             # an object's path -> its keys, in order
    runs: list = []             # runs of neighbouring short integers
    run: list = []
    low, high = JOIN_PART_DIGITS
    for path, key, leaf in _walk(value, root):
        if type(leaf) is str:
            if not key:         # a key: text too, but it does not break a run
                found += _string_problems(leaf, path, key, seen)
                if leaf not in SCHEMA_KEYS:
                    keys.setdefault(path, []).append(leaf)
                continue
            if not _is_timestamp(leaf):
                if key not in FIXED_KEYS:
                    strings.append(leaf)
                found += _string_problems(leaf, path, key, seen)
            number = None
        else:
            number = _whole_number(leaf)
        if number is not None:
            if abs(number) >= 10**7:    # a card or phone as a number
                found += _hits(pii.bare_number_hits(number), path, seen)
            if 0 <= number and low <= len(str(number)) <= high:
                run.append(str(number))
                continue
        if _card_sized(run):
            runs.append((root, run))
        run = []
    if _card_sized(run):
        runs.append((root, run))
    texts = [(where, parts) for where, parts in
             ((root, strings), *((f"the keys of {p}", k) for p, k in keys.items()))
             if len(parts) > 1]
    if runs or texts:
        found += _joined_problems(runs + texts, texts, seen)
    return found


def _hits(hits: list, path: str, seen: set) -> list:
    seen.update(h.masked for h in hits)
    return [(h.rule, f"{h.kind} {h.masked} in {path}") for h in hits]


def _card_sized(run: list) -> bool:
    # integers joined can only make a card number (a phone needs '+' or separators)
    return len(run) > 1 and 13 <= sum(map(len, run)) <= 19


def _whole_number(value) -> Optional[int]:
    """An int, or a float that holds a whole number (a card sent as 4111111111111111.0)."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def _joined_problems(together: list, spaced: list, seen: set) -> list:
    """Findings in split values joined that no single value holds. ``together``
    ((where, parts) pairs) is read run together (a hit must cross a boundary
    between two parts), ``spaced`` also with a space between the parts
    (``pii.scan_spaced``: a spelled-out address, a phone in groups)."""
    out = []
    for where, parts in together:
        out += _new_hits(_run_together(parts), where, seen)
    for where, parts in spaced:
        out += _new_hits(pii.scan_spaced(" ".join(parts)), where, seen)
    return out


def _new_hits(hits, where: str, seen: set) -> list:
    out = []
    for hit in hits:
        if hit.masked not in seen:
            seen.add(hit.masked)
            out.append((hit.rule, f"{hit.kind}, split across fields {hit.masked} in {where}"))
    return out


def _run_together(parts: list) -> Iterator[pii.Hit]:
    joined, bounds, own, start = "".join(parts), [], [], 0
    for part in parts:
        own += [(h.rule, h.span[0] + start, h.span[1] + start) for h in pii.scan_plain(part)]
        start += len(part)
        bounds.append(start)
    for hit in pii.scan_plain(joined):
        crosses = any(hit.span[0] < b < hit.span[1] for b in bounds[:-1])
        # a hit that only extends one value's own hit is that value's finding
        extends = any(rule == hit.rule and hit.span[0] < end and begin < hit.span[1]
                      for rule, begin, end in own)
        if crosses and not extends:
            yield hit


def _is_timestamp(value: str) -> bool:
    # An RFC 3339 timestamp holds digits and separators only: nothing to scan,
    # and its 17 digits would otherwise wake every digit detector.
    return 20 <= len(value) <= 35 and value[4:5] == "-" and \
        contract.RFC3339_RE.fullmatch(value) is not None


def _string_problems(value: str, path: str, key: str, seen: set) -> list:
    found = []
    words = value.split()
    if len(words) >= PROSE_WORDS and sum(w.isalpha() for w in words) >= PROSE_WORDS - 1:
        found.append((FREE_TEXT, f"{len(words)} words of text in {path}"))
    elif len(value) > LONG_STRING:
        found.append((FREE_TEXT, f"{len(value)}-character string in {path}"))
    hits = pii.scan(value, entropy=key not in OPAQUE_KEYS)
    return found + _hits(hits, path, seen) if hits else found


def text_problems(text: str, path: str, *, entropy: bool = True) -> Iterator[tuple]:
    """(rule, detail) for data in a text that is not JSON (scanned as one string)."""
    for hit in pii.scan(text, entropy=entropy):
        yield hit.rule, f"{hit.kind} {hit.masked} in {path}"


def _walk(value, path: str, key: str = "", depth: int = 0) -> Iterator[tuple]:
    """(path, key, leaf) for every leaf and every key (with key "" and the
    object's own path) of a decoded value."""
    if depth > 32:
        return    # json already refused anything deeper than the interpreter allows
    if isinstance(value, dict):
        for k, v in value.items():
            yield path, "", k                       # keys are text too
            yield from _walk(v, f"{path}.{safe_key(k)}", k, depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]", key, depth + 1)
    else:
        yield path, key, value


@functools.lru_cache(maxsize=4096)   # payloads repeat the same few keys
def safe_key(key: str) -> str:
    """A key as it may appear in a report: itself if it is a plain name, else '?'."""
    return key if _SAFE_KEY.fullmatch(key) and not pii.scan(key) else "?"


def safe_text(value: object) -> str:
    """A value as it may appear in a report: quoted if it is a plain name, else hidden."""
    text = value[:40] if isinstance(value, str) else json.dumps(value)[:40]
    return repr(text) if _SAFE_KEY.fullmatch(text) and not pii.scan(text) else "(not shown)"
