"""The kubelet-acting helper's pure parts (tests/cluster/kubelet.py): what status it reports."""
import pytest

from cluster.kubelet import (
    MAX_TERMINATION_MESSAGE_BYTES,
    kubelet_termination_message,
    terminated_status_patch,
)
from cluster.fixtures import namespace_name_for

NOW = "2026-01-01T00:00:00Z"


def running_pod(containers=("trainer",), restart="Never"):
    return {
        "metadata": {"name": "p", "namespace": "n"},
        "spec": {
            "restartPolicy": restart,
            "containers": [{"name": c, "image": f"img/{c}:1"} for c in containers],
        },
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": c, "image": f"img/{c}:1", "restartCount": 1,
                 "state": {"running": {"startedAt": "2025-12-31T23:00:00Z"}}}
                for c in containers
            ],
        },
    }


def test_message_keeps_the_last_4096_bytes_like_the_kubelet():
    raw = "a" * 100 + "b" * MAX_TERMINATION_MESSAGE_BYTES
    assert kubelet_termination_message(raw) == "b" * MAX_TERMINATION_MESSAGE_BYTES
    assert kubelet_termination_message('{"ok": true}') == '{"ok": true}'


def test_message_cut_inside_a_character_becomes_replacement_char():
    raw = "é" * MAX_TERMINATION_MESSAGE_BYTES  # 2 bytes each: the cut lands on a boundary
    assert kubelet_termination_message(raw) == "é" * (MAX_TERMINATION_MESSAGE_BYTES // 2)
    odd = "é".encode() * (MAX_TERMINATION_MESSAGE_BYTES // 2) + b"x"  # 4097 bytes
    out = kubelet_termination_message(odd)  # the tail starts with the 2nd byte of an "é"
    assert out == "\ufffd" + "é" * (MAX_TERMINATION_MESSAGE_BYTES // 2 - 1) + "x"


def test_success_patch_reports_completed_and_succeeded():
    patch = terminated_status_patch(running_pod(), 0, '{"loss": 1.5}', now=NOW)["status"]
    assert patch["phase"] == "Succeeded"
    (status,) = patch["containerStatuses"]
    term = status["state"]["terminated"]
    assert term == {"exitCode": 0, "reason": "Completed", "message": '{"loss": 1.5}',
                    "startedAt": "2025-12-31T23:00:00Z", "finishedAt": NOW}
    assert status["restartCount"] == 1 and status["ready"] is False
    ready = {c["type"]: c for c in patch["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "PodCompleted"


def test_failure_patch_uses_error_or_given_reason():
    patch = terminated_status_patch(running_pod(), 137, "killed", reason="OOMKilled", now=NOW)["status"]
    assert patch["phase"] == "Failed"
    term = patch["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"], term["message"]) == (137, "OOMKilled", "killed")
    plain = terminated_status_patch(running_pod(), 2, now=NOW)["status"]["containerStatuses"][0]
    assert plain["state"]["terminated"]["reason"] == "Error"
    assert "message" not in plain["state"]["terminated"]


def test_only_the_named_container_carries_the_exit():
    pod = running_pod(containers=("trainer", "sidecar"))
    patch = terminated_status_patch(pod, 1, "bad", container="trainer", now=NOW)["status"]
    by_name = {s["name"]: s["state"]["terminated"] for s in patch["containerStatuses"]}
    assert by_name["trainer"]["exitCode"] == 1 and by_name["trainer"]["message"] == "bad"
    assert by_name["sidecar"] == {"exitCode": 0, "reason": "Completed",
                                  "startedAt": "2025-12-31T23:00:00Z", "finishedAt": NOW}
    assert patch["phase"] == "Failed"


def test_extra_condition_replaces_same_type():
    extra = {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
    patch = terminated_status_patch(running_pod(), 143, extra_conditions=[extra], now=NOW)["status"]
    types = [c["type"] for c in patch["conditions"]]
    assert types.count("DisruptionTarget") == 1
    assert {c["type"]: c for c in patch["conditions"]}["DisruptionTarget"]["reason"] == "PreemptionByScheduler"


@pytest.mark.parametrize("kwargs, match", [
    ({"container": "nope"}, "no container"),
    ({"restart": "OnFailure"}, "restartPolicy"),
])
def test_bad_requests_are_refused(kwargs, match):
    pod = running_pod(restart=kwargs.pop("restart", "Never"))
    with pytest.raises(ValueError, match=match):
        terminated_status_patch(pod, 1, **kwargs)


def test_namespace_names_are_valid_dns_labels():
    name = namespace_name_for("test_something[Param With Spaces/and_UNDERSCORES]" * 3)
    assert len(name) <= 63 and name == name.lower()
    assert all(ch.isalnum() or ch == "-" for ch in name)
    assert not name.endswith("-") and name.startswith("t-")
    assert namespace_name_for("x") != namespace_name_for("x")
