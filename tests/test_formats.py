"""One writer per format (core/formats.py): control characters refused everywhere, quoting per format.

Pure: no broker, no engine. The attacks through real parts are in
tests/security/test_hostile_rendering.py.
"""

from __future__ import annotations

import json
import plistlib
import shlex
import subprocess

import pytest

from hatchery.core import formats
from hatchery.core.render import render
from hatchery.errors import RenderError

CONTROLS = ["\n", "\r", "\x00", "\t", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\x9f"]
TEMPLATES = {"x.conf.j2": "mosquitto.conf", "agent.Dockerfile.j2": "Dockerfile",
             "job.service.j2": "systemd", "job.timer.j2": "systemd", "a.plist.j2": "launchd",
             "schedule/crontab.j2": "crontab", "entry.sh.j2": "shell", "broker.nft.j2": "nftables",
             "rules.yml.j2": "YAML", "notes.txt.j2": "text"}


@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_format_refuses_every_control_character(tmp_path, name, control):
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text("first\nvalue {{ v }}\n")
    assert render(name, {"v": "fine"}, search=[tmp_path]) == "first\nvalue fine\n"
    with pytest.raises(RenderError) as refused:
        render(name, {"v": f"a{control}allow_anonymous true"}, search=[tmp_path])
    assert TEMPLATES[name] in str(refused.value) and f"{name}:2" in str(refused.value)


def test_a_path_or_number_is_checked_as_the_text_it_renders_as(tmp_path):
    from pathlib import PurePosixPath
    (tmp_path / "x.conf.j2").write_text("password_file {{ p }}\nport {{ n }}\n")
    assert render("x.conf.j2", {"p": PurePosixPath("/s/passwd"), "n": 1883},
                  search=[tmp_path]) == "password_file /s/passwd\nport 1883\n"
    with pytest.raises(RenderError):
        render("x.conf.j2", {"p": PurePosixPath("/s\nallow_anonymous true\n#/passwd"), "n": 1},
               search=[tmp_path])


def test_the_format_is_picked_by_the_template_name():
    for name, fmt in TEMPLATES.items():
        assert formats.format_of(name) == fmt


@pytest.mark.parametrize("value", ["", " lead", "trail ", "\ttab"])
def test_mosquitto_values_keep_no_blanks_at_the_ends(value):
    with pytest.raises(RenderError):
        formats.conf_value(value)


def test_a_mosquitto_word_is_one_word():
    assert formats.conf_word("/run/h/control.sock") == "/run/h/control.sock"
    with pytest.raises(RenderError):
        formats.conf_word("/run/my dir/control.sock")
    assert formats.conf_value("/srv/my fleet/passwd") == "/srv/my fleet/passwd"


@pytest.mark.parametrize("word", ["plain", "with space", "50%", "$HOME", 'say "hi"', "back\\slash",
                                  "it's", "%h/x"])
def test_systemd_arguments_survive_its_own_splitting(word):
    quoted = formats.systemd_arg(word)
    assert "%" not in quoted.replace("%%", "") and "$" not in quoted.replace("$$", "")
    unescaped = quoted.replace("%%", "%").replace("$$", "$")
    assert shlex.split(unescaped) == [word]        # systemd's quoting is a superset of this


def test_cron_and_shell_words_are_quoted_and_cron_percent_escaped():
    assert formats.cron_arg("50%") == "50\\%" and formats.cron_arg("a b%") == "'a b\\%'"
    assert formats.sh_words(["a b", "$(x)"]) == "'a b' '$(x)'"
    out = subprocess.run(["sh", "-c", "printf '%s|' " + formats.sh_words(["$(id)", "`id`", "a'b"])],
                         capture_output=True, text=True).stdout
    assert out == "$(id)|`id`|a'b|"


def test_docker_exec_form_is_json():
    assert json.loads("[" + formats.docker_json('/usr/bin/"x"') + "]") == ['/usr/bin/"x"']


def test_the_launchd_plist_stays_a_plist(tmp_path):
    (tmp_path / "a.plist.j2").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0"><dict><key>Label</key>'
        "<string>{{ v | e }}</string></dict></plist>\n")
    text = render("a.plist.j2", {"v": "<a&b>"}, search=[tmp_path])
    assert plistlib.loads(text.encode())["Label"] == "<a&b>"
    with pytest.raises(RenderError):
        render("a.plist.j2", {"v": "a\x01b"}, search=[tmp_path])
