"""ftscale: LLM finetuning scaling studies on Kubernetes, and the scaling-law fits of
Zhang et al. (ICLR 2024), "When Scaling Meets LLM Finetuning".

This package is torch-free: it holds the CRD-facing types, the run grid, the result contract,
the scaling-law engine, the local executor and the operator. The trainer lives in the
`ftscale_trainer` package (trainer_image/), which depends on this one.
"""

__version__ = "0.1.0"
