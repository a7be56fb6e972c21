"""Resumable checkpoints: tensors in safetensors, everything else in JSON, committed atomically.

A checkpoint folder (`<output>/checkpoint/`) holds

* `tensors-<generation>.safetensors` — the trainable weights (`model/<name>`), the optimizer's
  per-parameter tensors (`optimizer/<i>/<name>`, AdamW's moments and step) and the best-dev
  weights so far (`best/<name>`);
* `state.json` — the commit record: format version, config digest, loop progress (step, tokens,
  curves, best dev loss, wall time), RNG states as integer lists, the optimizer's non-tensor
  state (param groups: learning rate, betas, …), and the name and byte size of the tensor file.

Nothing is unpickled: a checkpoint lives on a shared volume, and `torch.load(weights_only=False)`
of a file anyone with write access can replace runs their code in the trainer.

Writing (`save`): the tensor file under a new generation's name, fsync'd; then `state.json`
through a temporary file, fsync, `os.replace` and an fsync of the folder; only then are older
tensor files removed. A crash at any point leaves either the previous commit or the new one,
whole. Reading (`read`) checks everything before anything is applied: a file that cannot be
parsed, a tensor file of the wrong size or header, or tensors that do not fit the model raise
`CorruptCheckpoint`; the trainer then logs why, moves the folder aside and starts at step 0
(docs/trainer.md, "Preemption").
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from typing import Any

import torch

FORMAT = "ftscale-checkpoint/v1"
STATE_FILE = "state.json"
LEGACY_FILE = "state.pt"  # the pickled format before v1: never read, removed on the next save
CORRUPT_SUFFIX = ".corrupt"  # <folder>.corrupt: the last checkpoint that failed to load


class CorruptCheckpoint(ValueError):
    """A checkpoint exists but cannot be used as written (truncated, unparsable, or not this
    model's); retrying the load cannot help."""


@dataclass
class Checkpoint:
    """A checkpoint read back and checked, not yet applied."""

    digest: str  # the config digest it was written under
    progress: dict[str, Any]  # train.Progress fields
    model: dict[str, torch.Tensor]  # trainable tensors by parameter name
    optimizer: dict[str, Any]  # a torch optimizer state_dict
    best: dict[str, torch.Tensor] | None  # best-dev trainable tensors, None before any eval
    rng: dict[str, Any]  # {"torch": [...bytes], "cuda": [[...bytes] per device]}


# ---- RNG -----------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """This process's torch RNG states (CPU, and every CUDA device when there are any) as
    integer lists. Dropout draws from them; restoring them keeps a resumed run exact."""
    state: dict[str, Any] = {"torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if state.get("cuda") and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in cuda])


# ---- the optimizer's state_dict, split into tensors and JSON -------------------------------------
def split_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, JSON-able rest) of an optimizer state_dict. Its per-parameter keys (ints for a
    plain optimizer, parameter names under torch.distributed.checkpoint) are kept in order in
    the JSON; tensor names use their position: `optimizer/<i>/<field>`."""
    tensors: dict[str, torch.Tensor] = {}
    keys, scalars = [], []
    for i, (key, fields) in enumerate(state_dict["state"].items()):
        keys.append(key)
        plain = {}
        for name, value in fields.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{i}/{name}"] = _cpu(value)
            else:
                plain[name] = value
        scalars.append(plain)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
              for g in state_dict["param_groups"]]
    return tensors, {"keys": keys, "scalars": scalars, "param_groups": groups}


