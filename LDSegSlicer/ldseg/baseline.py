"""A deterministic 3D U-Net baseline, trained and evaluated exactly like LDSeg, for side-by-side figures.

Same model grid, intensity normalisation and resampling (ldseg.preprocess), same cases, same
augmentation and batch drawing (the Trainer's `batch`, seeded by (seed, step)), same checkpoint,
resume and log cadence (the Trainer's `run`), and the same segmentation loss (Dice + CE, weights
from the config). Only the network differs: MONAI's UNet maps the image straight to class logits.

A baseline package is a folder with `baseline-card.json` (not `model-card.json`), the weights in
safetensors and their SHA-256 in the card: `ldseg evaluate` accepts it, while `ldseg segment`, the
model store and the Slicer panel do not list it. `ldseg train CONFIG` trains it when the config
says `model_type: baseline` (see `train_from_config`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from monai.networks.nets import UNet
from safetensors import SafetensorError
from safetensors.torch import load_file

from .card import Label, Normalization
from .errors import LDSegError
from .download import sha256_of
from .imageio import atomic_write_bytes
from .package import write_weights
from .overlap import dice
from .postprocess import keep_largest_components
from .prediction import Prediction
from .preprocess import prepare_image, probabilities_to_input_grid
from .schema import from_plain
from .training import RunConfig, TrainConfig, Trainer, read_config_file
from .uncertainty import class_labels, entropy

BASELINE_CARD_FILE = "baseline-card.json"
BASELINE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class BaselineArchitecture:
    """MONAI UNet sizes: one entry of `channels` per level, one stride per downsampling."""

    channels: tuple[int, ...] = (16, 32, 64, 128, 128)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    num_res_units: int = 1
    dropout: float = 0.1

    @property
    def downsampling_factor(self) -> int:
        return math.prod(self.strides)


@dataclass(frozen=True)
class BaselineCard:
    """The baseline's card: the fields of ldseg.card.ModelCard that preprocessing and evaluation read
    (labels, model_grid, normalization, num_classes), its own architecture, no diffusion."""

    name: str
    version: str
    description: str
    labels: tuple[Label, ...]
    model_grid: tuple[int, int, int]  # (D, H, W) = numpy (z, y, x) order
    architecture: BaselineArchitecture = field(default_factory=BaselineArchitecture)
    normalization: Normalization = field(default_factory=Normalization)
    weights_file: str = "model.safetensors"
    weights_sha256: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    model_type: str = "baseline"
    format_version: int = BASELINE_FORMAT_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.labels) + 1

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def load(cls, path: Path) -> BaselineCard:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            card = from_plain(cls, data, f"Baseline card {path}")
        except FileNotFoundError:
            raise LDSegError(f"Baseline card {path} does not exist.") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError, KeyError) as error:
            raise LDSegError(f"Baseline card {path} is not valid: {error}") from None
        card.validate(str(path))
        return card

    def validate(self, source: str) -> None:
        arch = self.architecture
        problems = []
        if self.model_type != "baseline" or self.format_version != BASELINE_FORMAT_VERSION:
            problems.append(f"model_type {self.model_type!r} / format_version {self.format_version} is not baseline / 1")
        if len(arch.strides) != len(arch.channels) - 1:
            problems.append("architecture.strides needs one entry per downsampling (len(channels) - 1)")
        if len(self.model_grid) != 3 or any(size <= 0 or size % arch.downsampling_factor for size in self.model_grid):
            problems.append(f"model_grid {self.model_grid} is not three sizes divisible by {arch.downsampling_factor}")
        if sorted(label.value for label in self.labels) != list(range(1, len(self.labels) + 1)) or not self.labels:
            problems.append("label values must be 1..N")
        if problems:
            raise LDSegError(f"Baseline card {source} is not valid: " + "; ".join(problems) + ".")


def build_network(card: BaselineCard) -> UNet:
    arch = card.architecture
    return UNet(
        spatial_dims=3, in_channels=1, out_channels=card.num_classes, channels=arch.channels, strides=arch.strides,
        num_res_units=arch.num_res_units, dropout=arch.dropout,
    )


# --- package ----------------------------------------------------------------------------------------


@dataclass
class BaselinePackage:
    card: BaselineCard
    network: UNet
    directory: Path


def is_baseline_package(path: str | Path) -> bool:
    return (Path(path).expanduser() / BASELINE_CARD_FILE).is_file()


def save_baseline_package(network: UNet, card: BaselineCard, directory: str | Path) -> BaselineCard:
    """Writes the weights and the card with their SHA-256; returns the final card."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sha256 = write_weights(network, directory / card.weights_file, {"model": card.name, "version": card.version, "model_type": "baseline"})
    card = dataclasses.replace(card, weights_sha256=sha256)
    atomic_write_bytes(directory / BASELINE_CARD_FILE, card.to_json().encode("utf-8"))
    return card


