"""Synthetic results tables with planted laws: the paper's Table 4 (WMT En-De) values on the
paper's Table 1b grids. Used by the tests, the benchmark and anyone checking the engine.

The rows look like `RunResult.row()` rows (method, pet_size, model_params, pretrain_tokens,
data_size, seed, test_loss, outcome), so they can go through every entry point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Table 4, En-De column (paper.md §4.1). A_t multiplies the PET size in its own units.
PAPER_EN_DE = {
    "fmt": {"E": 0.75, "beta": 0.15,
            "model_size": (1.2e5, 0.52), "pretrain_tokens": (6.3e2, 0.21)},
    "prompt": {"E": 0.62, "beta": 0.051,
               "model_size": (3.9e3, 0.40), "pretrain_tokens": (2.7e2, 0.21),
               "pet_size": (1.0, 0.0027)},
    "lora": {"E": 0.62, "beta": 0.081,
             "model_size": (2.1e3, 0.36), "pretrain_tokens": (1.4e2, 0.18),
             "pet_size": (1.4, -0.0017)},
}

# Table 1b grids (held-out values are the largest X / D, except pretraining data: 209B).
MODEL_SIZES = (1e9, 2e9, 4e9, 8e9, 16e9)
PRETRAIN_TOKENS = (84e9, 126e9, 167e9, 209e9, 283e9)
PROMPT_LENGTHS = (50, 100, 150, 200, 300, 400, 600)
LORA_RANKS = (4, 8, 16, 32, 48, 64, 128)
D_PET = (8e3, 10e3, 20e3, 30e3, 40e3, 50e3, 60e3, 70e3, 80e3, 90e3, 100e3)
D_FMT = (100e3, 500e3, 1e6, 1.5e6, 2e6, 2.5e6, 3e6, 3.5e6, 4e6, 4.5e6)
DEFAULT_PET = {"prompt": 100, "lora": 4}
X_COLUMN = {"model_size": "model_params", "pretrain_tokens": "pretrain_tokens",
            "pet_size": "pet_size"}


@dataclass(frozen=True)
class PlantedLaw:
    A: float
    alpha: float
    beta: float
    E: float
    B: float | None = None  # additive form only

    def predict(self, x, d):
        x, d = np.asarray(x, float), np.asarray(d, float)
        if self.B is None:
            return self.A * x ** -self.alpha * d ** -self.beta + self.E
        return self.A * x ** -self.alpha + self.B * d ** -self.beta + self.E


def planted(method: str, factor: str) -> PlantedLaw:
    p = PAPER_EN_DE[method]
    A, alpha = p[factor]
    return PlantedLaw(A, alpha, p["beta"], p["E"])


def factor_rows(method: str, factor: str, *, sigma: float = 0.005, seeds: int = 3,
                rng: np.random.Generator, law: PlantedLaw | None = None,
                xs=None, ds=None) -> list[dict]:
    """Rows of one (method, factor) sweep on the paper's grids, Gaussian noise of sd sigma per
    run. Other X columns are held at the paper's defaults (1B model, final 283B checkpoint,
    prompt 100 / rank 4)."""
    law = law or planted(method, factor)
    if xs is None:
        xs = {"model_size": MODEL_SIZES, "pretrain_tokens": PRETRAIN_TOKENS,
              "pet_size": PROMPT_LENGTHS if method == "prompt" else LORA_RANKS}[factor]
    if ds is None:
        ds = D_FMT if method == "fmt" else D_PET
    rows = []
    for x in xs:
        for d in ds:
            mean = float(law.predict(x, d))
            for seed in range(seeds):
                row = {
                    "method": method,
                    "pet_size": DEFAULT_PET.get(method),
                    "model": "1B",
                    "model_params": int(1e9),
                    "pretrain_tokens": int(283e9),
                    "data_size": int(d),
                    "seed": seed,
                    "test_loss": mean + float(rng.normal(0.0, sigma)),
                    "outcome": "Succeeded",
                }
                row[X_COLUMN[factor]] = int(x)
                if factor == "model_size":
                    row["model"] = f"{x / 1e9:g}B"
                rows.append(row)
    return rows