def join_optimizer(tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> dict[str, Any]:
    """The optimizer state_dict `split_optimizer` took apart. Raises CorruptCheckpoint when the
    two halves do not belong together."""
    try:
        keys, scalars, groups = doc["keys"], doc["scalars"], doc["param_groups"]
        state: dict[Any, dict[str, Any]] = {}
        for i, key in enumerate(keys):
            state[key] = dict(scalars[i])
        for name, value in tensors.items():
            _, index, field = name.split("/", 2)
            state[keys[int(index)]][field] = value
        # JSON has no tuples; torch's optimizers keep betas as one (and compare with it).
        groups = [{k: (tuple(v) if isinstance(v, list) and k != "params" else v)
                   for k, v in g.items()} for g in groups]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise CorruptCheckpoint(f"optimizer state does not match its tensors ({exc!r})") from None
    return {"state": state, "param_groups": groups}


# ---- write ---------------------------------------------------------------------------------------
def save(folder: str, digest: str, progress: dict[str, Any], model: dict[str, torch.Tensor],
         optimizer_state: dict[str, Any], best: dict[str, torch.Tensor] | None,
         rng: dict[str, Any]) -> str:
    """Commit a checkpoint to `folder` (created if needed); returns the tensor file's path.
    `model` and `best` are CPU tensors by parameter name; `optimizer_state` a state_dict."""
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    previous = _read_json(os.path.join(folder, STATE_FILE), quiet=True)
    generation = (previous.get("generation", 0) + 1) if isinstance(previous, dict) else 1
    opt_tensors, opt_doc = split_optimizer(optimizer_state)
    tensors = {f"model/{k}": _cpu(v) for k, v in model.items()}
    tensors.update(opt_tensors)
    if best is not None:
        tensors.update({f"best/{k}": _cpu(v) for k, v in best.items()})
    name = f"tensors-{generation:06d}.safetensors"
    path = os.path.join(folder, name)
    save_file(tensors, path, metadata={"format": FORMAT})
    _fsync_file(path)
    doc = {
        "format": FORMAT, "generation": generation, "config_digest": digest,
        "tensors": name, "tensor_bytes": os.path.getsize(path), "has_best": best is not None,
        "progress": progress, "optimizer": opt_doc, "rng": rng,
    }
    _write_json_atomically(os.path.join(folder, STATE_FILE), doc)
    for other in os.listdir(folder):  # older generations, stray files of an interrupted write
        if other != name and (other.startswith("tensors-") or other == LEGACY_FILE):
            os.remove(os.path.join(folder, other))
    return path


def _cpu(tensor: torch.Tensor) -> torch.Tensor:
    # safetensors stores contiguous, unshared storage; a clone on the CPU is both
    return tensor.detach().to("cpu").contiguous().clone()


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: str) -> None:
    # A rename is durable only once the folder's entry is on disk too.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomically(path: str, doc: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(doc, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path) or ".")


# ---- read ----------------------------------------------------------------------------------------
def exists(folder: str) -> bool:
    """Whether `folder` holds a committed checkpoint (it may still turn out corrupt)."""
    return os.path.exists(os.path.join(folder, STATE_FILE))


def legacy(folder: str) -> bool:
    """Whether `folder` holds only a checkpoint in the old pickled format (not read)."""
    return not exists(folder) and os.path.exists(os.path.join(folder, LEGACY_FILE))


def read_digest(folder: str) -> str:
    """The config digest a checkpoint was written under. Raises CorruptCheckpoint."""
    doc = _read_json(os.path.join(folder, STATE_FILE))
    digest = doc.get("config_digest")
    if not isinstance(digest, str):
        raise CorruptCheckpoint(f"{STATE_FILE} has no config_digest")
    return digest


