"""The files the broker and the agents read: rendered from the inventory, pure."""
