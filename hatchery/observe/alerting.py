"""Alerts that reach a person: the Alertmanager config for the exporter's rules.

``fleet.exporter --rules`` gives Prometheus the alerting rules; this renders
the Alertmanager side (templates/alertmanager/alertmanager.yml.j2): one
receiver with a webhook and/or e-mail, grouping by alert and agent, offline
alerts sent without waiting. Every value is checked here (a URL, an address,
a duration) before it reaches the file, and written as a JSON string.
"""

from __future__ import annotations

import re
from typing import Optional
from urllib.parse import urlsplit

from hatchery.core.render import render
from hatchery.errors import UsageError

TEMPLATE = "alertmanager/alertmanager.yml.j2"
DURATION_RE = re.compile(r"(?:[0-9]+(?:ms|s|m|h|d|w|y))+")
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}")
HOSTPORT_RE = re.compile(r"[A-Za-z0-9.-]{1,253}:[0-9]{1,5}")
MAX_URL = 2000


def check_url(url: str) -> str:
    """An http(s) URL with a host and no whitespace or control characters."""
    parts = urlsplit(url)
    if (len(url) > MAX_URL or parts.scheme not in ("http", "https") or not parts.hostname
            or any(c.isspace() or not c.isprintable() for c in url)):
        raise UsageError(f"--webhook {url[:80]!r} is not an http(s) URL",
                         "e.g. --webhook https://alerts.example.org/hatchery")
    return url


def check_duration(value: str, flag: str) -> str:
    if not DURATION_RE.fullmatch(value or ""):
        raise UsageError(f"{flag} {value!r} is not a duration", "e.g. 30s, 5m, 4h")
    return value


def _check(pattern, value: str, what: str, example: str) -> str:
    if not pattern.fullmatch(value):
        raise UsageError(f"{what} {value[:80]!r} is not valid", f"e.g. {example}")
    return value


def render_alertmanager_config(*, webhook_url: Optional[str] = None,
                               email_to: Optional[str] = None,
                               email_from: Optional[str] = None,
                               smarthost: Optional[str] = None,
                               email_password_file: Optional[str] = None,
                               group_wait: str = "30s", group_interval: str = "5m",
                               repeat_interval: str = "4h", critical_wait: str = "0s",
                               max_alerts: int = 50, inventory=None) -> str:
    """alertmanager.yml routing hatchery's alerts to a webhook and/or an e-mail address."""
    if not webhook_url and not email_to:
        raise UsageError("an Alertmanager config needs somewhere to send alerts",
                         "give --webhook URL, or --email-to ADDRESS with --email-from and "
                         "--smarthost HOST:PORT")
    if email_to and not (email_from and smarthost):
        raise UsageError("--email-to needs --email-from and --smarthost HOST:PORT")
    context = {
        "webhook_url": check_url(webhook_url) if webhook_url else None,
        "email_to": _check(EMAIL_RE, email_to, "--email-to", "ops@example.org") if email_to else None,
        "email_from": _check(EMAIL_RE, email_from, "--email-from", "hatchery@example.org")
        if email_to else None,
        "smarthost": _check(HOSTPORT_RE, smarthost, "--smarthost", "mail.example.org:587")
        if email_to else None,
        "email_password_file": email_password_file if email_to else None,
        "group_wait": check_duration(group_wait, "group_wait"),
        "group_interval": check_duration(group_interval, "group_interval"),
        "repeat_interval": check_duration(repeat_interval, "repeat_interval"),
        "critical_wait": check_duration(critical_wait, "critical_wait"),
        "max_alerts": max(0, min(int(max_alerts), 1000)),
    }
    return render(TEMPLATE, context, inventory=inventory)
