"""One writer per output format: what a value may contain there, and how it is quoted.

Every value that reaches a rendered file goes through the format's writer.
Values come from the inventory, from the file system (the inventory's own
directory, the state directory), from a base image (``docker image inspect``)
or from the user running hatchery, and any of them may be hostile: a newline
in ``fleet.state_dir`` became ``allow_anonymous true`` in mosquitto.conf, and a
base image's ``USER`` became ``RUN`` lines in the agent's Dockerfile. So:

- every format refuses control characters (C0, DEL, C1 and the Unicode line
  and paragraph separators) in every value, whatever the template does with
  it (``core.render`` applies ``check`` to each ``{{ }}``);
- each format has the quoting its readers need, as template filters:
  mosquitto.conf values run to the end of the line and a listener's path is
  one word; systemd expands ``%`` and ``$`` and splits words; cron turns ``%``
  into a newline; the shell needs ``shlex.quote``; a Dockerfile's exec form is
  JSON; launchd's plist is XML.

Pure: strings in, strings out, ``RenderError`` for a value that cannot be written.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Callable

from hatchery.errors import RenderError

# C0 controls, DEL, C1 controls (NEL among them), LINE and PARAGRAPH SEPARATOR:
# anything a reader might take for the end of a line, or that no text file needs.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
GENERIC = "text"


def control_problem(value: str) -> str:
    """'' when ``value`` holds no control character, else what is wrong (for messages)."""
    found = CONTROL.search(value)
    if not found:
        return ""
    return f"holds a control character ({found.group()!r} at {found.start()})"


def check(value, fmt: str = GENERIC, what: str = "a value"):
    """``value`` itself when every character of its text may be written in ``fmt``;
    RenderError otherwise. Anything but None is checked as the text it renders as."""
    text = value if isinstance(value, str) else "" if value is None else str(value)
    problem = control_problem(text)
    if problem:
        raise RenderError(f"{fmt}: {what} {_shown(text)} {problem}",
                          "remove line breaks and control characters from it (an inventory "
                          "value, a directory name or a base image's config)")
    return value


def _shown(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- mosquitto.conf -------------------------------------------------------------------------

def conf_value(value) -> str:
    """A value Mosquitto reads to the end of the line: no blanks at either end (it trims them)."""
    text = check(str(value), "mosquitto.conf")
    if not text or text != text.strip(" \t"):
        raise RenderError(f"mosquitto.conf: {_shown(text)} is empty or starts or ends with a blank",
                          "Mosquitto trims blanks: rename the file or directory")
    return text


def conf_word(value) -> str:
    """A value Mosquitto reads as one word (a listener's address or unix socket path)."""
    text = conf_value(value)
    if " " in text or "\t" in text:
        raise RenderError(f"mosquitto.conf: {_shown(text)} holds a blank where one word is read",
                          "use a path without blanks")
    return text


# --- systemd units ---------------------------------------------------------------------------

def systemd_arg(value) -> str:
    """One ExecStart argument: systemd expands ``%`` and ``$`` and splits on blanks."""
    escaped = check(str(value), "systemd").replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_path(value) -> str:
    """A path setting (WorkingDirectory=): ``%`` specifiers escaped, no quoting."""
    return check(str(value), "systemd").replace("%", "%%")


# --- crontab, shell, Dockerfile ---------------------------------------------------------------

def cron_arg(value) -> str:
    """One word of a crontab command: shell-quoted, ``%`` escaped (cron makes it a newline)."""
    return shlex.quote(check(str(value), "crontab")).replace("%", "\\%")


def sh_word(value) -> str:
    return shlex.quote(check(str(value), "shell"))


def sh_words(values) -> str:
    return " ".join(sh_word(v) for v in values)


def docker_json(value) -> str:
    """A Dockerfile exec-form string (JSON), e.g. ENTRYPOINT ["{{ x | docker_json }}"]."""
    return json.dumps(check(str(value), "Dockerfile"))


FILTERS: dict = {"conf_value": conf_value, "conf_word": conf_word, "systemd_arg": systemd_arg,
                 "systemd_path": systemd_path, "cron_arg": cron_arg, "sh_word": sh_word,
                 "sh_words": sh_words, "docker_json": docker_json}

# Which format a template writes, by its name (core.render picks the writer with it).
_SUFFIXES = ((".conf.j2", "mosquitto.conf"), ("Dockerfile.j2", "Dockerfile"),
             (".service.j2", "systemd"), (".timer.j2", "systemd"), (".plist.j2", "launchd"),
             ("crontab.j2", "crontab"), (".sh.j2", "shell"), (".nft.j2", "nftables"),
             (".yml.j2", "YAML"), (".yaml.j2", "YAML"))


def format_of(template_name: str) -> str:
    return next((fmt for suffix, fmt in _SUFFIXES if template_name.endswith(suffix)), GENERIC)


def finalizer(template_name: str) -> Callable:
    """Jinja2's ``finalize`` for a template: every ``{{ }}`` output checked for its format."""
    fmt = format_of(template_name)
    return lambda value: check(value, fmt, f"a value in {template_name}")
