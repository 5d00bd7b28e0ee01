"""Scanning for data that must never be on the bus: the detectors, on a string and
on the ways it may be spelled to slip past them.

The detectors themselves (one kind of data each, with its mask and checksum)
are ``security.detectors``; here they run on the text and on its normalised
variants (Unicode look-alikes, spelled-out e-mails, hex and base64...), the
most specific of overlapping hits wins, and a hit is redacted by its mask.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import unicodedata
from typing import Iterator, Optional

from hatchery.security.detectors import (  # noqa: F401  (the rule names and Hit: pii.X)
    CARD, DIGIT_DETECTORS, EMAIL, ENOUGH_DIGITS, HIGH_ENTROPY, IBAN, MIN_DIGITS, NATIONAL_ID,
    PHONE, SECRET, Hit, cards, emails, high_entropy, iban_ok, ibans, luhn_ok, mask_email, mask_tail,
    national_ids, phones, shannon_bits, tokens)

_CACHE_BELOW = 128   # telemetry repeats its short values; long strings are rare


def scan(text: str, *, entropy: bool = True) -> list:
    """Every hit in ``text`` and in its normalised forms (``variants``);
    overlapping hits of weaker rules are dropped."""
    if len(text) < _CACHE_BELOW:
        return list(_scan_cached(text, entropy))
    return _scan_all(text, entropy)


@functools.lru_cache(maxsize=8192)
def _scan_cached(text: str, entropy: bool) -> tuple:
    return tuple(_scan_all(text, entropy))


def scan_plain(text: str) -> list:
    """The detectors on ``text`` as it is: no normalised variants, no entropy rule."""
    if len(text) < _CACHE_BELOW:
        return list(_scan_plain_cached(text))
    return _scan(text, False)


@functools.lru_cache(maxsize=4096)
def _scan_plain_cached(text: str) -> tuple:
    return tuple(_scan(text, False))


# Text decoded from hex or base64 is scanned with every rule, the entropy rule
# included, whatever field it came from: nothing in the contract encodes
# printable text, so a random token inside is a secret ("version" answered with
# base64 of a token), never a commit hash.
_DECODED = ("hex-encoded", "base64-encoded")


def _scan_all(text: str, entropy: bool) -> list:
    hits = _scan(text, entropy)
    seen = {(h.rule, h.masked) for h in hits}
    for how, variant, detectors in variants(text):
        for hit in _scan(variant, how in _DECODED, detectors):
            if (hit.rule, hit.masked) not in seen:
                seen.add((hit.rule, hit.masked))
                # the span is the variant's: in the original, the whole text is suspect
                hits.append(Hit(hit.rule, f"{hit.kind}, {how}", hit.masked, (0, len(text))))
    return hits


# --- normalisation: the same data, spelled to slip past the patterns ---------------
# Each variant is scanned like the text itself. Every trigger is a cheap test,
# so clean telemetry (short ASCII slugs and numbers) costs almost nothing extra.

_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f"
                                   "\u2060\u2061\u2062\u2063\u2064\ufeff"), None)
# Latin look-alikes from Cyrillic and Greek that NFKC leaves alone.
_HOMOGLYPHS = str.maketrans(
    "\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u0456\u0458\u0455\u0501\u0261\u04bb\u04cf"
    "\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425\u0423"
    "\u03bf\u03b1\u03b5\u03b9\u03ba\u03bd\u03c1\u03c4\u03c5\u03c7"
    "\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7",
    "aeopcyxijsdghl" "ABEKMHOPCTXY" "oaeikvptux" "ABEZHIKMNOPTYX")
# "at" and "dot" as words: between anything but letters and digits (an
# underscore is a separator here, though \b takes it for a letter).
_SLUG_AT = re.compile(r"(?<=[a-z0-9])[\s._-]*[\(\[{]?(?<![a-z0-9])at(?![a-z0-9])[\)\]}]?[\s._-]*"
                      r"(?=[a-z0-9])", re.IGNORECASE)
_SLUG_DOT = re.compile(r"[\s_-]*[\(\[{]?(?<![a-z0-9])dot(?![a-z0-9])[\)\]}]?[\s_-]*", re.IGNORECASE)
# Words that spell an address with its '@' and dots left out: "john doe example
# com" (the keys of a split e-mail, joined by security.content) reads as
# john.doe@example.com. Only when the last word is a top-level domain that
# e-mail uses (or a country after co/ac/com/...), so that three words in a
# row are not an address for nothing.
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)
MAIL_TLDS = frozenset({"com", "org", "net", "edu", "gov", "mil"})   # not "info": a log level
SECOND_LEVEL = frozenset({"co", "ac", "com", "org", "net", "gov", "edu"})
_DOMAIN_RUN = re.compile(r"[A-Za-z0-9._-]+")
_INTL_PREFIX = re.compile(r"(?<![\d+])00([1-9]\d{0,2})(?=[ .-]?\d)")
_HEX_RUN = re.compile(r"(?:[0-9a-fA-F]{2}){8,}")
_B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{12,}={0,2}")
_LOWER_IBAN = re.compile(r"\b[a-z]{2}\d{2}(?: ?[a-zA-Z0-9]){11,30}\b")
_DOTTED_DIGITS = re.compile(r"(?<=\d)[.,_/](?=\d)")
_PRINTABLE_MIN = 0.9


def variants(text: str) -> list:
    """``(how, normalised text, detectors or None for all)`` for each way ``text``
    may hide data: Unicode (NFKC, invisible characters, look-alikes), slug
    e-mails (``john.doe.at.example.com``, or words: ``john doe example com``),
    ``00`` international prefixes, lowercase IBANs, dotted or underscored card
    digits, hex and base64."""
    found = []
    plain = _unicode_plain(text)
    if plain != text:
        found.append(("unicode-normalised", plain, None))
    found += [(how, address, (emails,)) for how, address in _spelled_addresses(plain)]
    if "00" in plain and _INTL_PREFIX.search(plain):
        found.append(("00-prefix", _INTL_PREFIX.sub(r"+\1 ", plain), (phones,)))
    if _LOWER_IBAN.search(plain):
        found.append(("lowercase", plain.upper(), (ibans, national_ids)))
    if _DOTTED_DIGITS.search(plain) and ENOUGH_DIGITS.match(plain):
        found.append(("dotted", _DOTTED_DIGITS.sub("-", plain), (cards,)))
    found += [(how, decoded, None) for how, decoded in _decoded(plain)]
    return found


def _unicode_plain(text: str) -> str:
    if text.isascii():
        return text
    return unicodedata.normalize("NFKC", text).translate(_INVISIBLE).translate(_HOMOGLYPHS)


def _spelled_addresses(plain: str) -> Iterator[tuple]:
    """(how, text) for an e-mail spelled with ``at``/``dot`` or as bare words."""
    if "at" in plain.lower() and _SLUG_AT.search(plain):
        yield "spelled-out", _unslug_email(plain)
    address = _address_from_words(plain) if " " in plain else None
    if address:
        yield "words", address


def scan_spaced(text: str) -> list:
    """Hits that only the spaces between joined parts reveal (``security.content``
    joins the parts of a split value with spaces): an e-mail spelled out or in
    words across the parts, a phone number whose groups are separate parts.
    What each part holds by itself is that part's own finding, found elsewhere."""
    plain = _unicode_plain(text)
    hits = list(phones(plain)) if ENOUGH_DIGITS.match(plain) else []
    for how, address in _spelled_addresses(plain):
        hits += [Hit(h.rule, f"{h.kind}, {how}", h.masked, (0, len(text))) for h in emails(address)]
    return hits


