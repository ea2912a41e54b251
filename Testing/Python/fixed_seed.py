"""Fingerprints of the bundled model's fixed-seed outputs, to prove a refactoring changed no bit.

`python Testing/Python/fixed_seed.py --write` records the reference (after a deliberate change of
the bundled model or of the numerics); test_fixed_seed_identity.py compares every run against it.
The runs go through the command line, so the check does not depend on the engine's internal API.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nrrd

REPO = Path(__file__).resolve().parents[2]
REFERENCE = Path(__file__).with_name("fixed-seed-reference.json")
CASE = "knee1.nii.gz"
# Every fusion rule and uncertainty measure, sample saving and both component modes.
RUNS = {
    "defaults": [],
    "majority-mutual_information": ["--fusion", "majority", "--uncertainty", "mutual_information"],
    "staple-variance-4": ["--fusion", "staple", "--uncertainty", "variance", "--samples", "4", "--seed", "7"],
    "disagreement-all-samples": ["--uncertainty", "disagreement", "--all-components", "--save-samples", "--samples", "3"],
}


def fingerprint_file(path: Path) -> str:
    """SHA-256 of an NRRD's decoded voxels and header (not of its compressed bytes), or of a summary's
    model, labels, per-structure figures and uncertainty range (not its timings or bookkeeping)."""
    digest = hashlib.sha256()
    if path.suffix == ".nrrd":
        data, header = nrrd.read(str(path))
        digest.update(data.tobytes())
        digest.update(repr(sorted((key, repr(value)) for key, value in header.items())).encode())
    else:
        summary = json.loads(path.read_text())
        figures = {key: summary[key] for key in ("model", "labels", "structures", "uncertainty_range")}
        digest.update(json.dumps(figures, sort_keys=True).encode())
    return digest.hexdigest()


def fingerprints(image: Path, output: Path, options: list[str]) -> dict[str, str]:
    """Runs `ldseg segment` with the bundled model on the CPU and fingerprints what it wrote."""
    command = [sys.executable, "-m", "ldseg.cli", "segment", str(image), "-o", str(output),
               "--device", "cpu", "--progress", "none", *options]
    run = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    if run.returncode != 0:
        raise RuntimeError(f"ldseg segment failed: {run.stderr.strip()}")
    return {path.name: fingerprint_file(path) for path in sorted(output.iterdir())
            if path.suffix in (".nrrd", ".json")}


def all_fingerprints(data_dir: Path, scratch: Path) -> dict[str, dict[str, str]]:
    return {name: fingerprints(data_dir / "images" / CASE, scratch / name, options) for name, options in RUNS.items()}


if __name__ == "__main__":
    import tempfile

    data = Path(os.environ.get("LDSEG_DATA_DIR", REPO.parent / "shared" / "data" / "knee-oai"))
    with tempfile.TemporaryDirectory() as scratch:
        found = all_fingerprints(data, Path(scratch))
    if "--write" in sys.argv:
        REFERENCE.write_text(json.dumps(found, indent=2) + "\n")
    print(json.dumps(found, indent=2))
