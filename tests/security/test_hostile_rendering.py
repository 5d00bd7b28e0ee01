"""Attack 10 of the threat model: a value rendered unescaped into a config becomes config lines.

A newline in ``fleet.state_dir`` (or in the name of the inventory's directory,
which the default state directory takes) turned every path line of
mosquitto.conf into two: ``allow_anonymous true`` after ``allow_anonymous
false``, and Mosquitto takes the last value. A base image's ``USER``, read
with ``docker image inspect``, turned a comment of the agent's Dockerfile into
``RUN`` lines. Each attack is first run as it used to render (the template
without the writers of core/formats.py) against the real part: a throw-away
Mosquitto takes an anonymous login, a real ``docker build`` runs the injected
line. Then the product refuses it: at load (exit 2, file:line), at inspection
(the image named), and in the renderer whatever gets past.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import jinja2
import paho.mqtt.client as mqtt
import pytest

from hatchery.configs.broker import conf_context, control_socket
from hatchery.core import formats
from hatchery.core.assets import TEMPLATES
from hatchery.core.ports import free_port
from hatchery.core.state import forget_socket_dir, ready_socket_dir
from hatchery.errors import InventoryError, RenderError, UsageError
from hatchery.inventory.load import load_inventory
from hatchery.inventory.model import BrokerSpec, Inventory
from hatchery.provision.operations import broker_conf
from hatchery.runtime import for_runtime
from hatchery.runtime.docker import (BaseImage, agent_context, checked_base_user,
                                     forget_base_images, inspect_base_image)
from tests.conftest import MOSQUITTO

ROOT = Path(__file__).resolve().parents[2]
INJECTED = "\nallow_anonymous true\n#"
BASE = "hatchery/base:bookworm"


def _as_it_used_to_render(template: str, context: dict) -> str:
    """The template with no writer: no checks, every quoting filter a no-op."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update({name: (lambda value: value) for name in formats.FILTERS})
    return env.get_template(template).render(**context)


def _anonymous_gets_in(port: int) -> bool:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    answers = []
    client.on_connect = lambda c, u, f, reason, p: answers.append(not reason.is_failure)
    try:
        client.connect("127.0.0.1", port)
    except OSError:
        return False
    client.loop_start()
    deadline = time.monotonic() + 3
    while not answers and time.monotonic() < deadline:
        time.sleep(0.02)
    client.disconnect()
    client.loop_stop()
    return bool(answers and answers[0])


def _hostile_inventory(root: Path, port: int) -> Inventory:
    return Inventory(path=root / "fleet_inventory.yaml", state_dir=root / f"s{INJECTED}",
                     broker=BrokerSpec(port=port))


def test_a_newline_in_the_state_dir_opened_a_real_broker_to_anonymous_logins(tmp_path):
    port = free_port()
    inv = _hostile_inventory(tmp_path, port)
    text = _as_it_used_to_render("mosquitto.conf.j2",
                                 conf_context(inv, for_runtime(inv.broker.runtime).broker_layout(inv)))
    lines = text.splitlines()
    assert lines.index("allow_anonymous false") < lines.index("allow_anonymous true")
    (tmp_path / "s").write_text("")        # what the split path lines now name
    ready_socket_dir(control_socket(inv), inv.state_dir)
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text)
    broker = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        assert broker.poll() is None and _anonymous_gets_in(port), "the attack no longer works"
    finally:
        broker.terminate()
        broker.wait(5)
        forget_socket_dir(control_socket(inv), inv.state_dir)
    with pytest.raises(RenderError, match="control character"):
        broker_conf(inv)                   # the product's renderer, whatever gets past the loader