def read(folder: str, expected: dict[str, torch.Tensor] | None = None) -> Checkpoint:
    """Read and check a committed checkpoint.

    `expected`: the model's trainable tensors by name (their shapes and dtypes are compared;
    None skips the check). Raises CorruptCheckpoint for anything that makes the checkpoint
    unusable: unreadable or unparsable files, a wrong format, a tensor file of another size
    than recorded, missing or extra tensors, shapes that do not fit.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    doc = _read_json(os.path.join(folder, STATE_FILE))
    if doc.get("format") != FORMAT:
        raise CorruptCheckpoint(f"{STATE_FILE} has format {doc.get('format')!r}, "
                                f"this trainer reads {FORMAT!r}")
    try:
        name, size, has_best = doc["tensors"], doc["tensor_bytes"], doc["has_best"]
        progress, opt_doc, rng, digest = doc["progress"], doc["optimizer"], doc["rng"], doc["config_digest"]
    except KeyError as exc:
        raise CorruptCheckpoint(f"{STATE_FILE} lacks {exc}") from None
    if not isinstance(name, str) or "/" in name or not isinstance(progress, dict):
        raise CorruptCheckpoint(f"{STATE_FILE} is malformed")
    path = os.path.join(folder, name)
    try:
        actual = os.path.getsize(path)
    except OSError as exc:
        raise CorruptCheckpoint(f"cannot read {name}: {exc.strerror or exc}") from None
    if actual != size:
        raise CorruptCheckpoint(f"{name} has {actual} bytes, {size} were written")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CorruptCheckpoint(f"{name} is not a readable safetensors file ({exc})") from None
    groups: dict[str, dict[str, torch.Tensor]] = {"model": {}, "optimizer": {}, "best": {}}
    for key, value in tensors.items():
        head, _, rest = key.partition("/")
        if head not in groups or not rest:
            raise CorruptCheckpoint(f"{name} holds an unexpected tensor {key!r}")
        groups[head][rest] = value
    if expected is not None:
        check_fits(groups["model"], expected, "model")
        if has_best:
            check_fits(groups["best"], expected, "best")
    if not isinstance(rng, dict) or not isinstance(rng.get("torch"), list):
        raise CorruptCheckpoint(f"{STATE_FILE} has no torch RNG state")
    optimizer = join_optimizer({f"optimizer/{k}": v for k, v in groups["optimizer"].items()}, opt_doc)
    return Checkpoint(digest=digest, progress=progress, model=groups["model"], optimizer=optimizer,
                      best=groups["best"] if has_best else None, rng=rng)


def check_fits(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], what: str) -> None:
    """Raise CorruptCheckpoint unless `found` has exactly `expected`'s names, shapes and dtypes."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        raise CorruptCheckpoint(f"{what} tensors do not match the model: missing {missing[:3]}"
                                f"{'…' if len(missing) > 3 else ''}, unexpected {extra[:3]}"
                                f"{'…' if len(extra) > 3 else ''}")
    for key, ref in expected.items():
        got = found[key]
        if got.shape != ref.shape or got.dtype != ref.dtype:
            raise CorruptCheckpoint(f"{what} tensor {key} is {tuple(got.shape)} {got.dtype}, the "
                                    f"model's is {tuple(ref.shape)} {ref.dtype}")


def check_optimizer_fits(optimizer_state: dict[str, Any], params_by_key: dict[Any, torch.Tensor]) -> None:
    """Raise CorruptCheckpoint unless every per-parameter optimizer tensor that is not a scalar
    has its parameter's shape (AdamW's moments do) and every key names a parameter."""
    for key, fields in optimizer_state["state"].items():
        if key not in params_by_key:
            raise CorruptCheckpoint(f"optimizer state for an unknown parameter {key!r}")
        shape = params_by_key[key].shape
        for field, value in fields.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != shape:
                raise CorruptCheckpoint(f"optimizer {field} for parameter {key!r} is "
                                        f"{tuple(value.shape)}, the parameter is {tuple(shape)}")


def _read_json(path: str, quiet: bool = False) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            doc = json.load(handle)
    except (OSError, ValueError) as exc:
        if quiet:
            return None
        raise CorruptCheckpoint(f"cannot parse {os.path.basename(path)}: {exc}") from None
    if not isinstance(doc, dict):
        if quiet:
            return None
        raise CorruptCheckpoint(f"{os.path.basename(path)} is not a JSON object")
    return doc


# ---- a checkpoint that failed to load ------------------------------------------------------------
def move_aside(folder: str) -> str:
    """Rename `folder` to `<folder>.corrupt` (replacing an older one, so at most one is kept on
    the volume) for whoever wants to see what went wrong; returns the new path."""
    target = folder.rstrip(os.sep) + CORRUPT_SUFFIX
    if os.path.exists(target):
        shutil.rmtree(target, ignore_errors=True)
    os.replace(folder, target)
    _fsync_dir(os.path.dirname(os.path.abspath(folder)))
    return target
