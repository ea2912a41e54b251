"""`ldseg evaluate MODEL DATA_DIR`: accuracy, uncertainty quality and robustness on labelled cases.

Every figure is computed on the input's native grid (the label map's own voxels), per case and per
structure (the card's labels), for an LDSeg package or a deterministic baseline package alike.

Definitions (P: predicted mask of one structure, T: its true mask, dP and dT: their surface voxels,
i.e. voxels with a face neighbour outside the mask; d(a, B): Euclidean distance in mm from voxel
centre a to the nearest voxel centre of B, using the image spacing; all computed with MONAI):

| figure | definition |
| --- | --- |
| Dice | 2 |P & T| / (|P| + |T|) (1 when both are empty); `ldseg.overlap.dice`, exact in integers, checked against `monai.metrics.DiceMetric` |
| HD95 (mm) | max(95th percentile of d(a, dT) over a in dP, 95th percentile of d(b, dP) over b in dT), as MONAI's `compute_hausdorff_distance(percentile=95)`; empty when P or T is empty |
| ASSD (mm) | mean of all d(a, dT), a in dP, and d(b, dP), b in dT, pooled, as MONAI's `compute_average_surface_distance(symmetric=True)` |
| single-sample Dice | Dice of each posterior sample alone, averaged over the samples |
| pairwise Dice | sample diversity: mean Dice over all pairs of samples (1 = identical); empty for one sample |
| AUROC | how well the per-voxel uncertainty ranks the fused segmentation's error voxels (fused label != true label) above the correct ones: Mann-Whitney U / (n_error n_correct), ties counted half; 1 = perfect, 0.5 = chance |
| ECE | expected calibration error of the mean class probability: per class (one-vs-rest, background included), 20 equal-width bins, sum over bins of (bin share) x |mean probability - observed frequency|, averaged over classes; `monai.metrics.CalibrationErrorMetric` |
| noisy Dice | Dice of the fused result after adding Gaussian noise of standard deviation sigma to the [0, 1] min-max scaled image (no clipping, one fixed noise field per case scaled by sigma, seed fixed) |
| seconds | wall time of the segmentation of the clean image (all samples, fusion, uncertainty) |
| band width (mm) | sharpness of the uncertainty: volume (mm^3) of the band voxels, those whose uncertainty is >= tau, divided by the fused mask's surface area (mm^2: the voxel faces between the mask and the rest, each of its physical area). Band voxels are assigned to the structure whose fused mask is nearest (in mm), so the structures' bands add up to the whole band. A band one voxel thick along the surface gives about one voxel size |
| errors in band | share of the fused mask's error voxels (fused XOR true) whose uncertainty is >= tau: how much of what is wrong the band points at |

AUROC and ECE are computed in the uncertainty region: the bounding box of the union of the true and
the predicted foreground, grown by REGION_MARGIN voxels on every side (clipped to the volume). The
far background, trivially correct and certain, would otherwise inflate both figures.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from monai.metrics import CalibrationErrorMetric
from monai.metrics.utils import get_edge_surface_distance

from .baseline import BaselinePredictor, is_baseline_package, load_baseline_package
from .choices import BAND_THRESHOLD
from .data import Case, find_cases, read_case
from .errors import LDSegError
from .imageio import atomic_write_bytes, ensure_writable_directory
from .overlap import dice
from .prediction import Prediction, Predictor
from .settings import DEFAULT_NOISE_SIGMAS, SegmentSettings
from .training import min_max_scale

REGION_MARGIN = 5  # voxels added around the foreground bounding box for AUROC and ECE
CALIBRATION_BINS = 20
NOISE_SEED = 0
REPORT_JSON, REPORT_MARKDOWN = "evaluation.json", "evaluation.md"


# --- the common interface of LDSeg and baseline models ---------------------------------------------


class LDSegPredictor:
    """LDSeg posterior sampling through the Segmenter: N samples fused by mean probability, entropy uncertainty."""

    kind = "ldseg"

    def __init__(self, package, device: torch.device, settings: SegmentSettings) -> None:
        from .inference import Segmenter

        self.card = package.card
        self.segmenter = Segmenter(package, device)
        self.segment_settings = replace(settings, keep_samples=True).for_card(self.card)
        run = self.segment_settings  # the report states what the Segmenter was given, from one place
        self.settings = {"samples": run.samples, "steps": run.steps, "fusion": run.fusion, "uncertainty": run.uncertainty,
                         "largest_component": run.largest_component, "seed": run.seed, "device": str(device)}

    def predict(self, image: sitk.Image) -> Prediction:
        result = self.segmenter.segment(image, self.segment_settings)
        return Prediction(
            labels=sitk.GetArrayFromImage(result.labels),
            mean_probability=result.mean_probability,
            uncertainty=sitk.GetArrayFromImage(result.uncertainty),
            samples=[sitk.GetArrayFromImage(sample) for sample in result.samples],
        )


def load_predictor(model: str, device: torch.device, settings: SegmentSettings) -> Predictor:
    """A baseline package folder gives the baseline; anything else is resolved as an LDSeg model."""
    from .package import load_package
    from .store import resolve_model

    if is_baseline_package(model):
        return BaselinePredictor(load_baseline_package(model, device), device)
    return LDSegPredictor(load_package(resolve_model(model), device), device, settings)


# --- metrics --------------------------------------------------------------------------------------


def surface_distances(prediction: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...]) -> tuple[float | None, float | None]:
    """(HD95, ASSD) in mm of two boolean masks; `spacing` in array order (z, y, x). None if a mask is empty.

    One call of MONAI's get_edge_surface_distance gives both directed distance sets, from which
    HD95 and ASSD follow exactly as compute_hausdorff_distance(percentile=95) and
    compute_average_surface_distance(symmetric=True) derive them (each of those would redo the search).
    """
    if not prediction.any() or not truth.any():
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, (to_truth, to_prediction), _ = get_edge_surface_distance(
            torch.from_numpy(np.ascontiguousarray(prediction)), torch.from_numpy(np.ascontiguousarray(truth)),
            spacing=list(spacing), symmetric=True,
        )
    to_truth, to_prediction = to_truth.double().numpy(), to_prediction.double().numpy()
    hd95 = max(np.percentile(to_truth, 95), np.percentile(to_prediction, 95))
    assd = np.concatenate([to_truth, to_prediction]).mean()
    return float(hd95), float(assd)


def auroc(scores: np.ndarray, positives: np.ndarray) -> float | None:
    """Area under the ROC curve of `scores` for finding `positives` (rank formula, ties counted half).

    AUROC = (R+ - n+ (n+ + 1) / 2) / (n+ n-), R+ the sum of the positives' ranks (average rank for
    ties). None when there are no positives or no negatives.
    """
    scores, positives = np.ravel(scores), np.ravel(positives).astype(bool)
    n_pos = int(positives.sum())
    n_neg = positives.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    rank_sum = float(average_rank[inverse.ravel()][positives].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def expected_calibration_error(probability: np.ndarray, truth: np.ndarray) -> float:
    """ECE of class probabilities (C, ...) against the label map `truth` (...), averaged over classes."""
    num_classes = probability.shape[0]
    one_hot = np.stack([truth == value for value in range(num_classes)]).astype(np.float32)
    metric = CalibrationErrorMetric(num_bins=CALIBRATION_BINS, include_background=True, calibration_reduction="expected")
    metric(y_pred=torch.from_numpy(np.ascontiguousarray(probability, dtype=np.float32))[None],
           y=torch.from_numpy(one_hot)[None])
    return float(metric.aggregate())


def uncertainty_region(truth: np.ndarray, labels: np.ndarray, margin: int = REGION_MARGIN) -> tuple[slice, ...]:
    """Bounding box of union(true foreground, predicted foreground), grown by `margin` voxels."""
    foreground = (truth > 0) | (labels > 0)
    if not foreground.any():
        return tuple(slice(0, size) for size in truth.shape)
    return tuple(
        slice(max(int(indices.min()) - margin, 0), min(int(indices.max()) + 1 + margin, size))
        for indices, size in zip(np.nonzero(foreground), truth.shape)
    )


def uncertainty_quality(prediction: Prediction, truth: np.ndarray) -> dict[str, Any]:
    """AUROC of the uncertainty for the fused errors, and ECE of the mean probability, in the region."""
    box = uncertainty_region(truth, prediction.labels)
    errors = prediction.labels[box] != truth[box]
    return {
        "auroc": auroc(prediction.uncertainty[box], errors),
        "ece": expected_calibration_error(prediction.mean_probability[(slice(None), *box)], truth[box]),
        "error_voxels": int(errors.sum()),
        "region_voxels": int(errors.size),
        "region_zyx": [[s.start, s.stop] for s in box],
    }


def surface_area(mask: np.ndarray, spacing: tuple[float, ...]) -> float:
    """Area in mm^2 of the voxel faces between `mask` and the rest (the volume's border counts as outside)."""
    padded = np.pad(mask, 1)
    area = 0.0
    for axis in range(mask.ndim):
        face = float(np.prod([size for other, size in enumerate(spacing) if other != axis]))
        area += face * int(np.count_nonzero(np.diff(padded, axis=axis)))
    return area


def nearest_structure(labels: np.ndarray, values: list[int], spacing: tuple[float, ...]) -> np.ndarray:
    """For every voxel, the label value of the structure whose fused mask is nearest in mm (0 if all are empty)."""
    distances = []
    for value in values:
        mask = labels == value
        if not mask.any():
            distances.append(np.full(labels.shape, np.inf, dtype=np.float32))
            continue
        image = sitk.GetImageFromArray(mask.astype(np.uint8))
        image.SetSpacing(tuple(float(size) for size in spacing[::-1]))
        distance = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
        distances.append(sitk.GetArrayFromImage(distance))
    stacked = np.stack(distances)
    nearest = np.asarray(values)[np.argmin(stacked, axis=0)]
    return np.where(np.isfinite(stacked.min(axis=0)), nearest, 0)


def sharpness(prediction: Prediction, truth: np.ndarray, value: int, owner: np.ndarray, spacing: tuple[float, ...],
              tau: float) -> dict[str, Any]:
    """Band width (mm) and the share of the fused mask's error voxels in the band (module docstring)."""
    band = prediction.uncertainty >= tau
    fused = prediction.labels == value
    area = surface_area(fused, spacing)
    errors = fused ^ (truth == value)
    voxel_volume = float(np.prod(spacing))
    return {
        "band_width_mm": float(np.count_nonzero(band & (owner == value)) * voxel_volume / area) if area else None,
        "errors_in_band": float(np.count_nonzero(band & errors) / np.count_nonzero(errors)) if errors.any() else None,
    }


def structure_figures(prediction: Prediction, truth: np.ndarray, value: int, spacing: tuple[float, ...]) -> dict[str, Any]:
    """Dice, HD95, ASSD of the fused mask; single-sample Dice and pairwise Dice of the samples."""
    from .uncertainty import mean_pairwise_dice

    true_mask = truth == value
    fused = prediction.labels == value
    sample_masks = [sample == value for sample in prediction.samples]
    hd95, assd = surface_distances(fused, true_mask, spacing)
    return {
        "dice": dice(fused, true_mask),
        "hd95_mm": hd95,
        "assd_mm": assd,
        "single_sample_dice": float(np.mean([dice(mask, true_mask) for mask in sample_masks])),
        "pairwise_dice": mean_pairwise_dice(sample_masks) if len(sample_masks) > 1 else None,
        "noisy_dice": {},
    }


def noisy_image(image: sitk.Image, sigma: float, seed: int = NOISE_SEED) -> sitk.Image:
    """The [0, 1] min-max scaled image plus Gaussian noise of standard deviation `sigma` (same field for every sigma)."""
    unit = min_max_scale(sitk.GetArrayFromImage(image))
    noise = np.random.default_rng(seed).standard_normal(unit.shape, dtype=np.float32)
    noisy = sitk.GetImageFromArray(unit + np.float32(sigma) * noise)
    noisy.CopyInformation(image)
    return noisy


# --- one case, all cases, the report --------------------------------------------------------------


def evaluate_case(
    predictor: Predictor, case: Case, noise_sigmas: tuple[float, ...] = (), band_threshold: float = BAND_THRESHOLD
) -> dict[str, Any]:
    """All figures of one case (see the module docstring)."""
    image, truth_image = read_case(case, predictor.card.num_classes)
    truth = sitk.GetArrayFromImage(truth_image)
    spacing = tuple(float(s) for s in image.GetSpacing()[::-1])  # (x, y, z) -> array order (z, y, x)
    started = time.perf_counter()
    prediction = predictor.predict(image)
    seconds = time.perf_counter() - started
    values = [label.value for label in predictor.card.labels]
    owner = nearest_structure(prediction.labels, values, spacing)
    structures = {
        label.name: {
            **structure_figures(prediction, truth, label.value, spacing),
            **sharpness(prediction, truth, label.value, owner, spacing, band_threshold),
        }
        for label in predictor.card.labels
    }
    for sigma in noise_sigmas:
        noisy = predictor.predict(noisy_image(image, sigma)).labels
        for label in predictor.card.labels:
            structures[label.name]["noisy_dice"][f"{sigma:g}"] = dice(noisy == label.value, truth == label.value)
    return {"seconds": seconds, "structures": structures, "uncertainty": uncertainty_quality(prediction, truth)}


def _mean(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return float(np.mean(present)) if present else None


def summarise(cases: dict[str, dict[str, Any]], structure_names: list[str]) -> dict[str, Any]:
    """Means over cases of every per-structure figure, of AUROC, ECE and seconds."""
    per_structure = {}
    for name in structure_names:
        figures = [case["structures"][name] for case in cases.values()]
        keys = [key for key in figures[0] if key != "noisy_dice"]
        mean = {key: _mean([f[key] for f in figures]) for key in keys}
        mean["noisy_dice"] = {sigma: _mean([f["noisy_dice"][sigma] for f in figures]) for sigma in figures[0]["noisy_dice"]}
        per_structure[name] = mean
    return {
        "structures": per_structure,
        "auroc": _mean([case["uncertainty"]["auroc"] for case in cases.values()]),
        "ece": _mean([case["uncertainty"]["ece"] for case in cases.values()]),
        "seconds": _mean([case["seconds"] for case in cases.values()]),
    }


def _cell(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _structure_row(case: str, name: str, f: dict[str, Any], sigmas: list[str]) -> str:
    cells = [case, name, _cell(f["dice"], 4), _cell(f["hd95_mm"], 2), _cell(f["assd_mm"], 2),
             _cell(f["single_sample_dice"], 4), _cell(f["pairwise_dice"], 4), _cell(f["band_width_mm"], 2),
             _cell(f["errors_in_band"], 3)]
    cells += [_cell(f["noisy_dice"].get(sigma), 4) for sigma in sigmas]
    return "| " + " | ".join(cells) + " |"


def markdown_report(report: dict[str, Any]) -> str:
    """The Markdown tables of evaluation.md: accuracy and robustness, then uncertainty quality and time."""
    model, settings, cases, mean = report["model"], report["settings"], report["cases"], report["mean"]
    sigmas = [f"{sigma:g}" for sigma in settings["noise_sigmas"]]
    lines = [
        f"# Evaluation of {model['name']} {model['version']} ({model['kind']})", "",
        f"Data: {report['data_dir']}; settings: " + ", ".join(f"{k} {v}" for k, v in settings.items()) + ".",
        "Figures on each input's native grid; distances in mm; definitions in ldseg/evaluation.py.", "",
        "| case | structure | Dice | HD95 (mm) | ASSD (mm) | single-sample Dice | pairwise Dice | "
        f"band width (mm), tau {settings['band_threshold']:g} | errors in band | "
        + " | ".join(f"Dice sigma={s}" for s in sigmas) + " |",
        "|" + " --- |" * (9 + len(sigmas)),
    ]
    for case_name, case in cases.items():
        lines += [_structure_row(case_name, name, f, sigmas) for name, f in case["structures"].items()]
    lines += [_structure_row("**mean**", name, f, sigmas) for name, f in mean["structures"].items()]
    lines += [
        "", f"Uncertainty ({report['uncertainty_measure']}) quality in the region {report['uncertainty_region']}:", "",
        "| case | AUROC (errors) | ECE | error voxels | region voxels | seconds |", "| --- | --- | --- | --- | --- | --- |",
    ]
    for case_name, case in cases.items():
        u = case["uncertainty"]
        lines.append(f"| {case_name} | {_cell(u['auroc'], 4)} | {_cell(u['ece'], 4)} | {u['error_voxels']} | "
                     f"{u['region_voxels']} | {case['seconds']:.1f} |")
    lines.append(f"| **mean** | {_cell(mean['auroc'], 4)} | {_cell(mean['ece'], 4)} | | | {_cell(mean['seconds'], 1)} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], output: Path) -> None:
    atomic_write_bytes(output / REPORT_JSON, (json.dumps(report, indent=2) + "\n").encode("utf-8"))
    atomic_write_bytes(output / REPORT_MARKDOWN, markdown_report(report).encode("utf-8"))


def _case_line(name: str, figures: dict[str, Any]) -> str:
    dices = ", ".join(f"{structure} Dice {f['dice']:.3f}" for structure, f in figures["structures"].items())
    auroc_value = figures["uncertainty"]["auroc"]
    return f"{name}: {dices}; uncertainty AUROC {_cell(auroc_value, 3)}; {figures['seconds']:.1f} s per segmentation"


def run_evaluation(
    model: str,
    data_dir: Path,
    output: Path,
    cases: tuple[str, ...] = (),
    settings: SegmentSettings = SegmentSettings(),
    noise: tuple[float, ...] = DEFAULT_NOISE_SIGMAS,
    device: str = "auto",
    band_threshold: float = BAND_THRESHOLD,
) -> dict[str, Any]:
    """Evaluates `model` on `data_dir` (the named cases, or all) and writes evaluation.json and .md into `output`.

    `settings` say how an LDSeg model segments (unset fields: its card's defaults); a baseline ignores them.
    """
    from .inference import select_device

    if any(sigma < 0 for sigma in noise):
        raise LDSegError(f"Noise sigmas must be >= 0 (got {list(noise)}).")
    output = ensure_writable_directory(output)
    found = find_cases(data_dir, tuple(cases))
    predictor = load_predictor(model, select_device(device), settings)
    results: dict[str, dict[str, Any]] = {}
    for index, case in enumerate(found, 1):
        print(f"[{index}/{len(found)}] {case.name}: segmenting (clean, then {len(noise)} noise level(s))", flush=True)
        results[case.name] = evaluate_case(predictor, case, tuple(noise), band_threshold)
        print(f"[{index}/{len(found)}] " + _case_line(case.name, results[case.name]), flush=True)
    card = predictor.card
    report = {
        "model": {"name": card.name, "version": card.version, "kind": predictor.kind, "weights_sha256": card.weights_sha256},
        "data_dir": str(data_dir),
        "settings": {**predictor.settings, "noise_sigmas": [float(s) for s in noise], "noise_seed": NOISE_SEED,
                     "band_threshold": band_threshold},
        "uncertainty_measure": predictor.settings["uncertainty"],
        "uncertainty_region": f"bounding box of union(true, predicted foreground) grown by {REGION_MARGIN} voxels",
        "cases": results,
        "mean": summarise(results, [label.name for label in card.labels]),
    }
    write_report(report, output)
    print(f"Wrote {output / REPORT_JSON} and {output / REPORT_MARKDOWN}", flush=True)
    return report
