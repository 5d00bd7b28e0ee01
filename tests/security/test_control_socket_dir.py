"""Where the broker's control socket goes when the state directory's path is too long for one.

A unix socket's path is limited to about 107 bytes; broker.deploy used to leave
the control listener out silently past that. Now the socket moves to a short
private directory, /tmp/hatchery-ctl-<uid>/<hash>/, whose per-user parent must be
ours, 0700 and no symlink (core.state.private_socket_dir). Pure path logic and
the directory checks; the flood through a real broker is in test_hostile_neighbour.py.
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath

import pytest

from hatchery.core import paths
from hatchery.core.state import private_socket_dir
from hatchery.errors import RuntimeFailure


def test_a_short_state_dir_keeps_its_socket():
    wanted = PurePosixPath("/srv/fleet/.hatchery/broker/control")
    assert paths.control_socket_dir(PurePosixPath("/srv/fleet/.hatchery"), wanted, 1000) == wanted


def test_a_long_state_dir_gets_a_short_private_one_per_state_dir():
    long_root = PurePosixPath("/srv/" + "x" * 120 + "/.hatchery")
    chosen = paths.control_socket_dir(long_root, long_root / "broker" / "control", 1000)
    assert str(chosen).startswith("/tmp/hatchery-ctl-1000/")
    assert paths.fits_unix_socket(chosen / paths.CONTROL_SOCKET)
    other = PurePosixPath("/srv/" + "y" * 120 + "/.hatchery")
    assert paths.control_socket_dir(other, other / "broker", 1000) != chosen
    assert paths.control_socket_dir(long_root, long_root / "broker", 1000) == chosen   # stable


def test_the_short_directory_is_made_private(tmp_path):
    made = private_socket_dir(tmp_path / "hatchery-x" / "abc")
    for directory in (made.parent, made):
        assert directory.is_dir() and (directory.stat().st_mode & 0o777) == 0o700


def test_a_parent_someone_else_made_is_refused(tmp_path):
    parent = tmp_path / "hatchery-x"
    parent.mkdir(mode=0o700)
    os.chown(parent, 65534, 65534)           # nobody made it first
    with pytest.raises(RuntimeFailure, match="belongs to uid 65534"):
        private_socket_dir(parent / "abc")


def test_a_parent_open_to_others_is_refused(tmp_path):
    parent = tmp_path / "hatchery-x"
    parent.mkdir()
    parent.chmod(0o777)
    with pytest.raises(RuntimeFailure, match="open to others"):
        private_socket_dir(parent / "abc")


def test_a_symlinked_parent_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / "hatchery-x").symlink_to(elsewhere)
    with pytest.raises(RuntimeFailure, match="not a directory"):
        private_socket_dir(tmp_path / "hatchery-x" / "abc")
    assert not (elsewhere / "abc").exists()
