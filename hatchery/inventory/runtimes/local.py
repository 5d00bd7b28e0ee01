"""The local runtime's inventory keys: none of its own; everything runs on this machine."""

from hatchery.inventory.runtimes.declaration import RuntimeKeys

DECLARATION = RuntimeKeys(
    name="local",
    implementation="hatchery.runtime.local:LocalRuntime",
    pin_fix="remove host:, or set runtime: docker to run it on that host's engine",
)
