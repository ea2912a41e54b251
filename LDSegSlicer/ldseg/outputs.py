"""Result files of `ldseg segment` (listed in docs/architecture.md), written all or nothing.

The segmentation is a Slicer .seg.nrrd (written with slicerio) whose segments carry names,
colors, SNOMED CT terminology and DICOM algorithm tags, so Slicer loads it as is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .card import Label, ModelCard
from .errors import LDSegError
from .imageio import itk_message, staged_outputs
from .inference import SegmentationResult
from .summary import SUMMARY_FORMAT_VERSION, ModelIdentity, RunSummary
from .terminology import ANATOMIC_CONTEXT, ANATOMIC_REGION, TERMINOLOGY_CONTEXT
from .uncertainty import uncertainty_range



def ijk_to_lps(image: sitk.Image) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    matrix[:3, 3] = image.GetOrigin()
    return matrix


def algorithm_name(card: ModelCard) -> str:
    return f"LDSeg {card.name} {card.version}"


def segment_fields(label: Label, card: ModelCard) -> dict:
    """slicerio segment description: name, color, terminology and DICOM algorithm tags."""
    return {
        "id": label.name,
        "name": label.name,
        "color": list(label.color),
        "terminology": {
            "contextName": TERMINOLOGY_CONTEXT,
            "category": [label.category.scheme, label.category.code, label.category.meaning],
            "type": [label.type.scheme, label.type.code, label.type.meaning],
            "anatomicContextName": ANATOMIC_CONTEXT,
            "anatomicRegion": [ANATOMIC_REGION.scheme, ANATOMIC_REGION.code, ANATOMIC_REGION.meaning],
        },
        "tags": {
            "DICOM.SegmentAlgorithmType": "AUTOMATIC",
            "DICOM.SegmentAlgorithmName": algorithm_name(card),
        },
    }


def write_segmentation(labels: sitk.Image, card: ModelCard, path: Path) -> None:
    """Writes a label map as a Slicer segmentation file with one segment per card label."""
    import slicerio

    array = sitk.GetArrayViewFromImage(labels).transpose(2, 1, 0)  # (z, y, x) -> slicerio's (i, j, k)
    segmentation = slicerio.create_segmentation(array.shape, ijk_to_lps(labels))
    for label in card.labels:
        slicerio.add_segment(segmentation, array == label.value, segment_fields(label, card))
    slicerio.write_segmentation(str(path), segmentation, compression_level=1)


ExtraWriter = Callable[[Path], None]


def case_file_names(name: str) -> dict[str, str]:
    """Every file `ldseg segment` may write for case `name`, by kind (docs/architecture.md lists them)."""
    from .choices import MAX_SAMPLES

    return {
        "segmentation": f"{name}.seg.nrrd",
        "uncertainty": f"{name}-uncertainty.nrrd",
        "summary": f"{name}.json",
        "qc_picture": f"{name}-qc.png",
        "dicom_seg": f"{name}-seg.dcm",
        "dicom_probability": f"{name}-probability-seg.dcm",
        "dicom_uncertainty": f"{name}-uncertainty-pm.dcm",
        **{f"sample_{i:02d}": f"{name}-sample-{i:02d}.seg.nrrd" for i in range(MAX_SAMPLES)},
    }


def write_outputs(
    result: SegmentationResult,
    image: sitk.Image,
    directory: Path,
    name: str,
    input_description: str = "",
    extra_files: dict[str, tuple[str, ExtraWriter]] | None = None,
    cohort: dict[str, float] | None = None,
) -> dict[str, str]:
    """Writes every result file for `name` into `directory`, all or nothing; returns {kind: file name}.

    `extra_files` maps a kind to (file name, writer(path)) for outputs such as DICOM SEG, so that
    they succeed or fail together with the rest.
    """
    every = case_file_names(name)
    files = {kind: every[kind] for kind in ("segmentation", "uncertainty", "summary", "qc_picture")}
    files.update({f"sample_{i:02d}": every[f"sample_{i:02d}"] for i in range(len(result.samples))})
    # An earlier run's samples or DICOM files of this case would no longer match: they go with it.
    try:
        with staged_outputs(directory, replaces=every.values()) as staging:
            write_segmentation(result.labels, result.card, staging / files["segmentation"])
            sitk.WriteImage(result.uncertainty, str(staging / files["uncertainty"]), useCompression=True)
            for index, sample in enumerate(result.samples):
                write_segmentation(sample, result.card, staging / files[f"sample_{index:02d}"])
            write_qc_picture(image, result, staging / files["qc_picture"])
            for kind, (file_name, writer) in (extra_files or {}).items():
                writer(staging / file_name)
                files[kind] = file_name
            text = run_summary(result, files, input_description, cohort).to_json()
            (staging / files["summary"]).write_text(text, encoding="utf-8")
    except OSError as error:  # disk full, quota, permissions (ITK reports these as RuntimeError, below)
        raise LDSegError(f"Cannot write the results into {directory} ({error.strerror or error}); "
                         "nothing was written. Free some space or choose another output folder.") from None
    except RuntimeError as error:
        if "ITK" not in str(error) and "SimpleITK" not in str(error):
            raise
        raise LDSegError(f"Cannot write the results into {directory} ({itk_message(error)}); nothing was written. "
                         "Free some space or choose another output folder.") from None
    return files


def run_summary(
    result: SegmentationResult, files: dict[str, str], input_description: str = "", cohort: dict[str, float] | None = None
) -> RunSummary:
    """The result contract (ldseg/summary.py) of one run."""
    card = result.card
    return RunSummary(
        format_version=SUMMARY_FORMAT_VERSION,
        model=ModelIdentity(card.name, card.version, card.weights_sha256),
        settings=result.settings,
        device=result.device,
        structures=result.structures,
        uncertainty_range=uncertainty_range(result.settings.uncertainty, card.num_classes),
        files=files,
        labels=card.labels,
        timings_seconds={stage: round(seconds, 3) for stage, seconds in result.timings.items()},
        input=input_description,
        cohort=dict(cohort or {}),
    )


def write_qc_picture(image: sitk.Image, result: SegmentationResult, path: Path) -> None:
    """Three orthogonal slices through the segmented structures: image, fused contours, uncertainty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    array = sitk.GetArrayViewFromImage(image)
    labels = sitk.GetArrayViewFromImage(result.labels)
    uncertainty = sitk.GetArrayViewFromImage(result.uncertainty)
    foreground = np.nonzero(labels)
    centre = [int(np.median(axis)) for axis in foreground] if foreground[0].size else [s // 2 for s in labels.shape]
    low, high = np.percentile(array, [0.5, 99.5])
    top = uncertainty_range(result.settings.uncertainty, result.card.num_classes)[1]
    spacing = image.GetSpacing()[::-1]  # (z, y, x)

    figure, axes = plt.subplots(1, 3, figsize=(15, 5.4), facecolor="black")
    for axis_index, ax in enumerate(axes):
        index: list = [slice(None)] * 3
        index[axis_index] = centre[axis_index]
        rows, columns = [a for a in range(3) if a != axis_index]
        if axis_index == 2:  # keep y vertical in every view, as in the other two
            rows, columns = columns, rows

        def plane(volume: np.ndarray) -> np.ndarray:
            section = volume[tuple(index)]
            return section.T if axis_index == 2 else section

        aspect = spacing[rows] / spacing[columns]
        ax.imshow(plane(array), cmap="gray", vmin=low, vmax=high, aspect=aspect)
        heat = np.ma.masked_less(plane(uncertainty), 0.05 * top)
        ax.imshow(heat, cmap="inferno", vmin=0, vmax=top, alpha=0.6, aspect=aspect)
        for label in result.card.labels:
            mask = plane(labels) == label.value
            if mask.any():
                ax.contour(mask, levels=[0.5], colors=[label.color], linewidths=1.2)
        ax.set_title(f"{'zyx'[axis_index]} = {centre[axis_index]}", color="white")
        ax.axis("off")
    figure.suptitle(
        f"LDSeg {result.card.name} {result.card.version}: {result.settings.samples} samples, "
        f"fusion {result.settings.fusion}, uncertainty {result.settings.uncertainty} (0..{top:.2f})",
        color="white",
    )
    figure.tight_layout()
    figure.savefig(path, dpi=80, facecolor="black")
    plt.close(figure)
