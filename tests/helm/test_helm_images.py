"""The two Dockerfiles, checked without a container engine: bases, pinned dependencies, a
non-root user matching what the pods run as, read-only-root friendly settings, COPY sources
that exist and are not excluded by .dockerignore, and entry points that exist in the code —
including the commands the operator puts into run and fit Jobs. Plus `make images`' script,
driven by stand-in engines."""

from __future__ import annotations

import fnmatch
import importlib
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from helm_support import CHART, REPO

from ftscale.controller import templates
from ftscale.controller.settings import OperatorSettings

TRAINER = REPO / "trainer_image" / "Dockerfile"
OPERATOR = REPO / "operator" / "Dockerfile"
IMAGES_SH = REPO / "scripts" / "images.sh"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    out, buffer = [], ""
    for line in dockerfile.read_text().splitlines():
        if line.strip().startswith("#") and not buffer:
            continue
        if line.strip().startswith("#"):
            continue  # a comment inside a continued RUN
        buffer += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            if buffer.strip():
                word, _, rest = buffer.strip().partition(" ")
                out.append((word.upper(), rest.strip()))
            buffer = ""
    return out


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    return steps[last_from:]


def arg_default(dockerfile: Path, name: str) -> str:
    for kind, rest in instructions(dockerfile):
        if kind == "ARG" and rest.startswith(f"{name}="):
            return rest.split("=", 1)[1]
    raise AssertionError(f"{dockerfile}: no ARG {name}=")


def base_image(dockerfile: Path) -> str:
    kind, rest = final_stage(dockerfile)[0]
    image = rest.split()[0]
    return re.sub(r"\$\{(\w+)\}", lambda m: arg_default(dockerfile, m.group(1)), image)


def exec_form(rest: str) -> list[str]:
    return yaml.safe_load(rest)  # ["a", "b"] is a YAML flow sequence


def user_of(dockerfile: Path) -> tuple[int, int]:
    users = [rest for kind, rest in final_stage(dockerfile) if kind == "USER"]
    assert users, f"{dockerfile.name}: the final stage sets no USER (it would run as root)"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), f"{dockerfile.name}: USER {users[-1]}: use a numeric UID so runAsNonRoot can verify it"
    return int(uid), int(gid or uid)


def env_of(dockerfile: Path) -> dict[str, str]:
    env = {}
    for kind, rest in final_stage(dockerfile):
        if kind == "ENV":
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [l.strip() for l in lines if l.strip() and not l.strip().startswith("#")]


def ignored(path: str) -> bool:
    for pattern in dockerignore_patterns():
        pattern = pattern.rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/") or \
                fnmatch.fnmatch(path, pattern.replace("**/", "")) or \
                any(fnmatch.fnmatch(part, pattern.replace("**/", "")) for part in path.split("/")):
            return True
    return False


