"""`python -m ftscale_trainer.launch torchrun ...`: run a multi-process launcher and exit with the
exit code of the run's outcome.

torchrun exits 1 whenever a worker fails, whatever the worker's own code — so a run on several
GPUs whose loss went NaN (trainer exit 3) would look retriable to the Job's podFailurePolicy
(ftscale.api.outcomes), which fails the Job at once only on the non-retriable codes. Rank 0
writes the run's result to the termination-message path before it exits; this wrapper reads it
back and exits with the table's code for its reason. SIGTERM and SIGINT are passed on to the
launcher, which forwards them to every rank (docs/trainer.md, "Several processes").
"""

from __future__ import annotations

import signal
import subprocess
import sys

from ftscale import results
from ftscale.api import outcomes


def outcome_exit_code(launcher_code: int) -> int:
    """The exit code for a launcher that exited `launcher_code`: the run result's reason when
    rank 0 wrote a Failed result, else the launcher's own code."""
    if launcher_code == 0:
        return 0
    path = outcomes.termination_path()
    try:
        result = results.parse_result(path.read_text(encoding="utf-8")) if path else None
    except (OSError, results.ResultError):
        result = None
    if result is not None and not result.ok and result.reason:
        return outcomes.exit_code_for(result.reason)
    return launcher_code


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: python -m ftscale_trainer.launch LAUNCHER [ARGS...]", file=sys.stderr)
        return outcomes.EXIT_INVALID_CONFIG
    child = subprocess.Popen(argv)

    def forward(signum, _frame):
        child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    code = child.wait()
    if code < 0:  # killed by a signal: report it as a shell would (128 + signal)
        code = 128 - code
    return outcome_exit_code(code)


if __name__ == "__main__":
    sys.exit(main())
