"""The start-up sweep (tests/hosts/namespaces.py): what a SIGKILLed run left — its namespace,
the tmpfs mounted for it, a process running inside — goes; a live run's namespace, and a
namespace nobody claimed, stay. Real namespaces, mounts and processes; no Docker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from namespaces import OWNERS, run_tag, sh, sweep  # noqa: E402

# A run as the harness makes one: its directory with a tmpfs (and a mount under it, as
# dockerd leaves), a claimed namespace, and a daemon inside it in its own session (as
# dockerd is started: it outlives the run). Prints the daemon's pid, then waits to be killed.
OWNER = """
import subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, {here!r})
from namespaces import claim_netns, sh
root = Path({root!r})
name = claim_netns({name!r}, root=root)
sh("mount", "-t", "tmpfs", "-o", "size=1m", name, str(root))
(root / "data").mkdir()
sh("mount", "-t", "tmpfs", "-o", "size=1m", name + "d", str(root / "data"))
daemon = subprocess.Popen(["nsenter", "--net=/var/run/netns/" + name, "sleep", "600"],
                          start_new_session=True)
print(daemon.pid, flush=True)
time.sleep(600)
"""


def _owner(name: str) -> tuple:
    """A process owning ``name`` (and a run directory); (process, run dir, daemon pid)."""
    root = Path(tempfile.mkdtemp(prefix=f"{name}-", dir="/tmp"))
    script = OWNER.format(here=str(Path(__file__).parent), root=str(root), name=name)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip().isdigit(), f"the owner did not start: {line!r}"
    return proc, root, int(line)


def _namespaces() -> list:
    return [line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines()]


def _mounted(root: Path) -> list:
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(str(root))]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.fixture
def tag():
    tag = run_tag()
    yield tag
    for name in _namespaces():          # whatever a failed assertion left
        if name.startswith(tag):
            sh("ip", "netns", "del", name, check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and mounts need root")
def test_a_killed_runs_leftovers_go_and_a_live_runs_stay(tag):
    dead, dead_root, dead_daemon = _owner(f"{tag}dead")
    live, live_root, live_daemon = _owner(f"{tag}live")
    sh("ip", "netns", "add", f"{tag}free")          # made by older code or by hand: no marker
    try:
        dead.send_signal(signal.SIGKILL)
        dead.wait(5)
        assert f"{tag}dead" in _namespaces() and _mounted(dead_root) and _alive(dead_daemon)

        result = sweep()

        assert f"{tag}dead" in result.removed and dead_daemon in result.killed
        assert f"{tag}dead" not in _namespaces()
        assert not _alive(dead_daemon)
        assert _mounted(dead_root) == [] and not dead_root.exists()
        assert not (OWNERS / f"{tag}dead").exists()
        # the live run's namespace, mounts and daemon are untouched; the unclaimed one too
        assert f"{tag}live" in result.kept and f"{tag}live" in _namespaces()
        assert _alive(live_daemon) and len(_mounted(live_root)) == 2
        assert f"{tag}free" in result.unowned and f"{tag}free" in _namespaces()

        live.send_signal(signal.SIGKILL)          # once its owner dies, it goes as well
        live.wait(5)
        assert f"{tag}live" in sweep().removed
        assert f"{tag}live" not in _namespaces() and not _alive(live_daemon)
        assert _mounted(live_root) == [] and not live_root.exists()
    finally:
        for proc in (dead, live):
            proc.kill()
            proc.wait(5)
        for pid in (dead_daemon, live_daemon):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        for root in (dead_root, live_root):
            for mount in sorted(_mounted(root), key=len, reverse=True):
                sh("umount", "-l", mount, check=False)
            sh("rm", "-rf", "--one-file-system", str(root), check=False)
        for name in ("dead", "live"):
            (OWNERS / f"{tag}{name}").unlink(missing_ok=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")
def test_a_claim_is_held_for_as_long_as_its_maker_lives(tag):
    from namespaces import claim_netns, release, remove_netns
    name = claim_netns(f"{tag}mine")
    try:
        assert name in sweep().kept                 # this process holds it: never swept
        with pytest.raises(RuntimeError, match="claimed by a live run"):
            claim_netns(name)
    finally:
        remove_netns(name)
        release([name])
    assert name not in _namespaces() and not (OWNERS / name).exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")
def test_a_marker_cannot_point_the_sweep_at_any_directory(tag, tmp_path):
    # A dead claim naming a directory no run makes: the namespace goes, the directory stays.
    victim = tmp_path / "keep"
    victim.mkdir()
    (victim / "file").write_text("mine")
    script = (f"import sys, time; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
              "from namespaces import claim_netns\n"
              f"claim_netns({tag + 'odd'!r}, root={str(victim)!r}); print('ok', flush=True); time.sleep(60)")
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert owner.stdout.readline().strip() == "ok"
    owner.kill()
    owner.wait(5)
    started = time.monotonic()
    assert f"{tag}odd" in sweep().removed and time.monotonic() - started < 10
    assert (victim / "file").read_text() == "mine"


# A whole MultiHost run (one host: its dockerd, containerd, sshd, a container) killed
# after start: what the next run's start() sweeps must leave nothing of it behind.
KILLED_RUN = """
import json, sys, time
sys.path.insert(0, {here!r})
from netns import MultiHost
multi = MultiHost(count=1).start()
host = multi.hosts[0]
multi.load_images({image!r})
multi.docker(host, "run", "-d", "--network", "none", "--entrypoint", "sleep", {image!r}, "600")
pid = multi.docker(host, "ps", "-q").stdout.split()[0]
pid = int(multi.docker(host, "inspect", "-f", "{{{{.State.Pid}}}}", pid).stdout)
print(json.dumps({{"tag": multi.tag, "root": str(multi.root), "container": pid,
                  "dockerd": host.dockerd.pid, "sshd": host.sshd.pid}}), flush=True)
time.sleep(600)
"""


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and mounts need root")
def test_a_killed_multihost_run_is_swept_whole():
    import json

    from netns import MultiHost
    script = KILLED_RUN.format(here=str(Path(__file__).parent), image="hatchery/mosquitto:2.0.11")
    run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = run.stdout.readline()
        assert line.startswith("{"), f"the run did not start: {line!r}"
        made = json.loads(line)
        run.send_signal(signal.SIGKILL)
        run.wait(5)
        ghost = MultiHost(tag=made["tag"], root=Path(made["root"]))   # only to list what is left
        left = ghost.leftovers()
        assert any(x.startswith("netns") for x in left) and any(x.startswith("mount") for x in left), left
        assert all(_alive(made[p]) for p in ("dockerd", "sshd", "container"))

        result = sweep()

        assert {f"{made['tag']}lan", f"{made['tag']}h1"} <= set(result.removed), result
        assert ghost.leftovers() == []
        assert not any(_alive(made[p]) for p in ("dockerd", "sshd", "container"))
    finally:
        run.kill()
        run.wait(5)
        sweep()
