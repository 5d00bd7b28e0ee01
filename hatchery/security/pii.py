"""Detectors for data that must never be on the bus, and their masks.

Each detector finds one kind of personal data or secret in a string and
returns a *masked* form for the report: ``j***@e***.com``, ``****1111``. A
finding may be read by anyone who reads the audit, so the data itself is never
returned. Checksums (Luhn for cards, mod 97 for IBANs) keep random digits from
being reported as cards or accounts.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Iterator, Optional

EMAIL, PHONE, CARD, IBAN, NATIONAL_ID = "email", "phone", "card-number", "iban", "national-id"
SECRET, HIGH_ENTROPY = "secret-token", "high-entropy"


@dataclass(frozen=True)
class Hit:
    rule: str         # one of the names above
    kind: str         # e.g. "us-ssn", "aws-access-key"
    masked: str       # safe to show
    span: tuple       # (start, end) in the scanned string


def mask_tail(value: str, keep: int = 4) -> str:
    """``****1234``: at most ``keep`` trailing characters, never more than a third."""
    keep = min(keep, len(value) // 3)
    return "*" * 4 + (value[-keep:] if keep else "")


def mask_email(value: str) -> str:
    local, _, domain = value.partition("@")
    name, _, tld = domain.rpartition(".")
    return f"{local[:1]}***@{name[:1]}***.{tld}"


# --- checksums ----------------------------------------------------------------

def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    moved = iban[4:] + iban[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return int(number) % 97 == 1


# --- detectors ------------------------------------------------------------------
# Each: (rule, kind, compiled regex, validate(match) -> masked or None, prefilter)

_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}")
# Separators are space, dot or dash, but never a dot before a digit run that
# goes on: that is an IP address or a version, not a phone number.
# A number that starts with '+' starts there, whatever came before it.
_PHONE_RE = re.compile(
    r"(?<![\w+.])(?:\+\d{1,3}[ .-]?|(?<!\d[ -]))(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])"
    r"\d{3,4}[ .-]\d{3,4}(?!\w|[ .-]\d)"
    r"|(?<![\w+])\+\d{8,15}(?!\w)")
# Card numbers start with 2-6 (Mastercard, Amex, Visa, Discover...): this keeps
# epoch milliseconds (17...) from passing as cards one time in ten.
_CARD_RE = re.compile(r"(?<![\d-])(?<!\d )[2-6](?:[ -]?\d){12,18}(?![\d-])")
_IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_SSN_RE = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_NINO_RE = re.compile(
    r"\b(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
_TOKEN_RES = (
    ("aws-access-key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("github-token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b")),
    ("gitlab-token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("slack-token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("api-key", re.compile(r"\b(?:sk-[A-Za-z0-9_-]{20,}|[sr]k_live_[A-Za-z0-9]{16,}|AIza[A-Za-z0-9_-]{35})")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("private-key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    # a credential written as an assignment (password=..., api_key: ..., token=...):
    # eight characters or more, one of them not a lowercase letter or a dash, so
    # that "auth: failed" or "token=not-found" stay words
    ("credential", re.compile(r"(?i:(?<![a-z0-9])(?:pass(?:word|wd|phrase)?|pwd|secret|token|"
                              r"api[_-]?key|access[_-]?key|auth))[\"']?\s*[:=]\s*[\"']?"
                              r"(?=[^\s\"',;]*[0-9A-Z!@#$%^&*+/=~])[^\s\"',;]{8,}")),
)
_ENTROPY_RE = re.compile(r"[A-Za-z0-9+/_=-]{32,}")
_HEX_RE = re.compile(r"[0-9a-fA-F]+")


def _emails(text: str) -> Iterator[Hit]:
    if "@" in text:
        for m in _EMAIL_RE.finditer(text):
            yield Hit(EMAIL, "email", mask_email(m.group()), m.span())


def _cards(text: str) -> Iterator[Hit]:
    for m in _CARD_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits) and len(set(digits)) > 1:
            yield Hit(CARD, "payment-card", mask_tail(digits), m.span())


def _phones(text: str) -> Iterator[Hit]:
    for m in _PHONE_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 8 <= len(digits) <= 15:
            yield Hit(PHONE, "phone", mask_tail(digits), m.span())


def _ibans(text: str) -> Iterator[Hit]:
    for m in _IBAN_RE.finditer(text):
        compact = m.group().replace(" ", "")
        if 15 <= len(compact) <= 34 and iban_ok(compact):
            yield Hit(IBAN, "iban", compact[:2] + mask_tail(compact), m.span())


def _national_ids(text: str) -> Iterator[Hit]:
    for m in _SSN_RE.finditer(text):
        yield Hit(NATIONAL_ID, "us-ssn", "***-**-" + m.group()[-4:], m.span())
    for m in _NINO_RE.finditer(text):
        yield Hit(NATIONAL_ID, "uk-nino", mask_tail(m.group().replace(" ", "")), m.span())


# One cheap search decides whether the token patterns need to run at all.
_TOKEN_HINT = re.compile(r"AKIA|ASIA|gh[pousr]_|github_pat_|glpat-|xox[abposr]-|sk-|k_live_|AIza|"
                         r"eyJ|-----BEGIN|[:=]")


def _tokens(text: str) -> Iterator[Hit]:
    if not _TOKEN_HINT.search(text):
        return
    for kind, regex in _TOKEN_RES:
        for m in regex.finditer(text):
            yield Hit(SECRET, kind, _mask_token(kind, m.group()), m.span())


def _mask_token(kind: str, token: str) -> str:
    # an assignment shows its name only: the tail of a password is part of it
    return re.split(r"[:=]", token, 1)[0].strip("\"' ").lower() + "=****" \
        if kind == "credential" else mask_tail(token)


def shannon_bits(value: str) -> float:
    """Shannon entropy per character."""
    counts, n = Counter(value), len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _high_entropy(text: str) -> Iterator[Hit]:
    for m in _ENTROPY_RE.finditer(text):
        run = m.group()
        # random hex carries at most 4 bits per char, base64 at most 6
        threshold = 3.0 if _HEX_RE.fullmatch(run) else 4.2
        if shannon_bits(run) >= threshold:
            yield Hit(HIGH_ENTROPY, "random-string", f"{len(run)} chars", m.span())


MIN_DIGITS = 6     # the shortest digit-bearing pattern (a UK NINO) has six
_ENOUGH_DIGITS = re.compile(r"(?:\D*\d){%d}" % MIN_DIGITS)
DIGIT_DETECTORS: tuple = (_cards, _phones, _ibans, _national_ids)
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
    found += [(how, address, (_emails,)) for how, address in _spelled_addresses(plain)]
    if "00" in plain and _INTL_PREFIX.search(plain):
        found.append(("00-prefix", _INTL_PREFIX.sub(r"+\1 ", plain), (_phones,)))
    if _LOWER_IBAN.search(plain):
        found.append(("lowercase", plain.upper(), (_ibans, _national_ids)))
    if _DOTTED_DIGITS.search(plain) and _ENOUGH_DIGITS.match(plain):
        found.append(("dotted", _DOTTED_DIGITS.sub("-", plain), (_cards,)))
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
    hits = list(_phones(plain)) if _ENOUGH_DIGITS.match(plain) else []
    for how, address in _spelled_addresses(plain):
        hits += [Hit(h.rule, f"{h.kind}, {how}", h.masked, (0, len(text))) for h in _emails(address)]
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
    hits = list(_emails(text)) + list(_tokens(text))
    if _ENOUGH_DIGITS.match(text):
        for detector in DIGIT_DETECTORS:
            hits += detector(text)
    if entropy and len(text) >= 32:
        hits += _high_entropy(text)
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

