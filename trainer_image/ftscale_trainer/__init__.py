"""ftscale's trainer: one finetuning run (full-model tuning, LoRA or prompt tuning) per call,
reporting one run-result document (ftscale.results). Runs in each GPU Job and as a subprocess of
`ftscale run`."""
