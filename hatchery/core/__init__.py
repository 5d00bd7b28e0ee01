"""What every layer uses: plan/apply, results, rendering, the state directory,
processes and ports. Nothing here knows about MQTT, Docker or the inventory's YAML.
"""
