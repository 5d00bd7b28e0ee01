"""The `hatchery` console command: the same tasks as `invoke`, from anywhere."""

from invoke import Program

from agent_kit import __version__
from hatchery.tasks import namespace

program = Program(namespace=namespace, version=__version__, name="hatchery", binary="hatchery")


def main() -> None:
    program.run()
