#!/usr/bin/env bash
# `make demo` — the README's first command: a whole scaling study on this machine's CPU.
#
# 1. makes (or reuses) the Python environment (scripts/python-env.sh);
# 2. builds (or reuses) the offline tiny world: bilingual text, tokenizer, a family of tiny
#    pretrained models with intermediate checkpoints and a finetuning learning rate per model
#    and method from a small dev sweep (`ftscale toy build`, cached in $FTSCALE_CACHE/toy);
# 3. runs examples/demo-study.yaml with `ftscale run` (3 model sizes × FMT, LoRA, prompt tuning
#    × 5 data sizes, each run trained to its dev minimum) and fits the scaling laws;
# 4. prints the report's paths (report.md and report.html).
#
# The study's workdir is $FTSCALE_DEMO_DIR (default $FTSCALE_CACHE/demo). Running `make demo`
# again resumes it (finished runs are kept, the report is refreshed); `FRESH=1 make demo`
# starts over. Extra arguments go to `ftscale run` (e.g. --parallel 1).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
export FTSCALE_CACHE="${FTSCALE_CACHE:-$HOME/.cache/ftscale}"
export PYTHONPATH="$here/operator:$here/trainer_image${PYTHONPATH:+:$PYTHONPATH}"
workdir="${FTSCALE_DEMO_DIR:-$FTSCALE_CACHE/demo}"
start=$(date +%s)

py="$(scripts/python-env.sh)"

echo "== 1/2 the tiny world (built once, then cached in $FTSCALE_CACHE/toy)"
"$py" -m ftscale toy build

if [ "${FRESH:-0}" = "1" ] && [ -d "$workdir" ]; then
  echo "FRESH=1: removing the previous demo workdir $workdir"
  rm -rf "$workdir"
fi
echo "== 2/2 the demo study (examples/demo-study.yaml) in $workdir"
set +e
"$py" -m ftscale run examples/demo-study.yaml --workdir "$workdir" "$@"
rc=$?
set -e
elapsed=$(( $(date +%s) - start ))
if [ "$rc" -eq 130 ]; then
  echo "interrupted after ${elapsed} s; run \`make demo\` again to resume"
  exit 130
fi
if [ ! -f "$workdir/report.md" ]; then
  echo "the demo did not produce a report (exit code $rc); see the messages above" >&2
  exit "${rc:-1}"
fi
echo
echo "demo finished in ${elapsed} s (exit code $rc)."
echo "report: $workdir/report.md"
if [ -f "$workdir/report.html" ]; then
  echo "        $workdir/report.html (one self-contained page: open it in a browser)"
fi
echo "plots:  $workdir/plots/"
exit "$rc"
