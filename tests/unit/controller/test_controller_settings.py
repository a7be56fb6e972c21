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


def test_cli_flags_override_the_environment(monkeypatch):
    from ftscale.cli import build_parser
    from ftscale.commands.operator import settings_from_args

    monkeypatch.setenv("FTSCALE_METRICS_PORT", "9100")
    monkeypatch.setenv("FTSCALE_LEASE_NAME", "from-env")
    argv = ["operator", "--metrics-port", "9200", "-n", "a", "-n", "b", "--no-leader-election"]
    args = build_parser(argv).parse_args(argv)
    s = settings_from_args(args)
    assert s.metrics_port == 9200 and s.lease_name == "from-env"
    assert s.namespaces == ("a", "b") and s.leader_election is False


def test_operator_help_lists_every_setting(capsys):
    import pytest as _pytest
    from ftscale.cli import main

    with _pytest.raises(SystemExit):
        main(["operator", "--help"])
    out = capsys.readouterr().out
    assert "FTSCALE_WRITE_INTERVAL_SECONDS" in out and "--kubeconfig" in out
