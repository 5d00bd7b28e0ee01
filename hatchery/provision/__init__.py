"""Inventory to changes: credentials, TLS material, DNS names, schedules, and the
plans behind broker.deploy and agent.hatch that compose them with a runtime.
"""
