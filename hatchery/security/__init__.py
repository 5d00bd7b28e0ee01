"""Security building blocks: credentials, topic ACLs and TLS material.

Each module is small and mostly pure: it renders text or computes a plan from
plain arguments. Writing files, signalling the broker and printing belong to
the callers (the tasks), so everything here is testable without a fleet.
"""
