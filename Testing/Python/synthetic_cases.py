"""Tiny synthetic knee-like cases and configs for fast training and evaluation tests (CPU, seconds).

A case is a small volume with two bright boxes, "femur" (label 1) above "tibia" (label 2), on a
noisy background; cases differ by a shift, so there is something to learn and to generalise.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import yaml

from ldseg.card import Architecture, Label, ModelCard

REPO = Path(__file__).resolve().parents[2]
SHAPE_ZYX = (20, 20, 36)
TINY_GRID = [16, 16, 32]
TINY_ARCHITECTURE = {
    "label_encoder_channels": [4, 8],
    "image_encoder_channels": [4, 8],
    "label_decoder_channels": [8],
    "denoiser_channels": [8, 16],
    "denoiser_attention_levels": [False, False],
    "denoiser_res_blocks": 1,
    "denoiser_norm_groups": 4,
    "encoder_groups": 2,
    "dropout": 0.0,
}
TINY_BASELINE_ARCHITECTURE = {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1, "dropout": 0.0}
NO_AUGMENTATION = {
    "flip_probability": 0.0, "affine_probability": 0.0, "elastic_probability": 0.0, "bias_field_probability": 0.0,
    "contrast_probability": 0.0, "intensity_scale_probability": 0.0, "grid_noise_probability": 0.0,
    "native_noise_probability": 0.0,
}


def case_arrays(shift: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(image int16, labels uint8) in (z, y, x) order."""
    labels = np.zeros(SHAPE_ZYX, dtype=np.uint8)
    labels[4:16, 4:16, 3 + shift:16 + shift] = 1
    labels[4:16, 4:16, 19 + shift:31 + shift] = 2
    rng = np.random.default_rng(seed)
    image = 40 + 15 * rng.standard_normal(SHAPE_ZYX) + np.where(labels == 1, 150, 0) + np.where(labels == 2, 110, 0)
    return np.clip(image, 0, 255).astype(np.int16), labels


def as_image(array: np.ndarray, spacing=(0.8, 1.0, 1.5)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    return image


def write_cases(data_dir: Path, count: int = 3) -> Path:
    """DATA_DIR/images/caseN.nii.gz and labels/caseN.nii.gz for N = 1..count."""
    for folder in ("images", "labels"):
        (data_dir / folder).mkdir(parents=True, exist_ok=True)
    for index in range(1, count + 1):
        image, labels = case_arrays(shift=index - 2, seed=index)
        sitk.WriteImage(as_image(image), str(data_dir / "images" / f"case{index}.nii.gz"))
        sitk.WriteImage(as_image(labels), str(data_dir / "labels" / f"case{index}.nii.gz"))
    return data_dir


def knee_labels() -> tuple[Label, ...]:
    """Femur and tibia with their SNOMED CT codes, as the bundled model's card lists them."""
    return ModelCard.load(REPO / "Resources" / "Models" / "knee-bones" / "model-card.json").labels


def plain_labels() -> list[dict]:
    return [dataclasses.asdict(label) for label in knee_labels()]


def tiny_config(data_dir: Path, output_dir: Path, steps: int, **overrides) -> dict:
    """A plain-data LDSeg training config with the tiny architecture (what a YAML file would hold)."""
    config = {
        "data_dir": str(data_dir), "output_dir": str(output_dir), "steps": steps,
        "train_cases": ["case1", "case2"], "validation_cases": ["case3"],
        "batch_size": 2, "learning_rate": 0.003, "seed": 0, "checkpoint_every": 2, "validate_every": 1000,
        "validation_samples": 2, "threads": 1,
        "model": {"name": "tiny", "version": "0.0.1", "model_grid": TINY_GRID, "architecture": TINY_ARCHITECTURE,
                  "labels": plain_labels()},
        "augmentation": dict(NO_AUGMENTATION),
    }
    config.update(overrides)
    return config


def tiny_baseline_config(data_dir: Path, output_dir: Path, steps: int, **overrides) -> dict:
    config = {
        "model_type": "baseline", "data_dir": str(data_dir), "output_dir": str(output_dir), "steps": steps,
        "train_cases": ["case1", "case2"], "validation_cases": ["case3"],
        "batch_size": 2, "learning_rate": 0.01, "seed": 0, "checkpoint_every": 2, "validate_every": 1000, "threads": 1,
        "model": {"name": "tiny-baseline", "version": "0.0.1", "model_grid": TINY_GRID,
                  "architecture": TINY_BASELINE_ARCHITECTURE, "labels": plain_labels()},
        "augmentation": dict(NO_AUGMENTATION),
    }
    config.update(overrides)
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def tiny_architecture() -> Architecture:
    return Architecture(**{k: tuple(v) if isinstance(v, list) else v for k, v in TINY_ARCHITECTURE.items()})
