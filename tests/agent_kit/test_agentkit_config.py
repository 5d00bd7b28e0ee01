"""Agent config: the JSON the control side writes, env overrides, clear refusals."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from agent_kit.config import load_config


def write(tmp_path, data) -> str:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_full_file_loads(tmp_path):
    path = write(tmp_path, {
        "name": "client-a", "manager": "zephyr", "broker": {"host": "mqtt-broker", "port": 1884},
        "heartbeat_interval": 300, "version_command": ["python3", "--version"],
        "reload": {"signal": "SIGHUP", "pid_file": "/run/agent.pid"},
        "max_payload": 2048, "session_expiry": 60, "alert_interval": 5, "command_timeout": 3})
    config = load_config(path, {})
    assert (config.name, config.broker_host, config.broker_port) == ("client-a", "mqtt-broker", 1884)
    assert config.version_command == ("python3", "--version")
    assert (config.reload.signal, config.reload.method) == ("HUP", "signal")
    assert config.client_id == "hatchery-agent-client-a"
    assert (config.max_payload, config.session_expiry, config.command_timeout) == (2048, 60, 3)


def test_with_a_password_the_client_id_is_derived_from_it_and_stable(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("s3cret-one\n")
    path = write(tmp_path, {"name": "client-a", "username": "client-a",
                            "password_file": str(secret)})
    tag = hmac.new(b"s3cret-one", b"mqtt-client-id", hashlib.sha256).hexdigest()[:16]
    assert load_config(path, {}).client_id == f"hatchery-agent-client-a-{tag}"
    assert load_config(path, {}).client_id == load_config(path, {}).client_id
    secret.write_text("s3cret-two\n")          # rotation: a new id
    assert load_config(path, {}).client_id != f"hatchery-agent-client-a-{tag}"


def test_defaults_for_a_minimal_file(tmp_path):
    config = load_config(write(tmp_path, {"name": "client-a"}), {})
    assert (config.manager, config.broker_port, config.heartbeat_interval) == ("zephyr", 1883, 600)
    assert config.reload is None and config.version_command is None


def test_what_the_control_side_writes_loads(tmp_path):
    # shape of hatchery.agentconf.agent_config(): reload as a dict, command as a string
    path = write(tmp_path, {"name": "client-b", "manager": "zephyr",
                            "broker": {"host": "127.0.0.1", "port": 1883},
                            "heartbeat_interval": 600, "version_command": "python3 --version",
                            "reload": {"command": "true"}})
    config = load_config(path, {})
    assert config.reload.method == "command" and config.reload.command == "true"


def test_env_overrides_the_file_and_the_env_can_stand_alone(tmp_path):
    path = write(tmp_path, {"name": "client-a", "broker": {"host": "a", "port": 1}})
    env = {"HATCHERY_AGENT_CONFIG": path, "HATCHERY_AGENT_NAME": "client-z",
           "HATCHERY_BROKER_HOST": "mqtt-broker", "HATCHERY_BROKER_PORT": "1999",
           "HATCHERY_MANAGER": "boss"}
    config = load_config(None, env)
    assert (config.name, config.broker_host, config.broker_port, config.manager) == \
        ("client-z", "mqtt-broker", 1999, "boss")
    alone = load_config(None, {"HATCHERY_AGENT_NAME": "solo"})
    assert alone.name == "solo" and alone.broker_host == "127.0.0.1"


@pytest.mark.parametrize("data, words", [
    ({}, ["'name'", "required"]),
    ({"name": "Client A"}, ["'name'", "lowercase"]),
    ({"name": "a", "manager": "z/b"}, ["'manager'"]),
    ({"name": "a", "broker": {"port": 0}}, ["'broker.port'"]),
    ({"name": "a", "broker": {"port": "1883"}}, ["'broker.port'"]),
    ({"name": "a", "broker": {"hots": "x"}}, ["'broker.hots'"]),
    ({"name": "a", "heartbeat_intervall": 5}, ["'heartbeat_intervall'"]),
    ({"name": "a", "heartbeat_interval": True}, ["'heartbeat_interval'"]),
    ({"name": "a", "version_command": ""}, ["'version_command'"]),
    ({"name": "a", "version_command": ["ok", 3]}, ["'version_command'"]),
    ({"name": "a", "reload": {"signal": "HUP"}}, ["'reload.pid_file'"]),
    ({"name": "a", "reload": {"signal": "NOPE", "pid_file": "/p"}}, ["'reload.signal'"]),
    ({"name": "a", "reload": {"signal": "KILL", "pid_file": "/p"}}, ["'reload.signal'"]),
    ({"name": "a", "reload": {"command": "x", "pid_file": "/p"}}, ["'reload'"]),
    ({"name": "a", "max_payload": 100000}, ["'max_payload'"]),
])
def test_bad_configs_name_the_file_and_the_key(tmp_path, data, words):
    path = write(tmp_path, data)
    with pytest.raises(ValueError) as caught:
        load_config(path, {})
    message = str(caught.value)
    assert message.startswith(path)
    for word in words:
        assert word in message


def test_unreadable_and_broken_files(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        load_config(str(tmp_path / "missing.json"), {})
    broken = tmp_path / "broken.json"
    broken.write_text("{name: ")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_config(str(broken), {})
    with pytest.raises(ValueError, match="HATCHERY_BROKER_PORT"):
        load_config(None, {"HATCHERY_AGENT_NAME": "a", "HATCHERY_BROKER_PORT": "x"})


def test_name_may_be_absent_for_operator_tools():
    assert load_config(None, {}, require_name=False).name == ""
