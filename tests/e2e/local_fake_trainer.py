"""A stand-in for `python -m ftscale_trainer` in executor tests: same CLI (--config, --output),
same result contract, no torch. Its test loss follows a planted law,

    L = 40 · X^-0.3 · D^-0.2 + 1.5   (+ a method offset, + seed noise of ±0.002)

so that the fit and the report have something real to recover. Behaviour switches (env):
FAKE_SLEEP=seconds per run; FAKE_FAIL=<run id>[,...] exits 1 without a result;
FAKE_BAD_CONFIG=<run id> exits 2; FAKE_HANG=<run id> sleeps forever (for deadline tests);
FAKE_LOG=path appends "<run id>" per start (to count starts); FAKE_PIDS=path appends the PIDs
of the trainer and of a child it starts in its process group (a worker that outlives it unless
its group is killed); FAKE_IGNORE_TERM=1 ignores SIGTERM (only SIGKILL stops it). `main(argv)`
also stands in for ftscale_trainer.__main__.main in tests of the fork launcher.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "operator"))
from ftscale.results import RunResult  # noqa: E402

PARAMS = {"m1": 10_000, "m2": 40_000, "m3": 160_000, "m4": 640_000}
OFFSET = {"fmt": 0.0, "lora": 0.05, "prompt": 0.15}
BETA = {"fmt": 0.25, "lora": 0.15, "prompt": 0.08}


def planted_loss(model_params: int, method: str, data_size: int, seed: int) -> float:
    noise = 0.002 * math.sin(7.0 * seed + model_params % 13 + data_size % 7)
    return 40.0 * model_params ** -0.3 * data_size ** -BETA[method] + 1.5 + OFFSET[method] + noise


def main(argv: list[str] | None = None) -> int:
    """The trainer's CLI contract: --config FILE --output DIR; returns the exit code."""
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--output", required=True)
    args = p.parse_args(argv)
    cfg = json.loads(Path(args.config).read_text())
    run = cfg["run_id"]
    if os.environ.get("FAKE_LOG"):
        with open(os.environ["FAKE_LOG"], "a") as log:
            log.write(run + "\n")
    print(f"fake trainer: {run} {cfg['model']} {cfg['method']} D={cfg['data_size']}", flush=True)
    if os.environ.get("FAKE_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.environ.get("FAKE_PIDS"):
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"],
                                  stdin=subprocess.DEVNULL)  # same process group
        with open(os.environ["FAKE_PIDS"], "a") as pids:
            pids.write(f"{os.getpid()} {worker.pid}\n")
    if run in os.environ.get("FAKE_BAD_CONFIG", "").split(","):
        print("config error: bad", file=sys.stderr)
        return 2
    if run in os.environ.get("FAKE_HANG", "").split(","):
        time.sleep(3600)
    time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
    if run in os.environ.get("FAKE_FAIL", "").split(","):
        print("Traceback: boom", file=sys.stderr)
        return 1
    x = cfg.get("model_params") or PARAMS[cfg["model"]]
    loss = planted_loss(x, cfg["method"], cfg["data_size"], cfg["seed"])
    result = RunResult(study=cfg["study"], run_id=run, model=cfg["model"], method=cfg["method"],
                       pet_size=cfg["pet_size"], data_size=cfg["data_size"], seed=cfg["seed"],
                       model_params=x, pretrain_tokens=1_000_000, test_loss=loss,
                       best_dev_loss=loss + 0.01, test_ppl=math.exp(loss), steps=10,
                       generation={"bleu": 30.0 - 5 * loss}, device="cpu", config=cfg)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(result.to_full_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
