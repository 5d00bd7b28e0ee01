"""hatchery's invoke tasks: `invoke --list` shows them, `invoke --help TASK` their flags.

Thin on purpose: the work lives in the `hatchery` package. `install_boundary`
gives the running `invoke` the same error layer as the `hatchery` command
(exit 2 and "did you mean" for a typo, JSON errors under --json, no traceback
for a bad value or a closed pipe); see hatchery/tasks/program.py.
"""

from hatchery.tasks import namespace as ns  # noqa: F401  (invoke looks for `ns`)
from hatchery.tasks.program import install_boundary

install_boundary()
