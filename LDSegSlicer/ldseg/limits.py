"""Resource limits on untrusted input (images, model packages, downloads), all in one place.

Every reader checks sizes against these before it allocates or writes, so a small file that
inflates (a 5 MB .nii.gz of 1024^3 voxels, a zip bomb) or a server that trickles is refused with one
line instead of exhausting memory, disk or patience. Raise a limit for one run with
`ldseg --limit NAME=VALUE ...` or for every run with LDSEG_LIMITS="NAME=VALUE,NAME=VALUE".
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from .errors import LDSegError

ENVIRONMENT_VARIABLE = "LDSEG_LIMITS"


@dataclass(frozen=True)
class Limits:
    max_voxels: int = 512**3  # decoded image voxels (a float32 copy is 512 MiB)
    max_card_bytes: int = 1 << 20  # model-card.json
    max_weights_bytes: int = 4 << 30  # one .safetensors file
    max_archive_bytes: int = 8 << 30  # all extracted members of a model .zip together
    download_seconds: float = 3600.0  # total time of one download, however slowly it trickles

    def check_voxels(self, size, what: str) -> None:
        """Refuses an image of `size` voxels (any number of axes) before it is decoded."""
        count = 1
        for extent in size:
            count *= max(int(extent), 0)
        if count > self.max_voxels:
            shape = " x ".join(str(int(extent)) for extent in size)
            raise LDSegError(
                f"{what} would decode to {shape} = {count:,} voxels, more than the limit of {self.max_voxels:,}. "
                f"If the image is genuine, raise the limit: ldseg --limit max_voxels={count} ..."
            )

    def check_bytes(self, size: int, limit_name: str, what: str) -> None:
        limit = getattr(self, limit_name)
        if size > limit:
            raise LDSegError(
                f"{what} is {size:,} bytes, more than the limit of {limit:,}. "
                f"If it is genuine, raise the limit: ldseg --limit {limit_name}={size} ..."
            )


def current() -> Limits:
    """The default limits, overridden by LDSEG_LIMITS."""
    return parse(os.environ.get(ENVIRONMENT_VARIABLE, ""))


def parse(text: str, base: Limits | None = None) -> Limits:
    """Limits from "name=value,name=value" (commas or whitespace between items)."""
    limits = base or Limits()
    kinds = {field.name: field.type for field in dataclasses.fields(Limits)}
    changes = {}
    for item in text.replace(",", " ").split():
        name, _, value = item.partition("=")
        if name not in kinds:
            raise LDSegError(f"Unknown limit {name!r} in {item!r}; the limits are {', '.join(kinds)}.")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not number > 0 or number == float("inf"):
            raise LDSegError(f"Limit {item!r} needs a positive finite number, e.g. {name}={getattr(limits, name)}.")
        changes[name] = int(number) if kinds[name] in ("int", int) else number
    return dataclasses.replace(limits, **changes)


def raise_limits(items: list[str]) -> None:
    """Applies `--limit NAME=VALUE` options for this process (and the processes it starts)."""
    if items:
        merged = " ".join([os.environ.get(ENVIRONMENT_VARIABLE, ""), *items])
        parse(merged)  # refuse a bad option here, once
        os.environ[ENVIRONMENT_VARIABLE] = merged
