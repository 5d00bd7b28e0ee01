"""The detectors: one kind of personal data or secret each, found in a string as it is.

Each detector yields a ``Hit`` with a *masked* form for the report:
``j***@e***.com``, ``****1111``. A finding may be read by anyone who reads the
audit, so the data itself is never returned. Checksums (Luhn for cards, mod 97
for IBANs) keep random digits from being reported as cards or accounts.
``security.pii`` runs them, on the text and on its normalised spellings.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

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


def emails(text: str) -> Iterator[Hit]:
    if "@" in text:
        for m in _EMAIL_RE.finditer(text):
            yield Hit(EMAIL, "email", mask_email(m.group()), m.span())


def cards(text: str) -> Iterator[Hit]:
    for m in _CARD_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits) and len(set(digits)) > 1:
            yield Hit(CARD, "payment-card", mask_tail(digits), m.span())


def phones(text: str) -> Iterator[Hit]:
    for m in _PHONE_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 8 <= len(digits) <= 15:
            yield Hit(PHONE, "phone", mask_tail(digits), m.span())


def ibans(text: str) -> Iterator[Hit]:
    for m in _IBAN_RE.finditer(text):
        compact = m.group().replace(" ", "")
        if 15 <= len(compact) <= 34 and iban_ok(compact):
            yield Hit(IBAN, "iban", compact[:2] + mask_tail(compact), m.span())


def national_ids(text: str) -> Iterator[Hit]:
    for m in _SSN_RE.finditer(text):
        yield Hit(NATIONAL_ID, "us-ssn", "***-**-" + m.group()[-4:], m.span())
    for m in _NINO_RE.finditer(text):
        yield Hit(NATIONAL_ID, "uk-nino", mask_tail(m.group().replace(" ", "")), m.span())


# One cheap search decides whether the token patterns need to run at all.
_TOKEN_HINT = re.compile(r"AKIA|ASIA|gh[pousr]_|github_pat_|glpat-|xox[abposr]-|sk-|k_live_|AIza|"
                         r"eyJ|-----BEGIN|[:=]")


def tokens(text: str) -> Iterator[Hit]:
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


def high_entropy(text: str) -> Iterator[Hit]:
    for m in _ENTROPY_RE.finditer(text):
        run = m.group()
        # random hex carries at most 4 bits per char, base64 at most 6
        threshold = 3.0 if _HEX_RE.fullmatch(run) else 4.2
        if shannon_bits(run) >= threshold:
            yield Hit(HIGH_ENTROPY, "random-string", f"{len(run)} chars", m.span())



MIN_DIGITS = 6     # the shortest digit-bearing pattern (a UK NINO) has six
ENOUGH_DIGITS = re.compile(r"(?:\D*\d){%d}" % MIN_DIGITS)
DIGIT_DETECTORS: tuple = (cards, phones, ibans, national_ids)
