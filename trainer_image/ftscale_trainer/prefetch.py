"""Download one revision of a Hugging Face model into a folder: the prefetch Job's command.

    python -m ftscale_trainer.prefetch --source ORG/NAME [--revision REV] --local-dir DIR

The operator runs it once per (source, revision) a study needs, with DIR on the study's model
cache (ftscale.controller.prefetch names the folder); the model's runs start only after it
exited 0, and read DIR as a plain checkpoint folder with HF_HUB_OFFLINE=1
(docs/cluster-install.md, "Hub models and revisions").

Steps: ask the hub which commit REV is now (a moving branch such as `main` is pinned for the
rest of the download), download that commit's files with huggingface_hub.snapshot_download
(`local_dir`: real files, no cache symlinks; files already there and current are kept, so a
retry resumes), skipping weight formats the trainer never reads, then write
DIR/.ftscale-prefetch.json (source, revision, commit, files) and print what was fetched.
The token is $HF_TOKEN (from execution.hfTokenSecret); the hub is $HF_ENDPOINT (default
https://huggingface.co).

Exit codes (ftscale.api.outcomes): 0 fetched; 2 InvalidConfig — the hub refuses for good (no
such repo or revision, gated or private without a valid token), so the Job fails at once; 1
RuntimeError — the network, the hub's 5xx/429, the disk: the Job retries. The one-line reason
goes to the termination message as well.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import time

from ftscale.api import outcomes as oc

MARKER = ".ftscale-prefetch.json"
# Weight formats of other frameworks (TensorFlow, Flax, ONNX, GGUF, Core ML, Rust): the
# trainer loads PyTorch weights through transformers, and these can double a download.
FOREIGN = ("*.h5", "*.msgpack", "*.ot", "*.tflite", "*.onnx", "*.onnx_data", "onnx/*", "*.gguf",
           "coreml/*", "*.mlmodel", "flax_model*", "tf_model*", "rust_model*")
# With safetensors present, PyTorch's pickled copies of the same weights are redundant (and
# transformers prefers safetensors anyway).
PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt")
# HTTP statuses after which asking again cannot help.
FINAL_STATUSES = (400, 401, 403, 404, 410, 451)


class PrefetchError(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def ignore_patterns(files: list[str]) -> list[str]:
    """The files of the repo not to download: other frameworks' weights, and pickled PyTorch
    weights when safetensors are there (their keeping would only cost disk and time)."""
    patterns = list(FOREIGN)
    if any(fnmatch.fnmatch(f, "*.safetensors") for f in files):
        patterns += PICKLED
    return patterns


def classify(exc: BaseException) -> PrefetchError:
    """A huggingface_hub / network failure → InvalidConfig (the hub refuses for good) or
    RuntimeError (worth a retry), with a message that says what to do."""
    from huggingface_hub import errors

    if isinstance(exc, errors.GatedRepoError):
        return PrefetchError(oc.INVALID_CONFIG, "the model is gated: accept its terms on the "
                             "hub with the account whose token execution.hfTokenSecret holds "
                             f"({exc.__class__.__name__}: {_one_line(exc)})")
    if isinstance(exc, errors.RevisionNotFoundError):
        return PrefetchError(oc.INVALID_CONFIG, f"no such revision on the hub: {_one_line(exc)}")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return PrefetchError(oc.INVALID_CONFIG, "no such model on the hub, or it is private and "
                             "needs a token with access (execution.hfTokenSecret): "
                             f"{_one_line(exc)}")
    if isinstance(exc, errors.HFValidationError):
        return PrefetchError(oc.INVALID_CONFIG, f"not a hub model id: {_one_line(exc)}")
    if isinstance(exc, errors.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        reason = oc.INVALID_CONFIG if status in FINAL_STATUSES else oc.RUNTIME_ERROR
        return PrefetchError(reason, f"the hub answered {status}: {_one_line(exc)}")
    return PrefetchError(oc.RUNTIME_ERROR, f"{exc.__class__.__name__}: {_one_line(exc)}")


def _one_line(exc: BaseException) -> str:
    """The exception's text on one line (huggingface_hub's span several: status, URL, the hub's
    own words), short enough for a termination message."""
    text = " ".join(str(exc).split())
    return text[:400] if text else exc.__class__.__name__


def fetch(source: str, revision: str, local_dir: str, token: str | None, log=print) -> dict:
    """Download `source` at `revision` into `local_dir`; returns the marker document. Raises
    PrefetchError."""
    from huggingface_hub import HfApi, snapshot_download

    try:
        info = HfApi(token=token).model_info(source, revision=revision, token=token)
        if not info.sha:
            raise PrefetchError(oc.RUNTIME_ERROR, f"the hub named no commit for {source}@{revision}")
        listed = [s.rfilename for s in info.siblings or ()]
        skip = ignore_patterns(listed)
        log(f"{source}@{revision} is commit {info.sha}: {len(listed)} files, skipping "
            f"{', '.join(skip)}")
        # The commit, not the branch: every file of one download comes from the same commit
        # even if the branch moves meanwhile.
        path = snapshot_download(source, revision=info.sha, local_dir=local_dir, token=token,
                                 ignore_patterns=skip)
    except PrefetchError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is classified for the exit code
        raise classify(exc) from exc
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if d != ".cache"]  # huggingface_hub's download metadata
        for name in names:
            if name == MARKER:
                continue
            full = os.path.join(root, name)
            files.append({"path": os.path.relpath(full, path), "bytes": os.path.getsize(full)})
    files.sort(key=lambda f: f["path"])
    doc = {"source": source, "revision": revision, "commit": info.sha, "files": files,
           "fetchedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    marker = os.path.join(path, MARKER)
    with open(marker + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(doc, handle, indent=1)
    os.replace(marker + ".tmp", marker)
    for f in files:
        log(f"  {f['bytes']:>14,d}  {f['path']}")
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ftscale_trainer.prefetch",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="Hugging Face model id, org/name")
    parser.add_argument("--revision", default="main", help="branch, tag or commit (default main)")
    parser.add_argument("--local-dir", required=True, help="folder to fill (created)")
    args = parser.parse_args(argv)
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return _fail(oc.INVALID_CONFIG, "HF_HUB_OFFLINE is set: the prefetch must reach the hub")
    token = os.environ.get("HF_TOKEN") or None
    started = time.monotonic()
    try:
        doc = fetch(args.source, args.revision, args.local_dir, token)
    except PrefetchError as exc:
        return _fail(exc.reason, str(exc))
    except OSError as exc:  # the marker on a full or read-only volume
        return _fail(oc.RUNTIME_ERROR, f"{exc.__class__.__name__}: {exc}")
    total = sum(f["bytes"] for f in doc["files"])
    summary = (f"fetched {args.source}@{args.revision} (commit {doc['commit']}): "
               f"{len(doc['files'])} files, {total:,d} bytes in {time.monotonic() - started:.1f} s "
               f"→ {args.local_dir}")
    print(summary, flush=True)
    oc.write_termination_message(summary[: oc.COMPACT_LIMIT])
    return oc.EXIT_OK


def _fail(reason: str, message: str) -> int:
    line = f"{reason}: {message}"
    print(line, file=sys.stderr, flush=True)
    oc.write_termination_message(line[: oc.COMPACT_LIMIT])
    return oc.exit_code_for(reason)


if __name__ == "__main__":
    sys.exit(main())
