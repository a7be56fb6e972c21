"""Names of everything the operator creates or recognises: one place, so that the Helm chart,
the docs, the tests and `kubectl get jobs -l ...` all agree.

Child names are derived from the run identity (ftscale.identity.job_name is the one spelling of
a run's Job name), never from counters or randomness: a second create of the same child is an
AlreadyExists, i.e. success. The API's group/version/kind live in ftscale.api.meta.
"""

from __future__ import annotations

import hashlib

from ftscale.api.meta import (API_VERSION, GROUP, KIND, LABEL_COMPONENT,  # noqa: F401 - re-exported
                             LABEL_STUDY, MAX_JOB_NAME, NO_PET_SIZE_LABEL, PLURAL, RUN_ID_LENGTH,
                             VERSION)
from ftscale.api.results_store import COMPONENT as COMPONENT_RESULTS  # noqa: F401 - re-exported
from ftscale.api import fit_input

# ---- labels on every child (Jobs, their pods, ConfigMaps) ----
LABEL_RUN = "ftscale.io/run"  # the run id (ftscale.identity.run_id)
LABEL_MODEL = "ftscale.io/model"
LABEL_METHOD = "ftscale.io/method"
LABEL_PET_SIZE = "ftscale.io/pet-size"  # "none" for full-model tuning
LABEL_DATA_SIZE = "ftscale.io/data-size"
LABEL_SEED = "ftscale.io/seed"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "ftscale-operator"
# Kueue reads this label from the Job; the operator passes spec.execution.queueName through.
LABEL_KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"

COMPONENT_RUN = "run"
COMPONENT_FIT = "fit"
# The Jobs that download a hub model's revision into execution.modelCache before its runs start
# (ftscale.controller.prefetch).
COMPONENT_PREFETCH = "prefetch"

# ---- annotations ----
# The run's trainer config (JSON) on the pod template; a downward-API volume turns it into the
# file the trainer's --config reads, so no per-run ConfigMap (one write fewer per run).
ANNOTATION_RUN_CONFIG = "ftscale.io/run-config"
# The fit Job's input digest: which set of results (and law options) it fitted.
ANNOTATION_FIT_DIGEST = "ftscale.io/fit-input-digest"
# Why the adaptive design chose a run (spec.design; ftscale.design.decide), on its Job.
ANNOTATION_DESIGN_REASON = "ftscale.io/design-reason"
# What a prefetch Job downloads (for people: the Job name is a digest of it).
ANNOTATION_PREFETCH_SOURCE = "ftscale.io/prefetch-source"
ANNOTATION_PREFETCH_REVISION = "ftscale.io/prefetch-revision"

# Container names (podFailurePolicy rules name them).
RUN_CONTAINER = "trainer"
FIT_CONTAINER = "fit"
PREFETCH_CONTAINER = "prefetch"

# Mount points inside run and fit pods.
CONFIG_DIR = "/etc/ftscale"
RUN_CONFIG_FILE = "run.json"
FIT_INPUT_FILE = fit_input.FILE
RESULTS_DIR = "/results"
TMP_DIR = "/tmp"
CACHE_DIR = "/cache"
SHM_DIR = "/dev/shm"
# execution.modelCache: read-write in prefetch pods, read-only in run pods.
MODEL_CACHE_DIR = "/models-cache"


def fit_input_configmap_name(study: str) -> str:
    """The ConfigMap the fit Job reads its input from (gzip-compressed JSON: the input of a
    10,000-run study is ~4 MB as text, ~0.3 MB compressed). Per-run results live in the
    sharded results ConfigMaps (ftscale.api.results_store)."""
    return f"{study}-fit-input"


def fit_job_name(study: str, input_digest: str) -> str:
    """`<study>-<10 chars>`: the same shape as run Job names (fits 63 characters), derived from
    the fit input digest so that a re-fit after a grid extension is a new, deterministic Job."""
    digest = hashlib.sha256(f"fit:{input_digest}".encode()).hexdigest()
    name = f"{study}-f{digest[: RUN_ID_LENGTH - 1]}"
    assert len(name) <= MAX_JOB_NAME
    return name


def label_value(value: object) -> str:
    """Label values: None becomes "none" (full-model tuning has no PET size)."""
    return NO_PET_SIZE_LABEL if value is None else str(value)


def prefetch_job_name(study: str, fetch_digest: str) -> str:
    """`<study>-p<9 chars>`, the shape of run Job names: one prefetch Job per distinct download
    (ftscale.controller.prefetch.fetch_digest: source, revision, cache claim, token secret), so
    a study that changes any of them gets a new Job and two models of one revision share one."""
    digest = hashlib.sha256(f"prefetch:{fetch_digest}".encode()).hexdigest()
    name = f"{study}-p{digest[: RUN_ID_LENGTH - 1]}"
    assert len(name) <= MAX_JOB_NAME
    return name
