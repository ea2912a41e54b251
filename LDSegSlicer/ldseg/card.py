"""The model card: the JSON document that describes a model package.

Everything that differs between models lives here rather than in code: network widths, the model
grid, the labels with their names, colors and SNOMED CT codes, the intensity normalisation, the
diffusion schedule, how the model was trained and what it measured, and the SHA-256 of its weights.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LDSegError
from .schema import from_plain

CARD_FORMAT_VERSION = 1
CARD_FILE = "model-card.json"  # the card's name inside a model package folder
# A card's name and weights_file become file names: one plain path component each, never a path.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SAFE_WEIGHTS_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.safetensors")
MAX_TEXT = 256  # characters of a description, label name or code
# Separators of Slicer's segmentation header fields (terminology "~" and "^", tags "|").
HEADER_SEPARATORS = "~^|"


@dataclass(frozen=True)
class Code:
    """A coded concept (DICOM code sequence item), e.g. SCT 71341001 "Bone structure of femur"."""

    scheme: str
    code: str
    meaning: str


@dataclass(frozen=True)
class Label:
    """One segmented structure: label value in the label map, display name, color and codes."""

    value: int
    name: str
    color: tuple[float, float, float]  # RGB in [0, 1]
    category: Code
    type: Code


@dataclass(frozen=True)
class Architecture:
    """Sizes of the four LDSeg networks (see ldseg-method.md, "The four networks").

    Every encoder stage after the first halves the grid, so the latent grid is the model grid
    divided by 2 ** (len(label_encoder_channels) - 1).

    decoder_image_skips gives the label decoder the image encoder's feature maps at every scale it
    upsamples to (a U-Net's skip connections): the diffusion stays in the small latent, which fixes
    the shape, while boundaries are drawn at the model grid's own resolution. Without skips the
    decoder sees the latent alone and its boundaries are only as sharp as the latent is fine.
    full_resolution_kernel is the kernel of the decoder's last (model-grid) stage: 1 makes it a
    per-voxel mixing of the upsampled sample features with the shared image features, which keeps
    the per-sample cost at full resolution small.
    """

    label_encoder_channels: tuple[int, ...] = (16, 32, 64, 64, 32)
    image_encoder_channels: tuple[int, ...] = (16, 32, 64, 64, 32)
    label_decoder_channels: tuple[int, ...] = (32, 64, 64, 32)
    denoiser_channels: tuple[int, ...] = (16, 32, 64)
    denoiser_attention_levels: tuple[bool, ...] = (False, True, True)
    denoiser_res_blocks: int = 2
    denoiser_norm_groups: int = 4
    encoder_groups: int = 4
    dropout: float = 0.2
    decoder_image_skips: bool = False
    full_resolution_kernel: int = 3

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.label_encoder_channels) - 1)


@dataclass(frozen=True)
class Diffusion:
    """Noise schedule and sampling defaults.

    denoised_latent says how the training step turns the predicted noise into the latent that the
    decoder sees: "x0" is the textbook estimate (z_lt - sqrt(1 - abar_t) z_nt) / sqrt(abar_t);
    "difference" is the reference code's z_lt - z_nt.
    """

    train_timesteps: int = 1000
    schedule: str = "cosine"
    denoised_latent: str = "x0"
    default_steps: int = 2
    default_samples: int = 8


@dataclass(frozen=True)
class Normalization:
    """Per-volume robust intensity normalisation: percentiles mapped to [0, 1], then clipped."""

    lower_percentile: float = 0.5
    upper_percentile: float = 99.5


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    description: str
    labels: tuple[Label, ...]
    model_grid: tuple[int, int, int]  # (D, H, W) = numpy (z, y, x) order
    architecture: Architecture = field(default_factory=Architecture)
    diffusion: Diffusion = field(default_factory=Diffusion)
    normalization: Normalization = field(default_factory=Normalization)
    weights_file: str = "model.safetensors"
    weights_sha256: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format_version: int = CARD_FORMAT_VERSION

    @property
    def num_classes(self) -> int:
        """Background plus one class per label."""
        return len(self.labels) + 1

    @property
    def latent_grid(self) -> tuple[int, int, int]:
        factor = self.architecture.downsampling_factor
        return tuple(size // factor for size in self.model_grid)  # type: ignore[return-value]

    def label_by_value(self, value: int) -> Label:
        for label in self.labels:
            if label.value == value:
                return label
        raise KeyError(value)

    # --- JSON -----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model card") -> ModelCard:
        """Builds a card from parsed JSON, refusing unknown keys and wrong types with a clear message."""
        try:
            card = from_plain(cls, data, source)
        except (TypeError, ValueError, KeyError) as error:
            raise LDSegError(f"{source} is not a valid LDSeg model card: {error}") from None
        card._validate(source)
        return card

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        path = Path(path)
        from .limits import current

        try:
            current().check_bytes(path.stat().st_size, "max_card_bytes", f"Model card {path}")
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LDSegError(f"Model card {path} does not exist.") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise LDSegError(f"Model card {path} cannot be read as JSON ({error}).") from None
        except RecursionError:
            raise LDSegError(f"Model card {path} is nested too deeply to be a model card.") from None
        return cls.from_dict(data, source=f"Model card {path}")

    def _validate(self, source: str) -> None:
        problems = []
        if self.format_version != CARD_FORMAT_VERSION:
            problems.append(f"format_version {self.format_version} (this LDSeg reads {CARD_FORMAT_VERSION})")
        if len(self.model_grid) != 3 or any(size <= 0 for size in self.model_grid):
            problems.append(f"model_grid {self.model_grid} is not three positive sizes")
        arch = self.architecture
        if len(arch.image_encoder_channels) != len(arch.label_encoder_channels):
            problems.append("image and label encoders must downsample the same number of times")
        if len(arch.label_decoder_channels) != len(arch.label_encoder_channels) - 1:
            problems.append("label_decoder_channels needs one entry per encoder downsampling")
        if len(arch.denoiser_attention_levels) != len(arch.denoiser_channels):
            problems.append("denoiser_attention_levels needs one entry per denoiser level")
        # the encoders halve the grid per stage, and the denoiser halves the latent per level
        factor = arch.downsampling_factor * 2 ** (len(arch.denoiser_channels) - 1)
        if any(size % factor for size in self.model_grid):
            problems.append(
                f"model_grid {self.model_grid} is not divisible by {factor} (the encoders' and the denoiser's downsampling)"
            )
        if arch.full_resolution_kernel not in (1, 3):
            problems.append(f"architecture.full_resolution_kernel {arch.full_resolution_kernel} is not 1 or 3")
        values = [label.value for label in self.labels]
        if not self.labels or sorted(values) != list(range(1, len(values) + 1)):
            problems.append(f"label values {values} must be 1..N")
        if self.diffusion.denoised_latent not in ("x0", "difference"):
            problems.append(f"diffusion.denoised_latent {self.diffusion.denoised_latent!r} is not 'x0' or 'difference'")
        if self.diffusion.schedule != "cosine":
            problems.append(f"diffusion.schedule {self.diffusion.schedule!r} is not 'cosine'")
        problems += _range_problems(self) + _text_problems(self)
        if problems:
            raise LDSegError(f"{source} is not a valid LDSeg model card: " + "; ".join(problems) + ".")


def _range_problems(card: ModelCard) -> list[str]:
    """Numbers outside what a model can be: they would exhaust memory or fail deep in torch."""
    from .choices import MAX_SAMPLES, MAX_STEPS

    arch, diffusion, normalization = card.architecture, card.diffusion, card.normalization
    checks = [
        (all(1 <= size <= 1024 for size in card.model_grid), f"model_grid {card.model_grid} has a size outside 1..1024"),
        (1 <= len(card.labels) <= 255, f"{len(card.labels)} labels (1..255 fit a label map)"),
        (1 <= len(arch.label_encoder_channels) <= 8, "label_encoder_channels needs 1..8 stages"),
        (1 <= len(arch.denoiser_channels) <= 8, "denoiser_channels needs 1..8 levels"),
        (1 <= arch.denoiser_res_blocks <= 16, f"denoiser_res_blocks {arch.denoiser_res_blocks} is outside 1..16"),
        (1 <= arch.encoder_groups <= 1024, f"encoder_groups {arch.encoder_groups} is outside 1..1024"),
        (1 <= arch.denoiser_norm_groups <= 1024, f"denoiser_norm_groups {arch.denoiser_norm_groups} is outside 1..1024"),
        (all(channels % arch.denoiser_norm_groups == 0 for channels in arch.denoiser_channels if channels > 0),
         f"denoiser_channels {arch.denoiser_channels} are not multiples of denoiser_norm_groups {arch.denoiser_norm_groups}"),
        (0.0 <= arch.dropout < 1.0, f"dropout {arch.dropout} is outside [0, 1)"),
        (1 <= diffusion.train_timesteps <= 100_000, f"train_timesteps {diffusion.train_timesteps} is outside 1..100000"),
        (1 <= diffusion.default_steps <= min(MAX_STEPS, diffusion.train_timesteps),
         f"default_steps {diffusion.default_steps} is outside 1..{min(MAX_STEPS, diffusion.train_timesteps)}"),
        (1 <= diffusion.default_samples <= MAX_SAMPLES, f"default_samples {diffusion.default_samples} is outside 1..{MAX_SAMPLES}"),
        (0.0 <= normalization.lower_percentile < normalization.upper_percentile <= 100.0,
         f"percentiles {normalization.lower_percentile}, {normalization.upper_percentile} are not 0 <= lower < upper <= 100"),
    ]
    channels = (*arch.label_encoder_channels, *arch.image_encoder_channels, *arch.label_decoder_channels,
                *arch.denoiser_channels)
    checks.append((all(1 <= c <= 4096 for c in channels), "a channel count is outside 1..4096"))
    for label in card.labels:
        checks.append((all(math.isfinite(c) and 0.0 <= c <= 1.0 for c in label.color),
                       f"label {label.value} color {label.color} is not three numbers in [0, 1]"))
    return [problem for good, problem in checks if not good]


def _text_problems(card: ModelCard) -> list[str]:
    """Card text reaches file names, NRRD headers, DICOM and the terminal: it must be plain text."""
    problems = []
    if not SAFE_NAME.fullmatch(card.name):
        problems.append(f"name {card.name!r} is not a plain name (letters, digits, '.', '_', '-'; at most 64)")
    if not SAFE_NAME.fullmatch(card.version):
        problems.append(f"version {card.version!r} is not a plain version (letters, digits, '.', '_', '-')")
    if not SAFE_WEIGHTS_FILE.fullmatch(card.weights_file):
        problems.append(f"weights_file {card.weights_file!r} is not a plain .safetensors file name inside the package")
    if not re.fullmatch(r"[0-9a-f]{64}|", card.weights_sha256):
        problems.append("weights_sha256 is not 64 lowercase hex digits")
    names = [label.name.strip() for label in card.labels]
    if not all(names) or len(set(names)) != len(names):
        problems.append(f"label names {names} must be non-empty and different")
    texts = [("description", card.description, "")]
    for label in card.labels:  # these go into .seg.nrrd headers, which are ASCII
        texts.append((f"label {label.value} name", label.name, HEADER_SEPARATORS))
        for part, code in (("category", label.category), ("type", label.type)):
            for key in ("scheme", "code", "meaning"):
                texts.append((f"label {label.value} {part} {key}", getattr(code, key), HEADER_SEPARATORS))
    for what, text, forbidden in texts:
        problem = text_problem(text, forbidden)
        if problem is None and forbidden and not text.isascii():
            problem = "is not plain ASCII text, which segmentation file headers need"
        if problem:
            problems.append(f"{what} {problem}")
    return problems


def text_problem(text: str, forbidden: str = "") -> str | None:
    """Why `text` is unfit for headers and terminals (control or format characters, length), or None."""
    if len(text) > MAX_TEXT:
        return f"is longer than {MAX_TEXT} characters"
    for character in text:
        if unicodedata.category(character) in ("Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn") or character in forbidden:
            return f"contains the character {character!r}, which is not allowed there"
    return None
