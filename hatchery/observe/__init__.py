"""Seeing the fleet: monitor, bus health, the Docker cross-check, the Prometheus
exporter, the bus record and its audit, and verify.
"""
