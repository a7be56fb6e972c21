"""The producers' real output, for consumers' tests (docs/operator.md, "Which facts live where").

A consumer's test never invents the shape of a document another process writes: it asks the
producer to write it. Here:

- `trainer_message(result)`: the termination message exactly as the trainer's entry point
  writes it (ftscale_trainer.__main__.write_result, through $TERMINATION_MESSAGE_PATH);
- `fit_job_message(study, spec, results)`: the fit Job's termination message, by running the
  fit Job's own entry point (ftscale.law.job.main) on the fit input that ftscale.grid builds;
- `planted_results(study, spec)`: run results for every run of a spec's grid, with test losses
  from a planted multiplicative law (so a fit of them is well determined).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import tempfile
from pathlib import Path

from ftscale import grid
from ftscale.api.outcomes import TERMINATION_MESSAGE_ENV
from ftscale.results import RunResult
from ftscale.spec import with_defaults


def _with_termination_file(write) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "termination-log"
        old = os.environ.get(TERMINATION_MESSAGE_ENV)
        os.environ[TERMINATION_MESSAGE_ENV] = str(path)
        try:
            # Both entry points also print their document (it is the pod's log); a consumer's
            # test or a benchmark's console has no use for it.
            with contextlib.redirect_stdout(io.StringIO()):
                write(Path(tmp))
        finally:
            if old is None:
                del os.environ[TERMINATION_MESSAGE_ENV]
            else:
                os.environ[TERMINATION_MESSAGE_ENV] = old
        return path.read_text(encoding="utf-8")


def trainer_message(result: RunResult) -> str:
    """What a run pod's termination message holds when the trainer reported `result`."""
    from ftscale_trainer.__main__ import write_result

    return _with_termination_file(lambda tmp: write_result(result, None))


def fit_job_message(study: str, spec: dict, results: list[RunResult]) -> str:
    """What the fit pod's termination message holds after the fit Job fitted `results`."""
    from ftscale.law.job import main

    def run(tmp: Path) -> None:
        doc = grid.fit_job_input(study, with_defaults(dict(spec)), results)
        (tmp / "input.json").write_text(json.dumps(doc))
        code = main(["--input", str(tmp / "input.json"), "--output", str(tmp / "out")])
        assert code == 0, f"the fit Job exited {code}"
    return _with_termination_file(run)


def planted_loss(model_params: float, data_size: float, method: str, seed: int) -> float:
    """A multiplicative law per method (A·X^-α·D^-β + E) with a small seed-dependent wobble."""
    a, alpha, beta, e = {"fmt": (60.0, 0.12, 0.18, 1.2), "lora": (40.0, 0.10, 0.12, 1.4),
                         "prompt": (30.0, 0.08, 0.06, 1.6)}[method]
    wobble = 0.002 * ((seed * 7 + int(data_size) + int(model_params)) % 5 - 2)
    return a * model_params ** -alpha * data_size ** -beta + e + wobble


def planted_results(study: str, spec: dict) -> list[RunResult]:
    """A Succeeded result for every run of the spec's grid (losses from planted_loss)."""
    full = with_defaults(dict(spec))
    out = []
    for run in grid.expand(full):
        k = run.key
        params = run.model.get("parameters")
        out.append(RunResult(
            study=study, run_id=run.run_id, model=k.model, method=k.method,
            pet_size=k.pet_size, data_size=k.data_size, seed=k.seed, model_params=params,
            pretrain_tokens=run.model.get("pretrainingTokens"),
            test_loss=planted_loss(params, k.data_size, k.method, k.seed),
            best_dev_loss=planted_loss(params, k.data_size, k.method, k.seed) - 0.01,
            wall_seconds=10.0))
    return out


# A study whose results the fit can determine: 3 model sizes × 4 data sizes per method.
FIT_SPEC = {
    "task": {"name": "toy-en-de"},
    "models": [{"name": f"m{i}", "source": f"toy:m{i}", "parameters": p}
               for i, p in enumerate((1000, 4000, 16000))],
    "methods": [{"name": "fmt"}, {"name": "lora", "sizes": [4]}],
    "dataSizes": [100, 200, 400, 800],
    "seeds": [0],
    "law": {"bootstrap": 20},
}


@functools.lru_cache(maxsize=None)
def example_fit_message(study: str = "demo") -> str:
    """The fit pod's termination message for FIT_SPEC's planted results (cached: a fit)."""
    return fit_job_message(study, FIT_SPEC, planted_results(study, FIT_SPEC))
