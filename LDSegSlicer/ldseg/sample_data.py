"""The public sample knee case (LDSeg's demo knee, from the OAI), for the README's first command.

Taken from the folder named by LDSEG_SAMPLE_DIR when set (CI, offline machines), otherwise from the
per-user cache, downloading it once with its SHA-256 checked.
"""

from __future__ import annotations

import os
from pathlib import Path

from .download import download_verified, sha256_of
from .errors import LDSegError
from .store import cache_directory

SAMPLE_URL = "https://github.com/FahimZaman/LDSeg/raw/main/Data/Knee/Image/Case1.nii.gz"
SAMPLE_SHA256 = "f9f397ff25a1c99497ad4fd3ae674382d7406c680c7f741b449920fd8049d0d1"
SAMPLE_NAME = "Case1.nii.gz"


def sample_case() -> Path:
    """Path of the verified sample image, fetching it if needed."""
    local = os.environ.get("LDSEG_SAMPLE_DIR")
    if local:
        for candidate in sorted(Path(local).glob("*.nii.gz")):
            if sha256_of(candidate) == SAMPLE_SHA256:
                return candidate
        raise LDSegError(f"LDSEG_SAMPLE_DIR={local} holds no file with the sample case's SHA-256 ({SAMPLE_NAME}).")
    cached = cache_directory() / "sample" / SAMPLE_NAME
    if cached.is_file() and sha256_of(cached) == SAMPLE_SHA256:
        return cached
    return download_verified(SAMPLE_URL, SAMPLE_SHA256, cached)
