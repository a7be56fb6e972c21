"""The ScalingStudy API's identity and name limits: the CRD generator, the operator, the
local executor and the tests read them from here."""

from __future__ import annotations

GROUP = "ftscale.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ScalingStudy"
LIST_KIND = f"{KIND}List"
PLURAL = "scalingstudies"
SINGULAR = "scalingstudy"
SHORT_NAMES = ("sst",)
CATEGORIES = ("ftscale", "all")

# ---- name limits ----
# Run ids: 10 base-32 characters = 50 bits, collision odds in a 10^4-run study ~1e-8.
RUN_ID_LENGTH = 10
# Job names feed pod labels (job-name), which stop at 63 characters (DNS-1123 labels).
MAX_JOB_NAME = 63
# Run Job names are `<study>-<run id>`: the study name leaves room for the dash and the id.
MAX_STUDY_NAME = MAX_JOB_NAME - RUN_ID_LENGTH - 1
# Runs per study (the grid's size, checked by CEL at admission). Results are not in the
# status (ftscale.api.results_store), so the bound comes from the operator's measured scale
# (docs/operator.md, "Benchmark"), not from the size of the ScalingStudy object.
MAX_RUNS = 10_000
# Model and method names go into labels and into run Job labels' values.
MAX_MODEL_NAME = 30

# Label value (Job labels, metric labels) of a run without a PET size (full-model tuning).
NO_PET_SIZE_LABEL = "none"

# ---- labels on every child of a study (Jobs, their pods, Services, ConfigMaps) ----
LABEL_STUDY = "ftscale.io/study"  # the owning study's name: the selector of all watches
LABEL_COMPONENT = "ftscale.io/component"  # "run", "fit" or "results"