def load_baseline_package(directory: str | Path, device: str | torch.device = "cpu") -> BaselinePackage:
    """Reads the card, verifies the weights' SHA-256 and loads them into the UNet it describes."""
    directory = Path(directory).expanduser()
    card = BaselineCard.load(directory / BASELINE_CARD_FILE)
    weights = directory / card.weights_file
    if not weights.is_file() or sha256_of(weights) != card.weights_sha256:
        raise LDSegError(f"Baseline '{card.name}': {weights.name} is missing or its SHA-256 differs from the card.")
    try:
        network = build_network(card)
        network.load_state_dict(load_file(str(weights), device="cpu"), strict=True)
    except (SafetensorError, OSError, RuntimeError) as error:
        raise LDSegError(f"Baseline '{card.name}': weights do not match the card ({str(error).splitlines()[0]}).") from None
    return BaselinePackage(card, network.to(device).eval(), directory)


class BaselinePredictor:
    """The evaluation's Predictor for the baseline: one deterministic sample, post-processed like LDSeg's fused
    map (largest component per structure); uncertainty = entropy of its softmax."""

    kind = "baseline"

    def __init__(self, package: BaselinePackage, device: torch.device) -> None:
        self.card, self.network, self.device = package.card, package.network.to(device).eval(), device
        self.settings = {"samples": 1, "steps": 0, "fusion": "none", "uncertainty": "entropy",
                         "largest_component": True, "device": str(device)}

    @torch.no_grad()
    def predict(self, image: sitk.Image) -> Prediction:
        prepared = prepare_image(image, self.card)
        probability = self.network(prepared.tensor.to(self.device)).float().softmax(dim=1)[0]
        on_input = probabilities_to_input_grid(probability, prepared)
        labels = keep_largest_components(class_labels(on_input), [label.value for label in self.card.labels])
        return Prediction(labels, on_input, entropy(on_input).astype(np.float32), [labels])


# --- training ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaselineSpec:
    name: str = "knee-bones-unet-baseline"
    version: str = "0.1.0"
    description: str = "Deterministic MONAI 3D UNet baseline for femur and tibia bones on knee MRI (comparison only)."
    model_grid: tuple[int, int, int] = (48, 48, 96)
    labels: tuple[Label, ...] = ()  # the structures, with names, colors and codes: the config lists them
    architecture: BaselineArchitecture = field(default_factory=BaselineArchitecture)
    normalization: Normalization = field(default_factory=Normalization)


@dataclass(frozen=True)
class BaselineTrainConfig(RunConfig):
    """Training config of the baseline: the run settings shared with TrainConfig, and the UNet's spec."""

    model_type: str = "baseline"
    model: BaselineSpec = field(default_factory=BaselineSpec)

    def card(self) -> BaselineCard:
        spec = self.model
        card = BaselineCard(
            name=spec.name, version=spec.version, description=spec.description, labels=spec.labels,
            model_grid=spec.model_grid, architecture=spec.architecture, normalization=spec.normalization,
        )
        card.validate("of this training config")
        return card


class BaselineTrainer(Trainer):
    """The LDSeg Trainer with the UNet in place of the four networks.

    Inherits `batch` (data, augmentation, seeding) and `run` (loop, log, checkpoints, resume) unchanged;
    replaces what touches the networks: the network itself, the step, validation, checkpoint contents and export.
    """

    def make_network(self) -> UNet:  # type: ignore[override]
        return build_network(self.card)

    def prepare_training_state(self) -> None:
        """No EMA copy and no noise schedule: the UNet is trained as it is."""

    def train_step(self, step: int) -> dict[str, float]:
        self.network.train()
        self.seed_step(step)
        x, y = self.next_batch(step)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            logits = self.network(x)
        loss = self.segmentation_loss(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def inference_network(self) -> UNet:  # type: ignore[override]
        return self.network.eval()

    @torch.no_grad()
    def validate(self) -> dict[str, dict[str, float]]:
        network = self.inference_network()
        results = {}
        for case in self.validation_cases:
            predicted = network(case.image[None]).argmax(1)[0]
            results[case.name] = {
                label.name: dice(predicted == label.value, case.labels[0] == label.value) for label in self.card.labels
            }
        return results

    def checkpoint_fingerprint(self) -> str:
        return json.dumps({"model_type": "baseline", **dataclasses.asdict(self.card.architecture)})

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def export(self, seconds: float) -> BaselineCard:  # type: ignore[override]
        card = dataclasses.replace(self.card, training=self.training_record(seconds))
        return save_baseline_package(self.inference_network(), card, self.output_dir / "model")


# --- `ldseg train` dispatch -------------------------------------------------------------------------

MODEL_TYPES = ("ldseg", "baseline")


def config_model_type(path: str | Path) -> str:
    """The config's `model_type` (default "ldseg")."""
    data = read_config_file(path)
    return data.get("model_type", "ldseg") if isinstance(data, dict) else "ldseg"


def train_from_config(path: str | Path, log: Callable[[str], None] = print):
    """`ldseg train CONFIG`: the LDSeg Trainer, or the baseline's when the config says `model_type: baseline`.

    Returns the exported card (name, version, weights_sha256).
    """
    model_type = config_model_type(path)
    if model_type == "baseline":
        return BaselineTrainer(BaselineTrainConfig.load(path), log).run()
    if model_type == "ldseg":
        return Trainer(TrainConfig.load(path), log).run()
    raise LDSegError(f"Training config {path}: model_type {model_type!r} is not one of {', '.join(MODEL_TYPES)}.")
