# ftscale — the two commands are `make demo` and `make test` (README).
# Everything below installs what it needs on first use and caches it in ~/.cache/ftscale.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export FTSCALE_CACHE ?= $(HOME)/.cache/ftscale
export PYTHONPATH := $(CURDIR)/operator:$(CURDIR)/trainer_image
PY = $(shell scripts/python-env.sh)
PYTEST_ARGS ?=

.PHONY: help venv demo test test-fast bench-fit bench-model-selection bench-adaptive bench-trainer bench-trainer-gpu bench-operator bench-chaos toy cluster-build cluster-up cluster-down cluster-demo images

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

venv:  ## create/update the cached Python environment
	@scripts/python-env.sh

demo:  ## run the demo scaling study on CPU, end to end, and print the report's path
	@scripts/demo.sh

test:  ## run the whole test suite (unit, integration on a real control plane, e2e)
	@scripts/test.sh $(PYTEST_ARGS)

test-fast:  ## only the fast tier (no training, no cluster)
	@scripts/test.sh -m "not slow and not cluster" $(PYTEST_ARGS)

bench-fit:  ## scaling-law engine benchmark; last line fit500_boot1000_seconds=S
	@$(PY) benchmarks/bench_fit.py

bench-model-selection:  ## pick the best of 5-10 candidate models from 10% subsets; last line model_selection_top1=P
	@$(PY) benchmarks/bench_model_selection.py

bench-adaptive:  ## adaptive design vs the full grid on 20 simulated worlds; last line adaptive_gpu_hour_fraction=F
	@$(PY) benchmarks/bench_adaptive.py

bench-trainer:  ## trainer vs HF Trainer tokens/s on CPU; last line trainer_speedup_vs_hf=R
	@$(PY) benchmarks/bench_trainer.py

bench-trainer-gpu:  ## trainer on one GPU (~1B Llama, bf16): tokens/s, memory, MFU; last line ...gpu_mfu_fmt=
	@$(PY) benchmarks/bench_trainer_gpu.py

bench-operator:  ## operator at scale on the real control plane; last line writes_per_run=...
	@$(PY) benchmarks/bench_operator.py

bench-chaos:  ## operator SIGKILLs, API-server/etcd restarts, failed and forged pods; last line duplicate_jobs=...
	@$(PY) benchmarks/bench_chaos.py

toy:  ## build (or reuse) the offline tiny world: data, tokenizer, model family
	@$(PY) -m ftscale toy build

cluster-build:  ## build the control-plane binaries from Go modules (cached)
	@tests/cluster/build.sh

cluster-up:  ## start etcd, apiserver, controller-manager, scheduler and KWOK on 127.0.0.1
	@tests/cluster/up.sh

cluster-down:  ## stop every process cluster-up started
	@tests/cluster/down.sh

cluster-demo:  ## a study to Fitted on a local control plane: chart RBAC, operator, real trainer and fit Job
	@scripts/cluster-demo.sh

images:  ## build the container images (needs a container engine)
	@scripts/images.sh
