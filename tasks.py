"""hatchery's invoke tasks: `invoke --list` shows them, `invoke --help TASK` their flags.

Thin on purpose: the work lives in the `hatchery` package.
"""

from hatchery.tasks import namespace as ns  # noqa: F401  (invoke looks for `ns`)
