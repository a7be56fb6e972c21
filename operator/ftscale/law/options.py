"""Fit settings: the held-out split and `LawOptions` (the CRD's `spec.law`).

`LawOptions.from_spec` reads a camelCase dict; every key is optional:

    forms          list of "multiplicative" | "additive" | "single"
                   (default ["multiplicative", "additive"])
    residual       "raw" (paper Eq. 2, default) | "log" (Chinchilla Eq. 11)
    huberDelta     Huber δ, > 0 (default 1e-3)
    heldOut        "largest" (default) | "none" | {"x": AX, "d": AX, "factors": {FACTOR: {"x": AX,
                   "d": AX}}} where AX is "largest" | "none" | [values]; e.g. the paper's
                   pretraining split: {"factors": {"pretrain_tokens": {"x": [209e9]}}}
    bootstrap      resamples of runs for intervals, ≥ 0 (default 200; 0 = no intervals)
    seed           seed of the bootstrap (default 0)
    stage1Factors  factors pooled in stage 1 (default: model_size and pretrain_tokens, those
                   present)
    confidenceLevel  central interval mass, 0 < c < 1 (default 0.95)
    optimizer      "varpro" (default) | "grid" (see ftscale.law.solver)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import numpy as np

from ftscale.law.errors import LawInputError
from ftscale.law.model import FORMS, RESIDUALS
from ftscale.law.solver import STRATEGIES

FACTORS = ("model_size", "pretrain_tokens", "pet_size")
DEFAULT_STAGE1 = ("model_size", "pretrain_tokens")
LARGEST, NONE, VALUES = "largest", "none", "values"
# Two values count as "the same" held-out value within this relative tolerance (CSV round trips).
VALUE_RTOL = 1e-9


@dataclass(frozen=True)
class AxisHoldout:
    """Which values of one axis (X or D) are held out: the largest, none, or listed values."""

    mode: str = LARGEST
    values: tuple[float, ...] = ()

    def mask(self, arr: np.ndarray) -> np.ndarray:
        if self.mode == NONE or arr.size == 0:
            return np.zeros(arr.shape, dtype=bool)
        if self.mode == LARGEST:
            top = arr.max()
            if np.all(np.isclose(arr, top, rtol=VALUE_RTOL)):
                return np.zeros(arr.shape, dtype=bool)  # one value only: nothing to extrapolate to
            return np.isclose(arr, top, rtol=VALUE_RTOL)
        out = np.zeros(arr.shape, dtype=bool)
        for v in self.values:
            out |= np.isclose(arr, v, rtol=VALUE_RTOL)
        return out

    def to_spec(self):
        return list(self.values) if self.mode == VALUES else self.mode

    @classmethod
    def parse(cls, value, where: str) -> "AxisHoldout":
        if isinstance(value, str):
            v = value.strip().lower()
            if v in (LARGEST, NONE):
                return cls(v)
            parts = [p for p in v.replace(";", "/").split("/") if p]
            try:
                return cls(VALUES, tuple(float(p) for p in parts))
            except ValueError:
                pass
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            return cls(VALUES, (float(value),))
        elif isinstance(value, (list, tuple)) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return cls(VALUES, tuple(float(v) for v in value))
        raise LawInputError(f"held-out {where}={value!r} is not understood; use 'largest', "
                            "'none' or a list of values (e.g. 209e9/283e9)")


@dataclass(frozen=True)
class HoldoutSpec:
    """The held-out split by value (paper §2.1 item 4): a run is held out when its X or its D
    is a held-out value of its factor. Defaults: the largest X and the largest D."""

    x: AxisHoldout = AxisHoldout()
    d: AxisHoldout = AxisHoldout()
    by_factor: tuple[tuple[str, AxisHoldout, AxisHoldout], ...] = ()

    def for_factor(self, factor: str | None) -> tuple[AxisHoldout, AxisHoldout]:
        for name, x, d in self.by_factor:
            if name == factor:
                return x, d
        return self.x, self.d

    def to_spec(self):
        if not self.by_factor and self.x == self.d and self.x.mode != VALUES:
            return self.x.mode
        out = {"x": self.x.to_spec(), "d": self.d.to_spec()}
        if self.by_factor:
            out["factors"] = {n: {"x": x.to_spec(), "d": d.to_spec()} for n, x, d in self.by_factor}
        return out

    @classmethod
    def parse(cls, spec) -> "HoldoutSpec":
        """From "largest" | "none" | a dict (see module docstring) | a CLI string such as
        "x=largest,d=none", "x=209e9,d=largest" or a JSON object."""
        if spec is None:
            return cls()
        if isinstance(spec, str):
            s = spec.strip()
            if s.lower() in (LARGEST, NONE):
                return cls(AxisHoldout(s.lower()), AxisHoldout(s.lower()))
            if s.startswith("{"):
                try:
                    return cls.parse(json.loads(s))
                except ValueError:
                    raise LawInputError(f"held-out spec {spec!r} is not valid JSON; e.g. "
                                        '\'{"x": "largest", "d": "none"}\'') from None
            parsed = {}
            for part in s.split(","):
                key, sep, value = part.partition("=")
                if not sep or key.strip().lower() not in ("x", "d"):
                    raise LawInputError(f"held-out spec {spec!r} is not understood; use "
                                        "'largest', 'none', or e.g. 'x=largest,d=none' or "
                                        "'x=209e9/283e9,d=largest'")
                parsed[key.strip().lower()] = value
            return cls.parse(parsed)
        if isinstance(spec, dict):
            unknown = set(spec) - {"x", "d", "factors"}
            if unknown:
                raise LawInputError(f"heldOut has unknown key(s) {sorted(unknown)}; "
                                    "use x, d and factors")
            x = AxisHoldout.parse(spec.get("x", LARGEST), "x")
            d = AxisHoldout.parse(spec.get("d", LARGEST), "d")
            by = []
            for name, sub in (spec.get("factors") or {}).items():
                if name not in FACTORS or not isinstance(sub, dict):
                    raise LawInputError(f"heldOut.factors.{name} is not understood; factors are "
                                        f"{', '.join(FACTORS)}, each {{'x': ..., 'd': ...}}")
                by.append((name, AxisHoldout.parse(sub.get("x", x.to_spec()), f"{name}.x"),
                           AxisHoldout.parse(sub.get("d", d.to_spec()), f"{name}.d")))
            return cls(x, d, tuple(by))
        raise LawInputError(f"held-out spec {spec!r} is not understood; use 'largest', 'none' "
                            "or an object with x/d")


@dataclass(frozen=True)
class LawOptions:
    """Settings of a study fit (and of `ftscale fit`). See the module docstring for the keys."""

    forms: tuple[str, ...] = ("multiplicative", "additive")
    residual: str = "raw"
    delta: float = 1e-3
    holdout: HoldoutSpec = field(default_factory=HoldoutSpec)
    bootstrap: int = 200
    seed: int = 0
    stage1_factors: tuple[str, ...] | None = None
    confidence: float = 0.95
    strategy: str = "varpro"

    def __post_init__(self):
        for form in self.forms:
            if form not in FORMS:
                raise LawInputError(f"unknown law form {form!r}; use {', '.join(FORMS)}")
        if not self.forms:
            raise LawInputError("no law form chosen; use multiplicative, additive or single")
        if self.residual not in RESIDUALS:
            raise LawInputError(f"unknown residual {self.residual!r}; use raw or log")
        if not (isinstance(self.delta, (int, float)) and self.delta > 0 and np.isfinite(self.delta)):
            raise LawInputError(f"Huber delta must be a positive number, got {self.delta!r}")
        if isinstance(self.bootstrap, bool) or not isinstance(self.bootstrap, int) \
                or self.bootstrap < 0:
            raise LawInputError(f"bootstrap must be a whole number ≥ 0, got {self.bootstrap!r}")
        if not 0 < self.confidence < 1:
            raise LawInputError(f"confidence level must be in (0, 1), got {self.confidence!r}")
        if self.strategy not in STRATEGIES:
            raise LawInputError(f"unknown optimizer {self.strategy!r}; use varpro or grid")
        for f in self.stage1_factors or ():
            if f not in FACTORS:
                raise LawInputError(f"unknown stage-1 factor {f!r}; use {', '.join(FACTORS)}")

    def with_(self, **changes) -> "LawOptions":
        return replace(self, **changes)

    def to_spec(self) -> dict:
        out = {"forms": list(self.forms), "residual": self.residual, "huberDelta": self.delta,
               "heldOut": self.holdout.to_spec(), "bootstrap": self.bootstrap, "seed": self.seed,
               "confidenceLevel": self.confidence, "optimizer": self.strategy}
        if self.stage1_factors is not None:
            out["stage1Factors"] = list(self.stage1_factors)
        return out

    @classmethod
    def from_spec(cls, spec: dict | None) -> "LawOptions":
        """Read the camelCase dict of the CRD's spec.law (module docstring). Raises
        LawInputError naming the bad key."""
        spec = dict(spec or {})
        known = {"forms", "residual", "huberDelta", "heldOut", "bootstrap", "seed",
                 "stage1Factors", "confidenceLevel", "optimizer"}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise LawInputError(f"law settings have unknown key(s) {unknown}; known keys: "
                                f"{', '.join(sorted(known))}")
        kwargs = {}
        if "forms" in spec:
            forms = spec["forms"]
            kwargs["forms"] = (forms,) if isinstance(forms, str) else tuple(forms)
        if "residual" in spec:
            kwargs["residual"] = spec["residual"]
        if "huberDelta" in spec:
            kwargs["delta"] = spec["huberDelta"]
        if "heldOut" in spec:
            kwargs["holdout"] = HoldoutSpec.parse(spec["heldOut"])
        if "bootstrap" in spec:
            kwargs["bootstrap"] = spec["bootstrap"]
        if "seed" in spec:
            kwargs["seed"] = spec["seed"]
        if "stage1Factors" in spec:
            kwargs["stage1_factors"] = tuple(spec["stage1Factors"])
        if "confidenceLevel" in spec:
            kwargs["confidence"] = spec["confidenceLevel"]
        if "optimizer" in spec:
            kwargs["strategy"] = spec["optimizer"]
        return cls(**kwargs)
