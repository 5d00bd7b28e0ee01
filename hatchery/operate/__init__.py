"""Acting on a running fleet from what the bus says: fleet.rollout and fleet.heal.

Above ``observe`` and ``bus`` (it reads the fleet through them) and below ``tasks``.
"""
