"""Fixtures for the chart, monitoring and image tests (helpers: helm_support.py).

helm and promtool come from the `cluster_binaries` fixture (tests/cluster builds them, cached);
FTSCALE_HELM / FTSCALE_PROMTOOL point at other binaries (e.g. while developing).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helm_support import Helm

def _binary(env: str, fixture: str, attr: str, request: pytest.FixtureRequest) -> Path:
    override = os.environ.get(env)
    if override:
        path = Path(override)
        if not path.is_file():
            raise pytest.UsageError(f"{env}={override} is not a file")
        return path
    return getattr(request.getfixturevalue(fixture), attr)


@pytest.fixture(scope="session")
def helm(request: pytest.FixtureRequest) -> Helm:
    return Helm(_binary("FTSCALE_HELM", "cluster_binaries", "helm", request))


@pytest.fixture(scope="session")
def promtool(request: pytest.FixtureRequest) -> Path:
    return _binary("FTSCALE_PROMTOOL", "cluster_binaries", "promtool", request)


@pytest.fixture(scope="session")
def default_objects(helm: Helm) -> list[dict]:
    return helm.template()




@pytest.fixture(scope="session")
def apps_api(k8s_api_client):
    from kubernetes import client

    return client.AppsV1Api(k8s_api_client)