def _unslug_email(text: str) -> str:
    head, _, tail = _SLUG_AT.sub("@", text, count=1).partition("@")
    tail = _SLUG_DOT.sub(".", tail)
    domain = _DOMAIN_RUN.match(tail)
    end = domain.end() if domain else 0
    return f"{head}@{tail[:end].replace('-', '.').replace('_', '.')}{tail[end:]}"


def _address_from_words(text: str) -> Optional[str]:
    """``a.b@c.com`` for the words ``a b c com`` (see MAIL_TLDS), else None."""
    words = text.split()
    if len(words) < 3 or words[-1].lower() not in MAIL_TLDS and not (
            len(words) >= 4 and len(words[-1]) == 2 and words[-2].lower() in SECOND_LEVEL):
        return None
    if not all(_LABEL.fullmatch(w) for w in words):
        return None
    domain = 2 if words[-1].lower() in MAIL_TLDS else 3
    return ".".join(words[:-domain]) + "@" + ".".join(words[-domain:])


def _decoded(text: str) -> Iterator[tuple]:
    """Printable text hidden in hex or base64 runs of ``text``."""
    for m in _HEX_RUN.finditer(text):
        yield from _printable("hex-encoded", bytes.fromhex(m.group()))
    for m in _B64_RUN.finditer(text):
        run = m.group()
        if _HEX_RUN.fullmatch(run):
            continue
        padded = run + "=" * (-len(run) % 4)
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                data = decode(padded)
            except (ValueError, binascii.Error):
                continue
            yield from _printable("base64-encoded", data)
            break


