"""The inventory: the fleet described in one YAML file, validated into typed objects.

``model`` holds the typed objects; ``load`` reads and validates a file (every
problem with file:line and its fix); ``enrol`` adds an agent to the file,
keeping comments.
"""
