"""LawOptions.from_spec and the held-out spec (ftscale.law.options)."""

import numpy as np
import pytest

from ftscale.law import HoldoutSpec, LawInputError, LawOptions


def test_from_spec_reads_camel_case():
    o = LawOptions.from_spec({"forms": ["multiplicative", "additive"], "residual": "log",
                              "huberDelta": 1e-2, "heldOut": "none", "bootstrap": 7,
                              "seed": 3, "stage1Factors": ["model_size"],
                              "confidenceLevel": 0.9, "optimizer": "grid"})
    assert (o.residual, o.delta, o.bootstrap, o.seed, o.confidence, o.strategy) == \
        ("log", 1e-2, 7, 3, 0.9, "grid")
    assert o.stage1_factors == ("model_size",)
    assert LawOptions.from_spec(o.to_spec()) == o


@pytest.mark.parametrize("spec, word", [
    ({"huberDelta": 0}, "delta"), ({"forms": ["cubic"]}, "form"),
    ({"residual": "sq"}, "residual"), ({"bootstrap": -1}, "bootstrap"),
    ({"heldout": "none"}, "unknown key"), ({"heldOut": {"x": "biggest"}}, "held-out"),
])
def test_bad_spec_names_the_problem(spec, word):
    with pytest.raises(LawInputError, match=word):
        LawOptions.from_spec(spec)


def test_holdout_cli_forms():
    h = HoldoutSpec.parse("x=209e9/283e9,d=none")
    x = np.array([84e9, 209e9, 283e9])
    assert h.x.mask(x).tolist() == [False, True, True]
    assert not h.d.mask(np.array([1.0, 2.0])).any()
    assert HoldoutSpec.parse('{"x": "largest", "d": [4.5e6]}').d.values == (4.5e6,)
    per = HoldoutSpec.parse({"factors": {"pretrain_tokens": {"x": [209e9]}}})
    assert per.for_factor("pretrain_tokens")[0].values == (209e9,)
    assert per.for_factor("model_size")[0].mode == "largest"
