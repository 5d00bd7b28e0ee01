"""Bytes hatch adds to an agent's base image, per base (docker image inspect sizes).

    .venv/bin/python bench/image_size_bench.py

Builds one agent image on each offline base (bootstrapping the bases when
missing), compares its size with the base's, splits the difference into the
package-install layer (python3, mosquitto-clients: only what the base lacks)
and hatch's own files (agent_kit, paho-mqtt, bus-* wrappers, supervisor), then
removes the images it built. Bases: hatchery/agent-base (Python, no
mosquitto-clients), hatchery/base (Debian minbase, no Python) and
hatchery/node-demo (Node.js, no Python); hatchery/agent-base:bookworm-clients
(Python and mosquitto-clients) too when it is on the engine.
"""

from __future__ import annotations

import json
import secrets
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hatchery.core.plan import apply_plan  # noqa: E402
from hatchery.inventory.model import DOCKER, AgentSpec, Inventory  # noqa: E402
from hatchery.runtime.docker import (  # noqa: E402
    agent_context,
    bootstrap_images,
    engine,
    inspect_base_image,
)

BASES = {"hatchery/agent-base:bookworm": "python, no mosquitto-clients",
         "hatchery/agent-base:bookworm-clients": "python and mosquitto-clients",
         "hatchery/base:bookworm": "debian minbase, no python",
         "hatchery/node-demo:bookworm": "node.js, no python"}
INSTALL_MARK = ("apt-get update", "apk add", "dnf install", "microdnf install")


def build_on(client, inv: Inventory, base_ref: str, workdir: Path) -> dict:
    agent = AgentSpec(f"hb-{secrets.token_hex(3)}-size", runtime=DOCKER, image=base_ref)
    base = inspect_base_image(client, base_ref, workdir / "cache")
    context = agent_context(replace(inv, agents={agent.name: agent}), agent, base)
    tag = f"hatchery/agent-{agent.name}:bench"
    context.write(workdir / agent.name)
    started = time.perf_counter()
    client.images.build(path=str(workdir / agent.name), tag=tag, rm=True, forcerm=True, pull=False)
    seconds = time.perf_counter() - started
    try:
        built = client.images.get(tag)
        history = built.history()
        install = sum(layer["Size"] for layer in history
                      if any(mark in (layer.get("CreatedBy") or "") for mark in INSTALL_MARK))
        base_size = client.images.get(base_ref).attrs["Size"]
        added = built.attrs["Size"] - base_size
        return {"base": base_ref, "what": BASES[base_ref], "installed": " ".join(base.needs().packages),
                "base bytes": base_size, "agent image bytes": built.attrs["Size"], "added bytes": added,
                "package layer bytes": install, "hatch files bytes": added - install,
                "build (s)": round(seconds, 1)}
    finally:
        client.images.remove(tag, force=True)


def main() -> None:
    client = engine(None)
    apply_plan("images", bootstrap_images(
        client, which=("base", "agent-base", "node-demo")))
    rows = []
    with tempfile.TemporaryDirectory(prefix="hatchery-sizebench-") as tmp:
        inv = Inventory(path=Path(tmp) / "fleet_inventory.yaml", state_dir=Path(tmp) / ".hatchery")
        for ref in BASES:
            if client.images.list(name=ref):
                rows.append(build_on(client, inv, ref, Path(tmp)))
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    (ROOT / "bench" / "results" / "image_size_bench.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
