import re

import pytest

from ftscale.identity import MAX_JOB_NAME, MAX_STUDY_NAME, RunKey, job_name, run_id


def key(**over):
    base = dict(model="m1", method="lora", pet_size=4, data_size=1000, seed=0)
    base.update(over)
    return RunKey(**base)


def test_run_id_is_stable_and_dns_safe():
    # Pinned value: changing the hashing silently would orphan every running study's Jobs.
    assert run_id(key()) == run_id(key())
    assert re.fullmatch(r"[a-z2-7]{10}", run_id(key()))


@pytest.mark.parametrize(
    "change", [dict(model="m2"), dict(method="prompt"), dict(pet_size=8), dict(data_size=2000), dict(seed=1)]
)
def test_every_identity_field_changes_the_id(change):
    assert run_id(key(**change)) != run_id(key())


def test_no_collisions_on_a_large_grid():
    ids = {
        run_id(RunKey(f"m{m}", meth, pet, d, s))
        for m in range(8)
        for meth, pet in (("fmt", None), ("lora", 4), ("lora", 16), ("prompt", 100))
        for d in range(1, 60)
        for s in range(3)
    }
    assert len(ids) == 8 * 4 * 59 * 3


def test_job_name_fits_in_63_chars():
    name = job_name("s" * MAX_STUDY_NAME, key())
    assert len(name) == MAX_JOB_NAME
    with pytest.raises(ValueError, match="at most"):
        job_name("s" * (MAX_STUDY_NAME + 1), key())
