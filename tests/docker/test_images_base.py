"""Any agent image, the pure part: probe parsing, what to install, which main process,
the rendered Dockerfile and supervisor, the main-exited contract. No engine needed."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from agent_kit import contract
from hatchery.errors import UsageError
from hatchery.inventory.model import DOCKER, AgentSpec, Inventory
from hatchery.runtime.docker import BaseImage, agent_context

DEBIAN = BaseImage("debian:bookworm-slim", "sha256:aa", package_manager="apt-get",
                   cmd=("bash",))
WITH_EVERYTHING = BaseImage("hatchery/agent-base:bookworm-clients", "sha256:bb", python="3.11",
                            package_manager="apt-get", mosquitto_clients=True, cmd=("python3",))
NODE = BaseImage("node:20", "sha256:cc", package_manager="apt-get", setpriv=True,
                 entrypoint=("docker-entrypoint.sh",), cmd=("node", "/app/agent.js"),
                 workdir="/app", user="node")


def _inv(tmp_path: Path) -> Inventory:
    return Inventory(path=tmp_path / "fleet_inventory.yaml", state_dir=tmp_path / ".hatchery")


def _agent(**fields) -> AgentSpec:
    return AgentSpec("client-x", runtime=DOCKER, **fields)


def render_dockerfile(inv: Inventory, agent: AgentSpec, base: BaseImage) -> str:
    return agent_context(inv, agent, base).files["Dockerfile"][0].decode()


def render_entrypoint(inv: Inventory, agent: AgentSpec, base: BaseImage) -> str:
    return agent_context(inv, agent, base).files["entrypoint.sh"][0].decode()


def needs(base: BaseImage):
    return base.needs()


def main_user(base: BaseImage, main_command) -> str:
    return base.main_user(main_command)


def parse_probe(output: str) -> dict:
    probed = BaseImage.from_probe("x", "sha256:x", {}, output)
    return {k: getattr(probed, k) for k in ("python", "package_manager", "mosquitto_clients", "setpriv")}


def main_line(main_command, image_command: tuple) -> str:
    """The line of the rendered supervisor that starts the main process ('' when none)."""
    base = replace(WITH_EVERYTHING, entrypoint=(), cmd=image_command)
    nowhere = Inventory(path=Path("/nonexistent/fleet_inventory.yaml"),
                        state_dir=Path("/nonexistent/.hatchery"))
    script = render_entrypoint(nowhere, _agent(main_command=main_command), base)
    lines = [line[:-2] for line in script.splitlines() if line.endswith(" &") and "handler" not in line
             and not line.startswith("    ") and "sleep" not in line]
    return lines[0] if lines else ""


# --- the probe's output ------------------------------------------------------------------

def test_probe_output_becomes_fields_and_junk_is_ignored():
    output = "python=3.11\npackage_manager=apt-get\nmosquitto_clients=yes\nsetpriv=yes\n"
    assert parse_probe(output) == {"python": "3.11", "package_manager": "apt-get",
                                   "mosquitto_clients": True, "setpriv": True}
    hostile = "python=3.11; rm -rf /\npackage_manager=pacman\nmosquitto_clients=no\nnoise\n"
    assert parse_probe(hostile) == {"python": None, "package_manager": None,
                                    "mosquitto_clients": False, "setpriv": False}


def test_the_probe_script_is_valid_posix_sh():
    dash = shutil.which("dash") or shutil.which("sh")
    assert subprocess.run([dash, "-n", "-c", BaseImage.PROBE]).returncode == 0


def test_an_old_python_counts_as_missing():
    assert not replace(WITH_EVERYTHING, python="3.7").has_python
    assert replace(WITH_EVERYTHING, python="3.10").has_python


# --- what the Dockerfile installs -------------------------------------------------------------

@pytest.mark.parametrize("manager, python, clients", [
    ("apt-get", ("python3-minimal", "libpython3-stdlib"), ("mosquitto-clients",)),
    ("apk", ("python3",), ("mosquitto-clients",)),
    ("dnf", ("python3",), ("mosquitto",)),
    ("microdnf", ("python3",), ("mosquitto",)),
])
def test_a_base_without_python_gets_a_minimal_one_from_its_package_manager(manager, python, clients):
    got = needs(replace(DEBIAN, package_manager=manager))
    assert got.package_manager == manager and got.packages == python + clients
    assert got.why == ("python3 missing", "mosquitto_pub missing")


def test_a_base_with_everything_needs_nothing():
    assert needs(WITH_EVERYTHING).packages == ()


def test_a_base_lacking_python_without_a_known_package_manager_is_refused_naming_image_and_fix():
    with pytest.raises(UsageError) as caught:
        needs(replace(DEBIAN, ref="gcr.io/distroless/nodejs20", package_manager=None))
    assert "gcr.io/distroless/nodejs20" in caught.value.message
    assert "python3 missing" in caught.value.message and "FROM" in caught.value.fix
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("manager, line", [
    ("apt-get", "apt-get install -y --no-install-recommends python3-minimal libpython3-stdlib mosquitto-clients"),
    ("apk", "apk add --no-cache python3 mosquitto-clients"),
    ("dnf", "dnf install -y --setopt=install_weak_deps=False --nodocs python3 mosquitto"),
    ("microdnf", "microdnf install -y --setopt=install_weak_deps=0 --nodocs python3 mosquitto"),
])
def test_the_dockerfile_installs_with_the_detected_package_manager(tmp_path, manager, line):
    text = render_dockerfile(_inv(tmp_path), _agent(), replace(DEBIAN, package_manager=manager))
    assert line in text
    assert text.count("RUN ") == 2      # the install, then agent_kit's check


def test_apt_lists_are_removed_in_the_same_layer(tmp_path):
    text = render_dockerfile(_inv(tmp_path), _agent(), DEBIAN)
    install = text[text.index("RUN apt-get update"):text.index("COPY lib/")]
    assert "rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin" in install and "apt-get clean" in install


def test_a_base_with_everything_gets_no_install_step_and_no_user_switch(tmp_path):
    text = render_dockerfile(_inv(tmp_path), _agent(), WITH_EVERYTHING)
    assert "apt-get" not in text and "USER" not in text


def test_a_non_root_base_builds_as_root(tmp_path):
    text = render_dockerfile(_inv(tmp_path), _agent(), NODE)
    assert "\nUSER root\n" in text
    assert text.index("USER root") < text.index("RUN apt-get")


# --- the main process -----------------------------------------------------------------------

def test_the_image_command_is_entrypoint_then_cmd():
    assert NODE.image_command == ("docker-entrypoint.sh", "node", "/app/agent.js")


@pytest.mark.parametrize("argv", [("bash",), ("/bin/sh",), ("python3",), ("node",)])
def test_a_bare_interactive_prompt_is_no_main_process(argv):
    assert replace(DEBIAN, cmd=argv).image_command == ()
    assert replace(DEBIAN, cmd=argv + ("-c", "serve")).image_command == argv + ("-c", "serve")


def test_main_command_wins_over_the_image_and_a_string_runs_under_sh():
    assert main_line("openclaw gateway --port 1", ("node", "x.js")) == "sh -c 'openclaw gateway --port 1'"
    assert main_line(("openclaw", "gateway"), ("node", "x.js")) == "openclaw gateway"
    assert main_line(None, ("node", "x.js")) == "node x.js"
    assert main_line(None, ("bash",)) == ""


def test_a_non_root_base_without_setpriv_is_refused_unless_it_has_no_main_process():
    assert main_user(NODE, None) == "node"
    assert main_user(replace(NODE, user=""), None) == ""
    with pytest.raises(UsageError, match="setpriv"):
        main_user(replace(NODE, setpriv=False), None)
    assert main_user(replace(NODE, setpriv=False, entrypoint=(), cmd=("bash",)), None) == ""


HOSTILE = ("node", "/app/a.js", "$(touch /tmp/pwned)", "`id`", "it's; rm -rf /", "a\nb")


def test_hostile_words_in_the_image_config_stay_words(tmp_path):
    script = render_entrypoint(_inv(tmp_path), _agent(), replace(DEBIAN, cmd=HOSTILE))
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0
    start = script.index("\nnode ") + 1
    end = script.index(" &\n", start)
    echo = "printf '%s\\n' " + script[start:end]
    out = subprocess.run(["sh", "-c", echo], capture_output=True, text=True, cwd=tmp_path).stdout
    assert out == "\n".join(HOSTILE) + "\n"
    assert not (Path("/tmp/pwned")).exists()


@pytest.mark.parametrize("base, main_command", [(DEBIAN, None), (WITH_EVERYTHING, "sleep infinity"),
                                                 (NODE, None), (NODE, ("a", "b c"))])
def test_every_rendered_supervisor_is_valid_posix_sh(tmp_path, base, main_command):
    script = render_entrypoint(_inv(tmp_path), _agent(main_command=main_command), base)
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0
    assert ("setpriv" in script) == (base is NODE)


# --- the main-exited contract ------------------------------------------------------------------

def test_main_exited_is_an_event_and_an_alert_of_the_contract():
    event, alert = contract.make_main_exited("client-x", 137)
    assert contract.validate_status(event)["event"] == "main-exited" and event["exit"] == 137
    assert contract.validate_alert(alert) == alert
    assert (alert["code"], alert["reason"], alert["level"]) == ("main-exited", "signal-9", "critical")
    assert contract.make_main_exited("client-x", 0)[1]["level"] == "warning"
    assert contract.make_main_exited("client-x", 3)[1]["reason"] == "exit-3"


@pytest.mark.parametrize("status", [-1, 256, True, "9"])
def test_main_exited_refuses_a_status_outside_0_255(status):
    with pytest.raises(contract.ContractError):
        contract.make_main_exited("client-x", status)


def test_the_plan_says_what_the_build_adds_and_what_runs():
    assert NODE.describe(None) == ("adds python3-minimal libpython3-stdlib mosquitto-clients; "
                                              "main: docker-entrypoint.sh node /app/agent.js as node")
    assert DEBIAN.describe(None).endswith("; no main process (handler only)")
    assert WITH_EVERYTHING.describe("sleep 9") == "adds only agent_kit; main: main_command"
