"""Register the broker's DNS name through the inventory's provider (if any)."""

from __future__ import annotations

from hatchery.core.checks import Check
from hatchery.inventory.model import Inventory


def _provider(inv: Inventory):
    if not inv.broker.dns_provider:
        return None
    from hatchery.provision.dns_providers import make_provider
    return make_provider(inv.broker.dns_provider, **inv.broker.dns_options)


def _address(inv: Inventory) -> str:
    return inv.broker.dns_options.get("address", inv.broker.host)


def dns_register_plan(inv: Inventory) -> list:
    provider = _provider(inv)
    return [provider.plan_register(inv.broker.dns_name, _address(inv))] if provider else []


def dns_unregister_plan(inv: Inventory) -> list:
    provider = _provider(inv)
    return [provider.plan_unregister(inv.broker.dns_name)] if provider else []


def dns_checks(inv: Inventory) -> list:
    """The broker name resolves through the provider to the broker's address."""
    provider = _provider(inv)
    if provider is None:
        return []
    name, want = inv.broker.dns_name, _address(inv)
    got = provider.lookup(name)
    detail = f"{name} -> {got}" if got else f"{name} does not resolve"
    return [Check(f"DNS name {name} ({inv.broker.dns_provider})", got == want, detail)]
