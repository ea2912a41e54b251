"""Training/evaluation cases: finding image/label pairs and checking that they belong together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import LDSegError
from .imageio import IMAGE_SUFFIXES, case_name, read_image, read_label_map


@dataclass(frozen=True)
class Case:
    name: str
    image_path: Path
    label_path: Path


def find_cases(data_dir: str | Path, names: tuple[str, ...] = ()) -> list[Case]:
    """Pairs DATA_DIR/images/<name>.<ext> with DATA_DIR/labels/<name>.<ext>; `names` selects some."""
    data_dir = Path(data_dir)
    images, labels = data_dir / "images", data_dir / "labels"
    if not images.is_dir() or not labels.is_dir():
        raise LDSegError(f"{data_dir} must contain the folders images/ and labels/ with files of the same names.")
    label_files = {case_name(p): p for p in labels.iterdir() if p.name.lower().endswith(IMAGE_SUFFIXES)}
    cases = [
        Case(case_name(p), p, label_files[case_name(p)])
        for p in sorted(images.iterdir())
        if p.name.lower().endswith(IMAGE_SUFFIXES) and case_name(p) in label_files
    ]
    if not cases:
        raise LDSegError(f"No image/label pairs in {data_dir}: images/X.nii.gz needs a labels/X.nii.gz.")
    if names:
        by_name = {case.name: case for case in cases}
        missing = [name for name in names if name not in by_name]
        if missing:
            raise LDSegError(f"Case(s) {', '.join(missing)} not found in {data_dir}; found {', '.join(by_name)}.")
        cases = [by_name[name] for name in names]
    return cases


def read_case(case: Case, num_classes: int) -> tuple[sitk.Image, sitk.Image]:
    """Reads an image and its label map, refusing pairs of different geometry or unknown label values."""
    image = read_image(case.image_path)
    labels = read_label_map(case.label_path)  # refuses truncated files, which ITK would fill with zeros
    same_geometry = (
        labels.GetSize() == image.GetSize()
        and np.allclose(labels.GetSpacing(), image.GetSpacing(), atol=1e-4)
        and np.allclose(labels.GetOrigin(), image.GetOrigin(), atol=1e-3)
        and np.allclose(labels.GetDirection(), image.GetDirection(), atol=1e-5)
    )
    if not same_geometry:
        raise LDSegError(
            f"Case {case.name}: image and label map have different geometry (size, spacing, origin or direction); "
            "resample the label map onto the image grid."
        )
    values = np.unique(sitk.GetArrayViewFromImage(labels))
    unknown = [v.item() for v in values if not np.isfinite(v) or v < 0 or v >= num_classes or v != int(v)]
    if unknown:
        raise LDSegError(
            f"Case {case.name}: label map has unknown value(s) {unknown}; expected 0 (background) to {num_classes - 1}."
        )
    return image, sitk.Cast(labels, sitk.sitkUInt8)
