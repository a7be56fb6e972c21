"""What a study may ask of the cluster, as the platform team allows it (pure).

Whoever may create a ScalingStudy chooses the run pods' image, ServiceAccount, volumes,
tolerations and priority class — in effect, "create Job" in that namespace
(docs/cluster-install.md, "What creating a ScalingStudy allows"). The operator's allow-lists
narrow that: `FTSCALE_ALLOWED_IMAGES` and `FTSCALE_ALLOWED_SERVICE_ACCOUNTS` (chart values
`policy.allowedImages` / `policy.allowedServiceAccounts`), comma-separated shell-style patterns
(`registry.example/ml/*`). Empty means no restriction. The operator's own trainer image is
always allowed. A study that asks for anything else is refused before any Job starts.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Mapping, Sequence


def _allowed(value: str, patterns: Sequence[str]) -> bool:
    return not patterns or any(fnmatchcase(value, p) for p in patterns)


def violations(spec: Mapping[str, Any], *, allowed_images: Sequence[str] = (),
               allowed_service_accounts: Sequence[str] = (),
               default_image: str = "") -> list[str]:
    """One message per field of `spec` that the allow-lists refuse (empty: allowed)."""
    execution = spec.get("execution") or {}
    problems = []
    images = [("spec.execution.image", execution.get("image"))] + [
        (f"spec.models[name={m.get('name')}].image", m.get("image"))
        for m in spec.get("models") or ()]
    for field, image in images:
        if image and image != default_image and not _allowed(image, allowed_images):
            problems.append(f"{field}: image {image!r} is not allowed here (the operator "
                            f"allows {', '.join(allowed_images)}); use one of those, or ask "
                            "your platform team to allow it")
    account = execution.get("serviceAccountName")
    if account and not _allowed(account, allowed_service_accounts):
        problems.append(f"spec.execution.serviceAccountName: {account!r} is not allowed here "
                        f"(the operator allows {', '.join(allowed_service_accounts)})")
    return problems