def console_scripts() -> dict[str, str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def assert_console_script_resolves(name: str) -> None:
    target = console_scripts()[name]
    module, _, function = target.partition(":")
    assert callable(getattr(importlib.import_module(module), function)), target


def assert_module_runs_with_dash_m(module: str) -> None:
    """`python -m module` needs module.py or module/__main__.py in a source root."""
    rel = module.replace(".", "/")
    candidates = [REPO / root / f"{rel}.py" for root in ("operator", "trainer_image")] + \
                 [REPO / root / rel / "__main__.py" for root in ("operator", "trainer_image")]
    assert any(c.is_file() for c in candidates), f"`python -m {module}` has nothing to run: {candidates}"


@pytest.mark.parametrize("dockerfile", [TRAINER, OPERATOR], ids=["trainer", "operator"])
def test_copy_sources_exist_and_are_in_the_build_context(dockerfile):
    for kind, rest in instructions(dockerfile):
        if kind != "COPY" or "--from=" in rest:
            continue
        sources = [s for s in rest.split()[:-1] if not s.startswith("--")]
        for source in sources:
            assert (REPO / source).exists(), f"{dockerfile.name}: COPY {source}: no such path"
            assert not ignored(source), f"{dockerfile.name}: COPY {source} is excluded by .dockerignore"


@pytest.mark.parametrize("dockerfile", [TRAINER, OPERATOR], ids=["trainer", "operator"])
def test_images_suit_a_read_only_root_filesystem(dockerfile):
    env = env_of(dockerfile)
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("HOME") == "/tmp"  # the emptyDir every pod mounts
    assert "/opt/ftscale/bin" in env.get("PATH", "")


def test_trainer_image_is_a_cuda_runtime_with_the_pinned_lock():
    base = base_image(TRAINER)
    assert re.fullmatch(r"nvidia/cuda:[0-9.]+-(cudnn-)?runtime-ubuntu[0-9.]+", base), base
    runs = " ".join(rest for kind, rest in instructions(TRAINER) if kind == "RUN")
    assert "pip install --require-virtualenv -r /tmp/requirements.lock" in runs
    assert "--no-deps" in runs  # the project adds no unpinned dependency
    lock = [l for l in (REPO / "requirements.lock").read_text().splitlines() if l and not l.startswith("#")]
    unpinned = [l for l in lock if "==" not in l]
    assert not unpinned, f"requirements.lock has unpinned lines: {unpinned}"
    assert any(l.startswith("torch==") for l in lock)


def test_trainer_image_user_is_the_one_run_pods_run_as():
    uid, gid = user_of(TRAINER)
    assert uid != 0 and uid == OperatorSettings().run_as_user and gid == uid


def test_operator_image_is_torch_free_and_runs_as_the_charts_user():
    assert "cuda" not in base_image(OPERATOR)
    runs = " ".join(rest for kind, rest in instructions(OPERATOR) if kind == "RUN")
    assert "-c /tmp/requirements.lock" in runs  # the lock constrains, the base extra decides
    assert "[trainer]" not in runs
    uid, _ = user_of(OPERATOR)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert uid != 0 and uid == values["operator"]["podSecurityContext"]["runAsUser"]


def test_entry_points_named_by_the_images_exist():
    trainer_entry = [exec_form(rest) for kind, rest in final_stage(TRAINER) if kind == "ENTRYPOINT"][-1]
    assert trainer_entry == ["ftscale-train"]
    assert_console_script_resolves("ftscale-train")
    operator_entry = [exec_form(rest) for kind, rest in final_stage(OPERATOR) if kind == "ENTRYPOINT"][-1]
    assert operator_entry[0] == "ftscale" and operator_entry[1:] == ["operator"]
    assert_console_script_resolves("ftscale")
    from ftscale import cli
    assert "operator" in [name for name, _, _ in cli.COMMANDS]
    command = importlib.import_module("ftscale.commands.operator")
    assert callable(command.main) and callable(command.add_arguments) and command.DESCRIPTION


def test_entry_points_the_operators_jobs_run_exist():
    """The run and fit Jobs run `python -m <module>` in the trainer image: those modules exist."""
    study = templates.StudyRef(name="s", namespace="n", uid="u")
    settings = OperatorSettings(trainer_image="ftscale/trainer:test")
    run = templates.DesiredRun(key=_any_run_key(), config={})
    run_cmd = templates.run_job(study, {}, run, settings)["spec"]["template"]["spec"]["containers"][0]["command"]
    fit_cmd = templates.fit_job(study, {}, "digest", settings)["spec"]["template"]["spec"]["containers"][0]["command"]
    for command in (run_cmd, fit_cmd):
        assert command[:2] == ["python", "-m"], command
        assert_module_runs_with_dash_m(command[2])
    assert run_cmd[2] == "ftscale_trainer"


def _any_run_key():
    from ftscale.identity import RunKey
    return RunKey(model="tiny-2", method="lora", pet_size=4, data_size=200, seed=0)


# ------------------------------------------------------------------------------- images.sh
def _fake_engine(bin_dir: Path, name: str, info_ok: bool, log: Path) -> None:
    script = bin_dir / name
    script.write_text(f"""#!/bin/sh
echo "{name} $*" >> {log}
if [ "$1" = info ]; then exit {0 if info_ok else 1}; fi
exit 0
""")
    script.chmod(0o755)


def _run_images(bin_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("ENGINE", "ONLY", "PUSH", "REGISTRY")}
    return subprocess.run([str(IMAGES_SH)], capture_output=True, text=True, cwd=REPO,
                          env={**base, "PATH": f"{bin_dir}:/usr/bin:/bin", **env})


def test_images_script_explains_and_fails_without_a_working_engine(tmp_path):
    log = tmp_path / "calls.log"
    _fake_engine(tmp_path, "docker", info_ok=False, log=log)  # a client without a daemon
    out = _run_images(tmp_path)
    assert out.returncode == 1
    assert "no working container engine" in out.stderr
    assert "docker build -f trainer_image/Dockerfile" in out.stderr
    assert "build" not in log.read_text().replace("docker info", "")


def test_images_script_builds_both_images_with_the_project_version(tmp_path):
    log = tmp_path / "calls.log"
    _fake_engine(tmp_path, "podman", info_ok=True, log=log)
    out = _run_images(tmp_path, REGISTRY="registry.example/ml", PUSH="1")
    assert out.returncode == 0, out.stderr
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    calls = log.read_text()
    for name, dockerfile in (("operator", "operator/Dockerfile"), ("trainer", "trainer_image/Dockerfile")):
        ref = f"registry.example/ml/ftscale/{name}:{version}"
        assert f"podman build -f {dockerfile} -t {ref} --build-arg FTSCALE_VERSION={version} ." in calls
        assert f"podman push {ref}" in calls
    # the chart's default repositories are the names the script builds
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["operator"]["image"]["repository"] == "ftscale/operator"
    assert values["trainer"]["image"]["repository"] == "ftscale/trainer"
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == version
