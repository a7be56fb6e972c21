"""Local mode: `ftscale run` runs a ScalingStudy on this machine (the embedded default).

workdir   — the on-disk layout and each run's state (the only memory across restarts)
executor  — trainer subprocesses, retries, Ctrl-C, resume decisions
devices   — GPUs / CPU cores and how many runs fit at once
metrics   — Prometheus metrics while running (--metrics-port)
study_run — the `ftscale run` / `ftscale report` flows
report    — fit, report.md, fit.json and plots
"""
