"""The operator's allow-lists for images and ServiceAccounts (ftscale.controller.policy)."""

from __future__ import annotations

from ftscale.controller.policy import violations
from ftscale.controller.settings import OperatorSettings


def spec(image=None, model_image=None, account=None):
    execution = {k: v for k, v in (("image", image), ("serviceAccountName", account)) if v}
    model = {"name": "m", "source": "toy:m", **({"image": model_image} if model_image else {})}
    return {"models": [model], "execution": execution}


def test_no_allow_list_allows_everything():
    assert violations(spec("anything:1", "other:2", "sa")) == []


def test_images_and_accounts_outside_the_lists_are_refused_naming_the_field():
    images, accounts = ("registry.example/ml/*",), ("ftscale-trainer",)
    ok = spec("registry.example/ml/trainer:1", "registry.example/ml/big:2", "ftscale-trainer")
    assert violations(ok, allowed_images=images, allowed_service_accounts=accounts) == []
    bad = violations(spec("evil.example/miner:1", "registry.example/other:1", "cluster-admin-sa"),
                     allowed_images=images, allowed_service_accounts=accounts)
    assert len(bad) == 3
    assert bad[0].startswith("spec.execution.image: image 'evil.example/miner:1' is not allowed")
    assert bad[1].startswith("spec.models[name=m].image")
    assert bad[2].startswith("spec.execution.serviceAccountName: 'cluster-admin-sa'")


def test_the_operators_own_trainer_image_is_always_allowed():
    assert violations(spec("ftscale/trainer:0.1"), allowed_images=("registry.example/*",),
                      default_image="ftscale/trainer:0.1") == []


def test_the_lists_come_from_the_environment():
    s = OperatorSettings.from_env({"FTSCALE_ALLOWED_IMAGES": "a/*,b/c:1",
                                   "FTSCALE_ALLOWED_SERVICE_ACCOUNTS": "trainer"})
    assert s.allowed_images == ("a/*", "b/c:1") and s.allowed_service_accounts == ("trainer",)
