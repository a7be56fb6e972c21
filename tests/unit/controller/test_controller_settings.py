from __future__ import annotations

import pytest

from ftscale.controller.settings import OperatorSettings, SettingsError


def test_env_overrides_defaults_with_types():
    s = OperatorSettings.from_env({"FTSCALE_NAMESPACES": "a, b", "FTSCALE_METRICS_PORT": "9000",
                                   "FTSCALE_LEADER_ELECTION": "false", "FTSCALE_BATCH_SECONDS": "0.5",
                                   "FTSCALE_TRAINER_IMAGE": "img:1"})
    assert s.namespaces == ("a", "b") and s.metrics_port == 9000 and s.leader_election is False
    assert s.batch_seconds == 0.5 and s.trainer_image == "img:1"
    assert OperatorSettings.from_env({}).metrics_port == 8080


def test_bad_values_name_the_variable():
    with pytest.raises(SettingsError, match="FTSCALE_METRICS_PORT"):
        OperatorSettings.from_env({"FTSCALE_METRICS_PORT": "eighty"})
    with pytest.raises(SettingsError, match="FTSCALE_LEASE_RENEW_SECONDS"):
        OperatorSettings.from_env({"FTSCALE_LEASE_RENEW_SECONDS": "20"})


def test_every_field_is_documented_as_an_env_var():
    names = [n for n, _ in OperatorSettings.documentation()]
    assert "FTSCALE_LEASE_NAMESPACE" in names and all(n.startswith("FTSCALE_") for n in names)
