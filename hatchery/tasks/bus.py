"""invoke bus.*: record bus traffic and audit it against the contract."""

from invoke import Collection

bus = Collection("bus")
