"""Render Jinja2 templates strictly, and hash what was rendered.

A template is looked up in ``<inventory dir>/templates`` first, so a fleet can
override any file, then in the hatchery repo's ``templates/``. Undefined
variables are errors (``StrictUndefined``): a typo must never render as an
empty string into a broker config.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional, Union

from hatchery.core import formats
from hatchery.core.assets import TEMPLATES
from hatchery.errors import RenderError

if TYPE_CHECKING:     # imported when something is rendered: a task that renders
    import jinja2  # nothing (broker.status, fleet.collect) does not pay for it

REPO_TEMPLATES = TEMPLATES
HASH_CHARS = 16


def search_path(inventory=None) -> list:
    """Template directories, most specific first: the inventory's, then the repo's."""
    dirs = [REPO_TEMPLATES]
    if inventory is not None:
        dirs.insert(0, Path(inventory.path).parent / "templates")
    return dirs


def environment(search: Iterable, template_name: str = "") -> jinja2.Environment:
    """The environment for ``template_name``: its format's writer checks every ``{{ }}``
    (no control characters, whatever the value) and brings the format's quoting filters
    (``core.formats``)."""
    import jinja2
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in search]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,       # config files and Dockerfiles, not HTML
        trim_blocks=True,       # a {% block %} line leaves no blank line behind
        lstrip_blocks=True,
        finalize=formats.finalizer(template_name),
    )
    env.filters.update(formats.FILTERS)
    return env


def render(template_name: str, context: dict, search: Optional[Iterable] = None,
           inventory=None) -> str:
    """Render ``template_name`` with ``context``; raise RenderError naming template and line.

    ``search`` (a list of directories) overrides the default search path, which
    is ``search_path(inventory)``.
    """
    import jinja2
    dirs = list(search) if search is not None else search_path(inventory)
    env = environment(dirs, template_name)
    try:
        template = env.get_template(template_name)
        return template.render(**context)
    except jinja2.TemplateNotFound as exc:
        raise RenderError(f"template {exc.name!r} not found",
                          f"looked in: {', '.join(str(d) for d in dirs)}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"{_where(exc.filename or exc.name or template_name, exc.lineno)}: "
                          f"template syntax error: {exc.message}",
                          "fix the template's {% %} / {{ }} tags") from None
    except jinja2.UndefinedError as exc:
        raise _undefined(exc, template_name, dirs) from None
    except RenderError as exc:              # a value its format cannot hold (core.formats)
        filename, line = _template_frame(exc, dirs, template_name)
        raise RenderError(f"{_where(filename, line)}: {exc.message}", exc.fix) from None


def _undefined(exc: jinja2.UndefinedError, template_name: str, dirs: list) -> RenderError:
    filename, line = _template_frame(exc, dirs, template_name)
    missing = _missing_name(str(exc))
    text = str(exc)
    what = f"variable {missing!r} is undefined" if text.endswith("is undefined") else text
    return RenderError(f"{_where(filename, line)}: {what}",
                       f"pass {missing!r} in the template's context, or fix its spelling"
                       if missing else "pass every variable the template uses")


def _template_frame(exc: BaseException, dirs: list, template_name: str) -> tuple:
    """(template file, line) of the innermost template frame in the traceback.

    Jinja2 rewrites tracebacks so a template's frames carry its file name and
    line; the innermost one is where the undefined name was used.
    """
    roots = tuple(str(Path(d)) + "/" for d in dirs)
    found = (template_name, None)
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(roots):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _missing_name(message: str) -> Optional[str]:
    # Jinja2's wording: "'name' is undefined" or "'dict object' has no attribute 'name'"
    match = (re.search(r"has no attribute '([^']+)'", message)
             or re.search(r"^'([^']+)' is undefined", message))
    return match.group(1) if match else None


def _where(filename: str, line: Optional[int]) -> str:
    return f"{filename}:{line}" if line else str(filename)


def content_hash(*parts: Union[str, bytes]) -> str:
    """Short sha256 hex of the parts, for "has the rendered output changed?".

    One part hashes exactly its bytes (so it matches ``sha256sum``); several
    are length-prefixed, so ("ab", "c") and ("a", "bc") differ.
    """
    digest = hashlib.sha256()
    data = [p.encode("utf-8") if isinstance(p, str) else bytes(p) for p in parts]
    if len(data) == 1:
        digest.update(data[0])
    else:
        for item in data:
            digest.update(b"%d:" % len(item) + item)
    return digest.hexdigest()[:HASH_CHARS]
