"""`ftscale-train` / `python -m ftscale_trainer`: run one finetuning condition from a JSON config.

Exit codes: the table in ftscale.api.outcomes (the Job's podFailurePolicy and `ftscale run`'s
retries are derived from it; docs/run-contract.md lists it). Every failure still writes a Failed
result document with the table's reason when it can.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from dataclasses import replace

from ftscale import results
from ftscale.api import outcomes as oc

DESCRIPTION = """\
Finetune one base model with one method on one data size and report one run result.

The config is a JSON object with the fields of ftscale_trainer.config.TrainConfig, e.g.
  {"study": "demo", "model": "tiny-2", "model_source": "toy:tiny-2", "method": "lora",
   "pet_size": 4, "data_size": 800, "seed": 0, "task": "toy-en-de",
   "zero_shot": [{"name": "fr-de", "task": "toy-fr-de"}]}
Unset optimisation fields take the per-method defaults (--defaults METHOD prints them).

Outputs: the compact result JSON goes to $TERMINATION_MESSAGE_PATH (or /dev/termination-log
when it exists) and to stdout; with --output DIR, DIR/result.json (full, with loss curves),
DIR/config.json (the resolved config that ran) and DIR/checkpoint/ on preemption.
Exit codes:
""" + "\n".join(f"  {e.code:<4} {e.reason or 'Succeeded'}: {e.meaning}" for e in oc.EXIT_CODES)


def _log(message: str) -> None:
    print(f"[ftscale-train {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftscale-train", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="path of the run's JSON config (TrainConfig fields)")
    parser.add_argument("--output", help="folder for result.json, config.json and checkpoints "
                        "(overrides the config's output_dir)")
    parser.add_argument("--metrics-port", type=int,
                        help="serve Prometheus metrics on this port while training")
    parser.add_argument("--check", action="store_true",
                        help="only validate the config (exit 0 or 2), do not train")
    parser.add_argument("--defaults", metavar="METHOD", choices=("fmt", "lora", "prompt"),
                        help="print the per-method defaults for a tiny model as JSON and exit")
    parser.add_argument("--model-params", type=int,
                        help="with --defaults: the model's non-embedding parameters")
    return parser


def write_result(result: results.RunResult, output_dir: str | None) -> None:
    """Compact form to the termination message path and stdout; full form to output_dir."""
    compact = result.to_compact_json()
    problem = oc.write_termination_message(compact)
    if problem:
        _log(problem)
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        tmp = os.path.join(output_dir, "result.json.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(result.to_full_json())
        os.replace(tmp, os.path.join(output_dir, "result.json"))
    print(compact, flush=True)


def _failed(doc_or_config, reason: str, message: str) -> results.RunResult:
    """A Failed result from whatever identity is known (a TrainConfig, a dict, or nothing)."""
    from ftscale_trainer.config import TrainConfig

    if isinstance(doc_or_config, TrainConfig):
        from ftscale_trainer.train import base_result

        result = base_result(doc_or_config)
    else:
        doc = doc_or_config if isinstance(doc_or_config, dict) else {}

        def pick(key, kind, default):
            value = doc.get(key)
            return value if isinstance(value, kind) and not isinstance(value, bool) else default
        result = results.RunResult(
            study=pick("study", str, "adhoc"), run_id=pick("run_id", str, "unknown"),
            model=pick("model", str, "unknown"), method=pick("method", str, "unknown"),
            pet_size=pick("pet_size", int, None), data_size=pick("data_size", int, 0),
            seed=pick("seed", int, 0))
    return replace(result, outcome=oc.FAILED, reason=reason, message=message)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ftscale_trainer.config import ConfigError, TrainConfig, defaults_for

    if args.defaults:
        print(json.dumps(defaults_for(args.defaults, args.model_params), indent=2))
        return oc.EXIT_OK
    if not args.config:
        print("ftscale-train: --config is required (see --help)", file=sys.stderr)
        return oc.EXIT_INVALID_CONFIG
    raw: object = None
    try:
        with open(args.config, encoding="utf-8") as handle:
            raw = json.load(handle)
    except (OSError, ValueError) as exc:
        _log(f"invalid config: cannot read {args.config}: {exc}")
        write_result(_failed(None, oc.INVALID_CONFIG, f"cannot read config: {exc}"), args.output)
        return oc.EXIT_INVALID_CONFIG
    output_dir = args.output or (raw.get("output_dir") if isinstance(raw, dict) else None)
    try:
        config = TrainConfig.from_dict(raw)
    except ConfigError as exc:
        _log(f"invalid config: {exc}")
        write_result(_failed(raw, oc.INVALID_CONFIG, str(exc)), output_dir)
        return oc.EXIT_INVALID_CONFIG
    if args.check:
        _log("config is valid")
        return oc.EXIT_OK
    port = args.metrics_port if args.metrics_port is not None else config.metrics_port

    from ftscale_trainer import train  # imports torch: after the cheap checks

    try:
        result = train.run(config, output_dir, port, _log)
        reason, message, effective = None, None, result.config
    except ConfigError as exc:
        reason, message, effective = oc.INVALID_CONFIG, str(exc), None
    except train.NonFiniteLoss as exc:
        reason, message, effective = oc.NON_FINITE_LOSS, str(exc), None
    except train.Interrupted as exc:
        reason, message, effective = oc.INTERRUPTED, str(exc), None
    except Exception as exc:  # noqa: BLE001 — any crash still reports a Failed result
        traceback.print_exc()
        reason = oc.GPU_OUT_OF_MEMORY if _is_cuda_oom(exc) else oc.RUNTIME_ERROR
        message, effective = f"{type(exc).__name__}: {exc}", None
    if reason is not None:
        _log(f"failed ({reason}): {message}")
        result = _failed(config, reason, message)
    code = oc.exit_code_for(reason)
    if _is_main_process():
        if output_dir and effective:
            os.makedirs(output_dir, exist_ok=True)
            with open(os.path.join(output_dir, "config.json"), "w", encoding="utf-8") as handle:
                json.dump(effective, handle, indent=2, sort_keys=True)
        write_result(result, output_dir)
    return code


def _is_cuda_oom(exc: BaseException) -> bool:
    """CUDA out of memory: the same config on the same GPU runs out again (not retried)."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    return oom is not None and isinstance(exc, oom)


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


if __name__ == "__main__":
    sys.exit(main())
