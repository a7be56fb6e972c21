"""The fit input document on its way from the operator to the fit Job (and to `ftscale report
--study`): gzip-compressed JSON in the `binaryData` of the `<study>-fit-input` ConfigMap.

Compressed because the document carries every run's compact result: ~0.4 KB a run, so a
10,000-run study's input is ~4 MB of JSON — over a ConfigMap's 1 MiB — and ~10x less gzipped.
The document itself is built by ftscale.grid.fit_job_input and read by ftscale.law.job.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any, Mapping

FILE = "fit-input.json.gz"  # the binaryData key, and the file name in the fit pod
GZIP_MAGIC = b"\x1f\x8b"


def encode(doc: Mapping[str, Any]) -> bytes:
    """Deterministic bytes (mtime 0): the same input gives the same ConfigMap."""
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return gzip.compress(text.encode(), compresslevel=6, mtime=0)


def encode_b64(doc: Mapping[str, Any]) -> str:
    """`encode` as a ConfigMap binaryData value."""
    return base64.b64encode(encode(doc)).decode()


def decode(data: bytes) -> Any:
    """The document from gzip'd or plain JSON bytes (a hand-written input file may be plain).
    Raises ValueError when it is neither."""
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ValueError(f"corrupt gzip data: {exc}") from None
    return json.loads(data)


def decode_b64(value: str) -> Any:
    return decode(base64.b64decode(value))