def _printable(how: str, data: bytes) -> Iterator[tuple]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    if text and sum(c.isprintable() for c in text) >= _PRINTABLE_MIN * len(text):
        yield how, text


# Bare integers as phone numbers: an E.164 number written without '+'. Only
# country codes with a fixed national length, so that epochs, byte counts and
# uptimes are not taken for phones: (country code, national digits).
_BARE_PHONE_PLANS = (("1", 10), ("44", 10), ("33", 9), ("49", 10), ("49", 11), ("31", 9),
                     ("34", 9), ("39", 10), ("61", 9), ("91", 10), ("86", 11), ("81", 10))


def bare_number_hits(value: int) -> list:
    """Hits for an integer from a payload: a card (Luhn) or an E.164 phone without '+'."""
    digits = str(abs(value))
    hits = scan(digits, entropy=False)
    if not any(h.rule == PHONE for h in hits):
        for code, length in _BARE_PHONE_PLANS:
            if len(digits) == len(code) + length and digits.startswith(code) \
                    and digits[len(code)] not in "01":
                hits.append(Hit(PHONE, "phone, bare integer", mask_tail(digits), (0, len(digits))))
                break
    return hits


def _scan(text: str, entropy: bool, detectors: Optional[tuple] = None) -> list:
    if detectors is not None:
        return _strongest([hit for detector in detectors for hit in detector(text)])
    hits = list(emails(text)) + list(tokens(text))
    if ENOUGH_DIGITS.match(text):
        for detector in DIGIT_DETECTORS:
            hits += detector(text)
    if entropy and len(text) >= 32:
        hits += high_entropy(text)
    return _strongest(hits)


# Where hits overlap the most specific wins: an IBAN (letters + mod 97) over the
# card-shaped digits inside it, a card (Luhn) over a phone-shaped digit run.
_PRIORITY = {SECRET: 0, IBAN: 1, CARD: 2, NATIONAL_ID: 3, EMAIL: 4, PHONE: 5, HIGH_ENTROPY: 6}


def _strongest(hits: list) -> list:
    kept: list = []
    for hit in sorted(hits, key=lambda h: (_PRIORITY[h.rule], h.span)):
        if not any(_overlap(hit.span, k.span) for k in kept):
            kept.append(hit)
    return sorted(kept, key=lambda h: h.span)


def _overlap(a: tuple, b: tuple) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def redact(text: str, hits: Optional[list] = None) -> str:
    """``text`` with every hit replaced by its mask (for topics and details)."""
    hits = scan(text) if hits is None else hits
    out, last = [], 0
    for hit in hits:
        out += [text[last:hit.span[0]], f"<{hit.masked}>"]
        last = hit.span[1]
    return "".join(out + [text[last:]])
