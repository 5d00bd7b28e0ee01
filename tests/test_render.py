"""Strict Jinja2 rendering: search path, error messages, content hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hatchery.core.render import REPO_TEMPLATES, content_hash, render, search_path
from hatchery.errors import RenderError, UsageError
from hatchery.inventory.model import Inventory


def template(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_renders_and_keeps_the_trailing_newline(tmp_path):
    folder = template(tmp_path, "greet.j2", "hello {{ who }}\n")
    assert render("greet.j2", {"who": "fleet"}, search=[folder]) == "hello fleet\n"


def test_undefined_variable_names_template_line_and_variable(tmp_path):
    folder = template(tmp_path, "conf.j2", "# header\nport {{ port }}\nbind {{ bnid }}\n")
    with pytest.raises(RenderError) as caught:
        render("conf.j2", {"port": 1883, "bind": "x"}, search=[folder])
    error = caught.value
    assert error.message == f"{folder / 'conf.j2'}:3: variable 'bnid' is undefined"
    assert "'bnid'" in error.fix
    assert isinstance(error, UsageError) and error.exit_code == 2


def test_undefined_in_an_if_test_is_an_error_too(tmp_path):
    # Never let a misspelt flag silently render as false into a config.
    folder = template(tmp_path, "flag.j2", "{% if pasword_file %}auth{% endif %}\n")
    with pytest.raises(RenderError, match=r"flag.j2:1: variable 'pasword_file' is undefined"):
        render("flag.j2", {"password_file": "/p"}, search=[folder])


def test_missing_attribute_names_the_attribute_and_line(tmp_path):
    folder = template(tmp_path, "agents.j2", "{% for a in agents %}\n{{ a.nmae }}\n{% endfor %}\n")
    with pytest.raises(RenderError) as caught:
        render("agents.j2", {"agents": [{"name": "client-a"}]}, search=[folder])
    assert caught.value.message.startswith(f"{folder / 'agents.j2'}:2: ")
    assert "has no attribute 'nmae'" in caught.value.message


def test_undefined_inside_an_included_template_points_at_that_template(tmp_path):
    folder = template(tmp_path, "outer.j2", "start\n{% include 'inner.j2' %}\n")
    template(folder, "inner.j2", "one\ntwo {{ missing_here }}\n")
    with pytest.raises(RenderError, match=r"inner.j2:2: variable 'missing_here' is undefined"):
        render("outer.j2", {}, search=[folder])


def test_syntax_error_names_template_and_line(tmp_path):
    folder = template(tmp_path, "broken.j2", "ok\nok\n{{ port }\n")
    with pytest.raises(RenderError) as caught:
        render("broken.j2", {"port": 1}, search=[folder])
    assert caught.value.message.startswith(f"{folder / 'broken.j2'}:3: template syntax error: ")


def test_missing_template_lists_where_it_looked(tmp_path):
    with pytest.raises(RenderError) as caught:
        render("nope.j2", {}, search=[tmp_path / "a", tmp_path / "b"])
    assert caught.value.message == "template 'nope.j2' not found"
    assert caught.value.fix == f"looked in: {tmp_path / 'a'}, {tmp_path / 'b'}"


def test_search_override_first_directory_wins(tmp_path):
    first = template(tmp_path / "first", "x.j2", "first\n")
    second = template(tmp_path / "second", "x.j2", "second\n")
    template(second, "only-second.j2", "fallback\n")
    assert render("x.j2", {}, search=[first, second]) == "first\n"
    assert render("x.j2", {}, search=[second, first]) == "second\n"
    assert render("only-second.j2", {}, search=[first, second]) == "fallback\n"


def test_inventory_templates_override_the_repo_templates(tmp_path):
    inv = Inventory(path=tmp_path / "fleet_inventory.yaml", state_dir=tmp_path / ".hatchery")
    assert search_path(inv) == [tmp_path / "templates", REPO_TEMPLATES]
    assert search_path() == [REPO_TEMPLATES]
    # Not overridden: the repo's template is used, strictly.
    with pytest.raises(RenderError, match=r"mosquitto.conf.j2:\d+: variable '\w+' is undefined"):
        render("mosquitto.conf.j2", {}, inventory=inv)
    template(tmp_path / "templates", "mosquitto.conf.j2", "listener {{ port }}\n")
    assert render("mosquitto.conf.j2", {"port": 1884}, inventory=inv) == "listener 1884\n"


def test_content_hash_is_short_stable_sha256():
    assert content_hash("abc") == hashlib.sha256(b"abc").hexdigest()[:16]
    assert content_hash("abc") == content_hash(b"abc")
    assert content_hash("abc") != content_hash("abd")
    assert len(content_hash("")) == 16 and int(content_hash("x"), 16) >= 0


def test_content_hash_of_parts_does_not_depend_on_where_they_split():
    assert content_hash("ab", "c") != content_hash("a", "bc")
    assert content_hash("a", "bc") == content_hash(b"a", "bc")
    assert content_hash("abc") != content_hash("abc", "")
