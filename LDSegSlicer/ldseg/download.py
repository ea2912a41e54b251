"""Downloads checked by SHA-256 before they are used or kept (model packages, the sample case)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from .errors import LDSegError
from .limits import current as current_limits


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_verified(url: str, sha256: str, destination: Path) -> Path:
    """Fetches `url` into `destination` only if its SHA-256 matches; nothing is kept otherwise.

    file:// URLs work too (offline installs and tests). Proxies come from the usual *_proxy variables.
    The whole download is bounded in time and size (ldseg.limits), so a trickling or endless server
    is given up on.
    """
    limits = current_limits()
    deadline = time.monotonic() + limits.download_seconds
    destination.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    received = 0
    handle, temporary_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
    temporary = Path(temporary_name)
    try:
        with os.fdopen(handle, "wb") as output, urllib.request.urlopen(url, timeout=60) as response:
            read = getattr(response, "read1", response.read)  # returns what arrived, so the deadline is checked
            for block in iter(lambda: read(1 << 16), b""):
                received += len(block)
                limits.check_bytes(received, "max_archive_bytes", f"The download from {url}")
                if time.monotonic() > deadline:
                    raise LDSegError(
                        f"The download from {url} took longer than {limits.download_seconds:.0f} s and was given up "
                        f"({received:,} bytes received). Try again later, or raise the limit: "
                        "ldseg --limit download_seconds=SECONDS ..."
                    )
                digest.update(block)
                output.write(block)
        if digest.hexdigest() != sha256.lower():
            raise LDSegError(
                f"The file downloaded from {url} has SHA-256 {digest.hexdigest()[:12]}..., expected {sha256[:12]}...; "
                "it was discarded. Try again, or download it by hand and check it."
            )
        os.replace(temporary, destination)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise LDSegError(f"Cannot download {url} ({error}); check the network or proxy settings.") from None
    finally:
        temporary.unlink(missing_ok=True)
    return destination
