import json
import math

import pytest

from ftscale.results import COMPACT_LIMIT, FAILED, ResultError, RunResult, parse_result


def make(**over):
    doc = dict(study="s", run_id="abcdefghij", model="m", method="lora", pet_size=4,
               data_size=100, seed=0, test_loss=1.5, best_dev_loss=1.4,
               curves={"train": [[i, 2.0] for i in range(500)]}, config={"lr": 1e-3})
    doc.update(over)
    return RunResult(**doc)


def test_round_trip_full_and_compact():
    r = make()
    assert parse_result(r.to_full_json()) == r
    compact = parse_result(r.to_compact_json())
    assert compact.curves == {} and compact.config == {} and compact.test_loss == 1.5


def test_compact_stays_under_limit_even_with_a_huge_message():
    r = make(outcome=FAILED, reason="RuntimeError", message="x" * 10_000, test_loss=None)
    text = r.to_compact_json()
    assert len(text.encode()) <= COMPACT_LIMIT
    assert parse_result(text).message.startswith("xxx")


def test_non_finite_numbers_become_null():
    r = make(outcome=FAILED, reason="NonFiniteLoss", test_loss=math.nan, best_dev_loss=math.inf)
    doc = json.loads(r.to_compact_json())
    assert doc["test_loss"] is None and doc["best_dev_loss"] is None


@pytest.mark.parametrize(
    "text, match",
    [
        ("{not json", "not JSON"),
        ("[]", "JSON object"),
        (json.dumps({"schema": "other"}), "schema"),
        (json.dumps({"schema": "ftscale.io/run-result/v1", "study": "s"}), "missing"),
    ],
)
def test_corrupt_documents_are_rejected(text, match):
    with pytest.raises(ResultError, match=match):
        parse_result(text)


def test_wrong_types_and_unknown_fields_are_rejected():
    doc = json.loads(make().to_full_json())
    with pytest.raises(ResultError, match="data_size"):
        parse_result(json.dumps({**doc, "data_size": "100"}))
    with pytest.raises(ResultError, match="unknown"):
        parse_result(json.dumps({**doc, "surprise": 1}))
    with pytest.raises(ResultError, match="test_loss"):
        parse_result(json.dumps({**doc, "test_loss": None}))
