"""The prefetch Job's command (python -m ftscale_trainer.prefetch) against a loopback stand-in
of the Hugging Face hub, then the trainer reading what it fetched, offline.

The real hub (huggingface.co) is unreachable from this project's test machines, so the hub is
simulated at its edge: a small http.server thread answers exactly the requests that the
installed huggingface_hub (requirements.lock) makes to download a repo with snapshot_download —
read from its code (_snapshot_download.py, file_download.py, hf_api.py):

* GET  /api/models/{repo}/revision/{rev}  → {"id", "sha", "siblings": [{"rfilename"}]}
  (HfApi.model_info: the commit a branch or tag is now);
* GET  /api/models/{repo}/tree/{sha}?recursive=True&expand=False → [{"type": "file", "path",
  "size", "oid"}] (HfApi.list_repo_tree, one page: no Link header);
* HEAD /{repo}/resolve/{sha}/{file} → ETag, X-Repo-Commit, Content-Length (get_hf_file_metadata);
* GET  /{repo}/resolve/{sha}/{file} → the bytes.

Errors as the hub sends them: 404 with X-Error-Code RepoNotFound / RevisionNotFound, 401 with
GatedRepo for a gated repo asked without its token. No Xet headers: files come over plain HTTP.
Everything else from the hub is what huggingface_hub itself does with these answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import pytest
from conftest import PYTHONPATH, base_config, run_trainer

from ftscale.api import outcomes
from ftscale.controller import names, prefetch
from ftscale.controller.desired import desired_runs
from ftscale.controller.settings import OperatorSettings
from ftscale.controller.templates import StudyRef, run_job

TOKEN = "hf_test_token"
JSON = {"Content-Type": "application/json"}


class StandInHub:
    """repos: {repo id: {revision name: (commit sha, {file: bytes})}}; gated: repo ids that
    need `Authorization: Bearer TOKEN`. `requests` logs (method, path) of every request."""

    def __init__(self, repos, gated=()):
        self.repos, self.gated, self.requests = repos, set(gated), []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                hub.answer(self, body=True)

            def do_HEAD(self):
                hub.answer(self, body=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _revision(self, repo, rev):
        for name, (sha, files) in self.repos[repo].items():
            if rev in (name, sha):
                return sha, files
        return None

    def answer(self, handler, body):
        path = urlsplit(handler.path).path
        self.requests.append((handler.command, path))
        parts = path.strip("/").split("/")
        api = parts[0] == "api"
        if api:
            parts = parts[2:]  # api/models/...
        repo, kind, rest = "/".join(parts[:2]), parts[2] if len(parts) > 2 else "", parts[3:]
        if repo not in self.repos:
            return self._send(handler, 404, {"X-Error-Code": "RepoNotFound"},
                              b'{"error":"Repository not found"}', body)
        if repo in self.gated and handler.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(handler, 401, {"X-Error-Code": "GatedRepo"},
                              b'{"error":"Access to this model is restricted"}', body)
        found = self._revision(repo, unquote(rest[0])) if rest else None
        if found is None:
            return self._send(handler, 404, {"X-Error-Code": "RevisionNotFound"},
                              b'{"error":"Invalid rev id"}', body)
        sha, files = found
        if api and kind == "revision":
            doc = {"id": repo, "modelId": repo, "sha": sha, "private": False,
                   "siblings": [{"rfilename": f} for f in sorted(files)]}
            return self._send(handler, 200, JSON, json.dumps(doc).encode(), body)
        if api and kind == "tree":
            doc = [{"type": "file", "path": f, "size": len(data),
                    "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
                   for f, data in sorted(files.items())]
            return self._send(handler, 200, JSON, json.dumps(doc).encode(), body)
        if not api and kind == "resolve":
            name = unquote("/".join(rest[1:]))
            if name not in files:
                return self._send(handler, 404, {"X-Error-Code": "EntryNotFound"}, b"{}", body)
            data = files[name]
            return self._send(handler, 200, {
                "Content-Type": "application/octet-stream", "X-Repo-Commit": sha,
                "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}, data, body)
        return self._send(handler, 400, {}, b"{}", body)

    @staticmethod
    def _send(handler, status, headers, data, body):
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if body:
            handler.wfile.write(data)


def folder_files(folder):
    return {p: (folder / p).read_bytes() for p in os.listdir(folder) if (folder / p).is_file()}


SHA_MAIN, SHA_STEP = "a" * 40, "b" * 40
REPO = "acme/tiny-lm"


@pytest.fixture(scope="module")
def hub_repos(hf_checkpoints):
    """acme/tiny-lm: `main` is the GPT-NeoX checkpoint, `step1000` the Llama one (two revisions
    of one source, told apart by config.json), each with weights the prefetch must skip."""
    main = folder_files(hf_checkpoints["gpt_neox"])
    step = folder_files(hf_checkpoints["llama"])
    for files in (main, step):
        files["tf_model.h5"] = b"not for torch"
        files["pytorch_model.bin"] = b"a pickled copy of model.safetensors"
    return {REPO: {"main": (SHA_MAIN, main), "step1000": (SHA_STEP, step)},
            "acme/gated-lm": {"main": ("c" * 40, {"config.json": b"{}"})}}


def prefetch_command(tmp_path, hub, argv, token=None):
    """The prefetch as its Job runs it: `python` is this interpreter, /models-cache a folder."""
    cache = tmp_path / "models-cache"
    argv = [sys.executable if a == "python" else a.replace(names.MODEL_CACHE_DIR, str(cache))
            for a in argv]
    env = dict(os.environ, PYTHONPATH=PYTHONPATH, HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"),
               TERMINATION_MESSAGE_PATH=str(tmp_path / "termination-log"))
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("HF_TOKEN", None)
    if token:
        env["HF_TOKEN"] = token
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    return done, (tmp_path / "termination-log").read_text() if (tmp_path / "termination-log").exists() else ""


SPEC = {
    "task": {"name": "toy-en-de"},
    "models": [
        {"name": "tiny", "source": REPO, "parameters": 40_000, "pretrainingTokens": 2_000_000},
        {"name": "tiny-s1000", "source": REPO, "revision": "step1000", "checkpointOf": "tiny",
         "parameters": 40_000, "pretrainingTokens": 1_000_000},
    ],
    "methods": [{"name": "fmt"}],
    "dataSizes": [100],
    "execution": {"image": "trainer:1", "modelCache": {"claimName": "hf-cache"}},
}
STUDY = StudyRef(name="hub", namespace="ns", uid="uid-hub", generation=1)
SETTINGS = OperatorSettings(trainer_image="trainer:test", identity="test")


def test_prefetch_jobs_fill_the_cache_and_the_trainer_reads_it_offline(tmp_path, hub_repos, mini_world):
    runs = desired_runs(STUDY.name, SPEC)
    gate = prefetch.gate(STUDY, SPEC, runs, [], SETTINGS)
    assert len(gate.create_jobs) == 2 and not gate.allowed
    with StandInHub(hub_repos) as hub:
        for job in gate.create_jobs:
            [container] = job["spec"]["template"]["spec"]["containers"]
            done, message = prefetch_command(tmp_path, hub, container["command"])
            assert done.returncode == 0, done.stderr
            assert message.startswith("fetched acme/tiny-lm@"), message
        fetched = len(hub.requests)
        assert fetched > 0
        cache = tmp_path / "models-cache"
        for revision, sha, model_type in (("main", SHA_MAIN, "gpt_neox"), ("step1000", SHA_STEP, "llama")):
            folder = cache / "acme--tiny-lm" / revision
            assert json.loads((folder / "config.json").read_text())["model_type"] == model_type
            served = hub_repos[REPO][revision][1]
            assert (folder / "model.safetensors").read_bytes() == served["model.safetensors"]
            # other frameworks' weights and the pickled copy are not downloaded
            assert not (folder / "tf_model.h5").exists() and not (folder / "pytorch_model.bin").exists()
            marker = json.loads((folder / ".ftscale-prefetch.json").read_text())
            assert marker["commit"] == sha and marker["revision"] == revision
        assert ("GET", f"/api/models/{REPO}/revision/step1000") in hub.requests
        assert not any(path.endswith("tf_model.h5") for _, path in hub.requests)

        # A run of the step1000 model, as its Job starts it: model_source from the pod's
        # config, HF_HUB_OFFLINE=1, the hub still up — and never asked.
        run = next(r for r in runs if r.key.model == "tiny-s1000")
        template = run_job(STUDY, SPEC, run, SETTINGS)["spec"]["template"]
        pod_config = json.loads(template["metadata"]["annotations"][names.ANNOTATION_RUN_CONFIG])
        source = pod_config["model_source"].replace(names.MODEL_CACHE_DIR, str(cache))
        config = base_config(mini_world, model="tiny-s1000", model_source=source, method="fmt",
                             backend="hf", max_steps=2, eval_interval=2, dev_examples=16,
                             test_examples=16, batch_size=4, data_size=40)
        (tmp_path / "run").mkdir()
        done, result, _ = run_trainer(tmp_path / "run", config,
                                      env={"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": hub.url,
                                           "HF_HOME": str(tmp_path / "empty-hf-home")})
        assert done.returncode == 0, done.stderr[-3000:]
        assert result["outcome"] == outcomes.SUCCEEDED and result["model"] == "tiny-s1000"
        assert len(hub.requests) == fetched, hub.requests[fetched:]


@pytest.fixture()
def run_prefetch(tmp_path, hub_repos):
    def run(source, revision, *, token=None, hub_up=True):
        argv = prefetch.prefetch_command(prefetch.Fetch(source, revision))
        if not hub_up:
            with StandInHub(hub_repos) as hub:
                pass  # started and stopped: its port now refuses connections
            return prefetch_command(tmp_path, hub, argv, token)
        with StandInHub(hub_repos, gated={"acme/gated-lm"}) as hub:
            return prefetch_command(tmp_path, hub, argv, token)
    return run


@pytest.mark.parametrize("source, revision, token, code, says", [
    ("acme/gated-lm", "main", None, outcomes.EXIT_INVALID_CONFIG, "InvalidConfig: the model is gated"),
    ("acme/gated-lm", "main", TOKEN, outcomes.EXIT_OK, "fetched acme/gated-lm@main"),
    (REPO, "step999", None, outcomes.EXIT_INVALID_CONFIG, "InvalidConfig: no such revision"),
    ("acme/missing", "main", None, outcomes.EXIT_INVALID_CONFIG, "InvalidConfig: no such model"),
])
def test_prefetch_exit_codes_say_whether_a_retry_can_help(run_prefetch, source, revision, token, code, says):
    done, message = run_prefetch(source, revision, token=token)
    assert done.returncode == code, done.stderr
    assert message.startswith(says), message


def test_an_unreachable_hub_is_retriable(run_prefetch):
    done, message = run_prefetch(REPO, "main", hub_up=False)
    assert done.returncode == outcomes.EXIT_RUNTIME_ERROR, done.stderr
    assert message.startswith(outcomes.RUNTIME_ERROR), message


def test_ignore_patterns_skip_other_frameworks_and_pickles_next_to_safetensors():
    from ftscale_trainer.prefetch import ignore_patterns
    from huggingface_hub.utils import filter_repo_objects

    files = ["config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5",
             "flax_model.msgpack", "onnx/model.onnx", "tokenizer.json"]
    kept = list(filter_repo_objects(files, ignore_patterns=ignore_patterns(files)))
    assert kept == ["config.json", "model.safetensors", "tokenizer.json"]
    only_bin = ["config.json", "pytorch_model.bin"]
    assert list(filter_repo_objects(only_bin, ignore_patterns=ignore_patterns(only_bin))) == only_bin