@pytest.mark.parametrize("where", ["state_dir", "directory"])
def test_the_loader_and_broker_deploy_refuse_it_with_exit_2(tmp_path, where):
    home = tmp_path / f"fleet{INJECTED}" if where == "directory" else tmp_path
    home.mkdir(exist_ok=True)
    path = home / "fleet_inventory.yaml"
    state = '  state_dir: "s\\nallow_anonymous true\\n#"\n' if where == "state_dir" else ""
    path.write_text(f"fleet:\n  manager: zephyr\n{state}broker:\n  port: {free_port()}\n"
                    "agents:\n  alpha: {}\n")
    with pytest.raises(InventoryError, match="fleet.state_dir.*control character"):
        load_inventory(path)
    proc = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(ROOT), "broker.deploy"],
                          capture_output=True, text=True, timeout=60,
                          env={"FLEET_INVENTORY": str(path), "NO_COLOR": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "control character" in proc.stdout + proc.stderr
    assert not list(tmp_path.rglob("mosquitto.conf"))


# --- a base image's USER ---------------------------------------------------------------------

@pytest.fixture
def hostile_image():
    """A base image whose config says USER "nobody\\nUSER root\\nRUN touch /pwned", made offline
    (docker commit with a config: a Dockerfile cannot write one)."""
    import docker
    client = docker.from_env()
    tag = f"hty-hostile-user-{uuid.uuid4().hex[:8]}"
    box = client.containers.create(BASE, command=["true"])
    try:
        box.commit(repository=tag, tag="latest", conf={"User": "nobody\nUSER root\nRUN touch /pwned\n#"})
    finally:
        box.remove()
    yield client, f"{tag}:latest"
    for ref in (f"{tag}:latest", f"{tag}-built:latest"):
        try:
            client.images.remove(ref, force=True)
        except docker.errors.ImageNotFound:
            pass
    forget_base_images()


def test_a_base_images_user_ran_its_own_line_in_a_real_build(hostile_image, tmp_path):
    client, ref = hostile_image
    user = client.images.get(ref).attrs["Config"]["User"]
    base = BaseImage(ref, "sha256:x", python="3.11", package_manager="apt-get", user=user)
    context = {"name": "alpha", "base_image": ref, "lib_dir": "/opt/x", "entrypoint": "/e",
               "handler_pid": "/run/p", "agent_label": "l", "wrappers": [], "package_manager": "",
               "packages": "", "why": "", "base_user": base.user}
    text = _as_it_used_to_render("agent.Dockerfile.j2", context)
    assert "\nRUN touch /pwned\n" in text
    head = text[:text.index("\nCOPY ")] + "\n"          # up to what needs a build context
    (tmp_path / "Dockerfile").write_text(head)
    client.images.build(path=str(tmp_path), tag=f"{ref.split(':')[0]}-built:latest",
                        network_mode="none", rm=True)
    out = client.containers.run(f"{ref.split(':')[0]}-built:latest", ["ls", "/pwned"],
                                user="0", remove=True)
    assert out.strip() == b"/pwned", "the attack no longer works"
    with pytest.raises(RenderError, match="control character"):
        agent_context(_agent_inventory(tmp_path, ref), _agent(ref), base)


def test_inspecting_such_a_base_image_refuses_it_by_name(hostile_image):
    client, ref = hostile_image
    with pytest.raises(UsageError, match=f"base image {ref} declares USER"):
        inspect_base_image(client, ref)


@pytest.mark.parametrize("user", ["node", "1000", "1000:1000", "app:staff", "www-data", "a.b"])
def test_plain_users_pass(user):
    assert checked_base_user("img", user) == user


@pytest.mark.parametrize("user", ["a\nRUN x", "a b", "-rf", "a:b:c", "a\u2028", "$(id)", "x" * 40])
def test_anything_else_is_refused(user):
    with pytest.raises(UsageError):
        checked_base_user("img", user)


def _agent_inventory(tmp_path: Path, ref: str) -> Inventory:
    return Inventory(path=tmp_path / "fleet_inventory.yaml", state_dir=tmp_path / ".hatchery")


def _agent(ref: str):
    from hatchery.inventory.model import AgentSpec
    return AgentSpec("alpha", runtime="docker", image=ref)
