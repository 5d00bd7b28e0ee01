"""Several hosts: hatch time per host (cold and warm) and the TLS round trip next to plain.

    .venv/bin/python bench/hosts_bench.py [--samples 200]

Run as root on Linux with Docker: it makes three hosts on this machine (network
namespaces with their own dockerd and sshd, see tests/hosts/netns.py), puts the
broker on h1 and one agent on each of h2 and h3, and removes everything it made.
Cold = the host's engine has no image at all (the base image arrives by docker save |
load over SSH, then the agent image is built there); warm = hatch again, nothing
to do. The round trips are QoS 1 publish-to-self from the control side to the
broker on h1 across the namespaces' bridge, plain and TLS alternating in one run.
Figures go to bench/results/hosts_bench.json.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "hosts"))

from netns import MultiHost  # noqa: E402

from hatchery.bus.connection import bus_for  # noqa: E402
from hatchery.core.hosts import apply_per_host  # noqa: E402
from hatchery.core.plan import apply_plan  # noqa: E402
from hatchery.inventory.load import load_inventory  # noqa: E402
from hatchery.provision.operations import deploy_plan, hatch_plans  # noqa: E402
from hatchery.runtime.docker import bootstrap_images, engine, forget_connections  # noqa: E402

AGENT_IMAGE = "hatchery/agent-base:bookworm-clients"


def inventory(multi: MultiHost, folder: Path) -> Path:
    hosts = "".join(f"  {h.name}: {{docker_host: \"{h.docker_host}\", remote_dir: \"{h.remote_dir}\"}}\n"
                    for h in multi.hosts)
    path = folder / "fleet_inventory.yaml"
    # allow_plain: only so that plain and TLS can be compared across the same network
    path.write_text("hosts:\n" + hosts + textwrap.dedent(f"""\
        broker: {{on_host: h1, bind: 0.0.0.0, tls: true, allow_plain: true,
                  image: "hatchery/mosquitto:2.0.11", network: hty-bench-net,
                  container: hty-bench-broker, container_prefix: hty-bench-}}
        agents:
          b2: {{host: h2, image: "{AGENT_IMAGE}"}}
          b3: {{host: h3, image: "{AGENT_IMAGE}"}}
        """))
    return path


def hatch(inv) -> dict:
    common, per_host = hatch_plans(inv, list(inv.agents.values()))
    report = apply_per_host("agent.hatch", common, per_host)
    if not report.ok:
        raise SystemExit(f"hatch failed: {[(r.item, r.error) for r in report.failed]}")
    copies = {r.item: float(m.group(1)) for r in report.results
              for m in [re.search(r"\(save \| load\) in ([\d.]+)s", r.detail)] if m}
    return {host: {"seconds": s["seconds"], "changed": s["changed"]} for host, s in report.hosts.items()} | \
        ({"image copies (s)": copies} if copies else {})


def round_trips(inv, samples: int) -> dict:
    plain, secure = [], []
    with bus_for(inv, tls=False) as p, bus_for(inv) as t:
        for _ in range(20):                 # warm both connections
            p.ping(), t.ping()
        for _ in range(samples):            # alternate, so both see the same machine load
            plain.append(p.ping())
            secure.append(t.ping())
    return {name: {"p50_ms": round(statistics.median(v), 3),
                   "p90_ms": round(statistics.quantiles(v, n=10)[-1], 3), "samples": len(v)}
            for name, v in (("plain", plain), ("tls", secure))}


def main() -> None:
    samples = int(sys.argv[sys.argv.index("--samples") + 1]) if "--samples" in sys.argv else 200
    report = apply_plan("images", bootstrap_images(engine(None), which=("broker", "agent-clients")))
    assert report.ok, [r.error for r in report.failed]
    multi = MultiHost(count=3)
    figures: dict = {"machine": f"{os.cpu_count()} cores, shared"}
    folder = tempfile.TemporaryDirectory(prefix="hty-bench-")
    try:
        multi.start()
        os.environ.update(multi.env())
        os.environ.pop("SSH_AUTH_SOCK", None)
        inv = load_inventory(inventory(multi, Path(folder.name)), env={})
        started = time.monotonic()
        deployed = apply_plan("broker.deploy", deploy_plan(inv))
        assert deployed.ok, [(r.item, r.error) for r in deployed.failed]
        figures["broker deploy on h1, cold (s)"] = round(time.monotonic() - started, 1)
        figures["hatch cold"] = hatch(inv)
        figures["hatch warm"] = hatch(inv)
        time.sleep(1)
        figures["round trip control -> h1"] = round_trips(inv, samples)
    finally:
        forget_connections()
        multi.close()
        folder.cleanup()
    print(json.dumps(figures, indent=2))
    out = ROOT / "bench" / "results" / "hosts_bench.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
