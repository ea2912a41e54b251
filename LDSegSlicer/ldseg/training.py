"""`ldseg train CONFIG`: end-to-end LDSeg training (ldseg-method.md, "Noise schedule and training step").

One step: z_l0 = label_enc(y); z_i = image_enc(X); t ~ U{0..T-1}; eps ~ N(0, I);
z_lt = sqrt(abar_t) z_l0 + sqrt(1 - abar_t) eps; z_nt = denoiser(z_lt, z_i, t);
z_dn = renormalise(denoised latent); y_hat = label_dec(z_dn);
loss = CE(y, y_hat) + 2 (1 - Dice(y, y_hat)) + lambda MSE(eps, z_nt). Gradients reach all four networks.

Every step draws its randomness from (seed, step), so a run resumed from a checkpoint continues
exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import SimpleITK as sitk
import torch
import yaml
from monai.losses import DiceCELoss
from monai.transforms import (
    Compose,
    Rand3DElasticd,
    RandAdjustContrastd,
    RandAffined,
    RandBiasFieldd,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityd,
)

from .card import Architecture, Diffusion, Label, ModelCard, Normalization
from .data import Case, find_cases, read_case
from .errors import CancelledError, LDSegError
from .imageio import atomic_write_bytes, one_line
from .inference import select_device
from .interrupt import STOP
from .networks import LDSegNetwork
from .overlap import dice
from .package import save_package
from .posterior import draw_samples, initial_noise
from .preprocess import AxisOrientation, image_to_model_grid, labels_to_model_grid, normalise_intensity
from .sampler import add_noise, cosine_alphas_cumprod, denoised_latent, renormalise
from .schema import from_plain

CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "train-log.jsonl"


@dataclass(frozen=True)
class ModelSpec:
    """The model-card fields that a training run chooses."""

    name: str = "knee-bones"
    version: str = "0.1.0"
    description: str = "LDSeg latent-diffusion segmentation of femur and tibia bones on knee MRI."
    labels: tuple[Label, ...] = ()  # the structures, with names, colors and codes: the config lists them
    model_grid: tuple[int, int, int] = (48, 48, 96)
    architecture: Architecture = field(default_factory=Architecture)
    diffusion: Diffusion = field(default_factory=Diffusion)
    normalization: Normalization = field(default_factory=Normalization)


@dataclass(frozen=True)
class Augmentation:
    """Random transforms on the model grid (MONAI), plus noise added to the [0, 1]-scaled native image.

    The native noise mimics how robustness is evaluated (Gaussian noise on the min-max scaled input
    before any preprocessing), which grid-level noise alone does not: downsampling smooths it.
    """

    flip_axes: tuple[int, ...] = (0,)  # left-right only: flipping other axes swaps femur and tibia
    flip_probability: float = 0.5
    affine_probability: float = 0.7
    rotate_radians: float = 0.15
    scale_fraction: float = 0.1
    translate_voxels: float = 3.0
    elastic_probability: float = 0.1
    bias_field_probability: float = 0.3
    contrast_probability: float = 0.3
    intensity_scale_probability: float = 0.3
    grid_noise_probability: float = 0.3
    grid_noise_std: float = 0.05
    native_noise_probability: float = 0.25
    native_noise_max_sigma: float = 0.25


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice is an error instead of the last one winning."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        repeated = sorted({str(key) for key in keys if keys.count(key) > 1})
        if repeated:
            raise yaml.constructor.ConstructorError(None, None, f"key {repeated[0]!r} is given twice", node.start_mark)
        return super().construct_mapping(node, deep=deep)


def read_config_file(path: str | Path) -> Any:
    """Parses a YAML or TOML training config (by suffix) into plain data, with one clear error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".toml":
            import tomllib

            return tomllib.loads(text)
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise LDSegError(f"Training config {path} does not exist.") from None
    except Exception as error:  # parser errors of either format
        raise LDSegError(f"Training config {path} cannot be parsed: {one_line(error)}") from None


def load_training_config(kind: type, path: str | Path):
    """Builds config dataclass `kind` from a file, refusing unknown keys and wrong types; relative
    data and output paths are taken from the config file's folder."""
    path = Path(path)
    try:
        config = from_plain(kind, read_config_file(path), "config")
    except (TypeError, KeyError) as error:
        raise LDSegError(f"Training config {path}: {str(error).strip(chr(39))}.") from None
    problems = _number_problems(config, "config")
    if problems:
        raise LDSegError(f"Training config {path}: " + "; ".join(problems) + ".")
    card = config.card() if hasattr(config, "card") else None
    if isinstance(card, ModelCard):  # the card it will write must be one that loads again
        ModelCard.from_dict(card.to_dict(), source=f"Training config {path}: the model")
    base = path.resolve().parent
    return dataclasses.replace(config, data_dir=str(base / config.data_dir), output_dir=str(base / config.output_dir))


AT_LEAST_ONE = ("steps", "batch_size", "checkpoint_every", "validate_every", "validation_samples")


def _number_problems(config: Any, where: str) -> list[str]:
    """Numbers a training run cannot use: NaN or infinite, negative, zero counts, probabilities above 1."""
    problems = []
    for item in dataclasses.fields(config):
        value, name = getattr(config, item.name), f"{where}.{item.name}"
        if dataclasses.is_dataclass(value):
            if item.name not in ("architecture", "diffusion", "normalization"):  # the model card checks these
                problems += _number_problems(value, name)
        elif isinstance(value, float) and not (math.isfinite(value) and value >= 0):
            problems.append(f"{name} {value} must be a finite number >= 0")
        elif isinstance(value, int) and not isinstance(value, bool) and value < (1 if item.name in AT_LEAST_ONE else 0):
            problems.append(f"{name} {value} must be at least {1 if item.name in AT_LEAST_ONE else 0}")
        elif isinstance(value, int) and value > 2**31 - 1:
            problems.append(f"{name} {value} is too large (at most {2**31 - 1})")
        if isinstance(value, float) and (item.name.endswith("probability") or item.name == "ema_decay") and value > 1:
            problems.append(f"{name} {value} must be at most 1")
    if getattr(config, "learning_rate", 1.0) == 0:
        problems.append(f"{where}.learning_rate must be above 0")
    return problems


@dataclass(frozen=True)
class RunConfig:
    """What every training run sets, whatever its network: data, steps, augmentation, optimiser, logging."""

    data_dir: str
    output_dir: str
    steps: int
    data_description: str = ""  # what the cases are, for the card's training.data (default: data_dir's name)
    model_type: str = "ldseg"  # `ldseg train` dispatches on it (see ldseg.baseline.train_from_config)
    train_cases: tuple[str, ...] = ()
    validation_cases: tuple[str, ...] = ()
    augmentation: Augmentation = field(default_factory=Augmentation)
    batch_size: int = 2
    learning_rate: float = 1e-3
    dice_loss_weight: float = 2.0
    seed: int = 0
    checkpoint_every: int = 50
    validate_every: int = 100
    threads: int = 0  # 0: torch's default
    device: str = "auto"  # auto: CUDA when there is one (mixed precision), else the CPU

    @classmethod
    def load(cls, path: str | Path) -> Self:
        return load_training_config(cls, path)


@dataclass(frozen=True)
class TrainConfig(RunConfig):
    """An LDSeg training run: the four networks' model spec, the EMA denoiser and the noise loss."""

    model: ModelSpec = field(default_factory=ModelSpec)
    ema_decay: float = 0.995
    noise_loss_weight: float = 1.0
    validation_samples: int = 4

    def card(self) -> ModelCard:
        spec = self.model
        if not spec.labels:
            raise LDSegError("The training config lists no structure: add model.labels (value, name, color, codes).")
        return ModelCard(
            name=spec.name, version=spec.version, description=spec.description, labels=spec.labels,
            model_grid=spec.model_grid, architecture=spec.architecture, diffusion=spec.diffusion,
            normalization=spec.normalization,
        )


@dataclass
class TrainingCase:
    """A case held in memory: the [0, 1]-scaled native image (for native noise) and grid tensors."""

    name: str
    unit_image: np.ndarray  # canonical orientation, min-max scaled to [0, 1]
    image: torch.Tensor  # (1, D, H, W) normalised, model grid
    labels: torch.Tensor  # (1, D, H, W) long, model grid


def min_max_scale(array: np.ndarray) -> np.ndarray:
    """[0, 1] scaling used by the paper's noise experiments."""
    low, high = float(array.min()), float(array.max())
    return ((array - low) / max(high - low, 1e-6)).astype(np.float32)


def read_canonical_case(case: Case, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A case's image and label arrays (z, y, x) in the canonical orientation that training and inference share."""
    image, labels = read_case(case, num_classes)
    orientation = AxisOrientation.of(image)
    return (
        orientation.to_canonical(sitk.GetArrayFromImage(image)),
        orientation.to_canonical(sitk.GetArrayFromImage(labels)),
    )


def training_case(name: str, image: np.ndarray, labels: np.ndarray, card: ModelCard, device: torch.device) -> TrainingCase:
    """Canonical image and label arrays -> the case as training uses it, its grid tensors on `device`."""
    unit = min_max_scale(image)
    return TrainingCase(
        name,
        unit,
        grid_image(unit, card).to(device),
        labels_to_model_grid(torch.from_numpy(np.asarray(labels)), card)[None].to(device),
    )


def grid_image(unit_image: np.ndarray, card: ModelCard) -> torch.Tensor:
    return image_to_model_grid(torch.from_numpy(normalise_intensity(unit_image, card.normalization))[None], card)


def augmentation_pipeline(aug: Augmentation, device: torch.device) -> Compose:
    """The random transforms; the spatial ones resample on `device` (on a GPU they would otherwise bound the step)."""
    keys = ("image", "labels")
    transforms = [
        RandFlipd(keys, prob=aug.flip_probability, spatial_axis=axis) for axis in aug.flip_axes
    ]
    transforms += [
        RandAffined(
            keys, prob=aug.affine_probability, rotate_range=(aug.rotate_radians,) * 3,
            scale_range=(aug.scale_fraction,) * 3, translate_range=(aug.translate_voxels,) * 3,
            mode=("bilinear", "nearest"), padding_mode="border", device=device,
        ),
        Rand3DElasticd(
            keys, sigma_range=(5, 8), magnitude_range=(20, 60), prob=aug.elastic_probability,
            mode=("bilinear", "nearest"), padding_mode="border", device=device,
        ),
        RandBiasFieldd("image", prob=aug.bias_field_probability, coeff_range=(0.0, 0.2)),
        RandAdjustContrastd("image", prob=aug.contrast_probability, gamma=(0.7, 1.5)),
        RandScaleIntensityd("image", factors=0.2, prob=aug.intensity_scale_probability),
        RandGaussianNoised("image", prob=aug.grid_noise_probability, std=aug.grid_noise_std),
    ]
    return Compose(transforms)


class BatchPrefetcher:
    """Draws the batch of step + 1 in a background thread while step trains.

    Augmentation runs on the CPU in part (bias field, noise, intensity); on a GPU it would otherwise
    leave the GPU idle for half of every step. Batches depend only on (seed, step), so drawing them
    ahead changes nothing.
    """

    def __init__(self, draw: Callable[[int], tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.draw = draw
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending: tuple[int, Future] | None = None

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pending is not None and self.pending[0] == step:
            batch = self.pending[1].result()
        else:
            batch = self.draw(step)
        self.pending = (step + 1, self.pool.submit(self.draw, step + 1))
        return batch


class Trainer:
    """Holds the networks, optimiser, EMA denoiser and data for one training run."""

    def __init__(self, config: RunConfig, log: Callable[[str], None] = print) -> None:
        self.config, self.log = config, log
        self.card = config.card()
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.device = select_device(config.device)
        # Mixed precision on CUDA only (bfloat16: no loss scaling needed); CPU autocast is slower for 3D convolutions.
        self.autocast_dtype = torch.bfloat16 if self.device.type == "cuda" else None
        torch.backends.cudnn.benchmark = self.device.type == "cuda"
        self.network = self.make_network().to(self.device)
        self.prepare_training_state()
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=config.learning_rate)
        self.segmentation_loss = DiceCELoss(
            to_onehot_y=True, softmax=True, lambda_dice=config.dice_loss_weight, lambda_ce=1.0
        )
        self.augment = augmentation_pipeline(config.augmentation, self.device)
        self.next_batch = BatchPrefetcher(self.batch)
        self.train_cases = self.load_cases(config.train_cases)
        self.validation_cases = self.load_cases(config.validation_cases) if config.validation_cases else []
        self.step = 0
        self.output_dir = Path(config.output_dir)

    def load_cases(self, names: tuple[str, ...]) -> list[TrainingCase]:
        """The named cases of the config's data folder (all of them for no names), prepared for training."""
        return [
            training_case(case.name, *read_canonical_case(case, self.card.num_classes), self.card, self.device)
            for case in find_cases(self.config.data_dir, names)
        ]

    def make_network(self) -> torch.nn.Module:
        """The four networks (subclasses: their network)."""
        return LDSegNetwork(self.card)

    def prepare_training_state(self) -> None:
        """What LDSeg trains beside the networks: the EMA copy of the denoiser and the noise schedule."""
        self.ema_denoiser = copy.deepcopy(self.network.denoiser).requires_grad_(False)
        self.alphas_cumprod = cosine_alphas_cumprod(self.card.diffusion.train_timesteps)

    # --- one step ---------------------------------------------------------------------------------

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The augmented batch of `step`, drawn from randomness seeded by (seed, step)."""
        rng = np.random.default_rng([self.config.seed, step])
        self.augment.set_random_state(seed=int(rng.integers(2**31)))
        images, labels = [], []
        aug = self.config.augmentation
        for index in rng.integers(len(self.train_cases), size=self.config.batch_size):
            case = self.train_cases[index]
            image = case.image
            if rng.random() < aug.native_noise_probability:
                sigma = rng.uniform(0.0, aug.native_noise_max_sigma)
                noisy = case.unit_image + rng.normal(0.0, sigma, case.unit_image.shape).astype(np.float32)
                image = grid_image(noisy, self.card).to(self.device)
            item = self.augment({"image": image, "labels": case.labels})
            images.append(torch.as_tensor(item["image"]))
            labels.append(torch.as_tensor(item["labels"]))
        return torch.stack(images).float(), torch.stack(labels).round().long()

    def seed_step(self, step: int) -> None:
        """Seeds torch's draws (dropout, t, noise) of `step` from (seed, step) alone, so a resumed run repeats them."""
        torch.manual_seed(self.config.seed * 1_000_003 + step)

    def train_step(self, step: int) -> dict[str, float]:
        self.network.train()
        self.seed_step(step)
        x, y = self.next_batch(step)
        t = torch.randint(0, len(self.alphas_cumprod), (x.shape[0],))
        abar_t = self.alphas_cumprod[t].to(self.device)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            z_l0 = self.network.label_encoder(y.float()).float()
            z_i, skips = self.network.image_encoder(x)
            eps = torch.randn_like(z_l0)
            z_lt = add_noise(z_l0, eps, abar_t)
            z_nt = self.network.predict_noise(z_lt, z_i, t.to(self.device)).float()
            z_dn = renormalise(denoised_latent(z_lt, z_nt, abar_t, self.card.diffusion.denoised_latent))
            y_hat = self.network.label_decoder(z_dn, skips)
        segmentation = self.segmentation_loss(y_hat.float(), y)
        noise = torch.nn.functional.mse_loss(z_nt, eps)
        loss = segmentation + self.config.noise_loss_weight * noise
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self._update_ema()
        return {"loss": loss.item(), "segmentation_loss": segmentation.item(), "noise_mse": noise.item()}

    def _update_ema(self) -> None:
        decay = self.config.ema_decay
        with torch.no_grad():
            for ema, live in zip(self.ema_denoiser.parameters(), self.network.denoiser.parameters()):
                ema.lerp_(live, 1.0 - decay)
            for ema, live in zip(self.ema_denoiser.buffers(), self.network.denoiser.buffers()):
                ema.copy_(live)

    # --- validation, checkpoints, export ----------------------------------------------------------

    def inference_network(self) -> LDSegNetwork:
        """The four networks with the EMA denoiser, in eval mode (what gets shipped)."""
        network = copy.deepcopy(self.network).eval()
        network.denoiser.load_state_dict(self.ema_denoiser.state_dict())
        return network

    def validate(self) -> dict[str, dict[str, float]]:
        """Dice per case and structure on the model grid, fused mean probability of a few samples."""
        network = self.inference_network()
        diffusion = self.card.diffusion
        results = {}
        for case in self.validation_cases:
            z_T = initial_noise(self.config.validation_samples, self.card.latent_grid, seed=0)
            chunks = draw_samples(network, case.image[None], z_T, self.alphas_cumprod, diffusion.default_steps, 8)
            fused = torch.cat(list(chunks)).mean(0).argmax(0)
            results[case.name] = {
                label.name: dice(fused == label.value, case.labels[0] == label.value) for label in self.card.labels
            }
        return results

    def checkpoint_fingerprint(self) -> str:
        """What a checkpoint must have been written for: the architecture (subclasses add the model type)."""
        return json.dumps(dataclasses.asdict(self.card.architecture))

    def extra_state(self) -> dict:
        """State beyond network and optimiser that a checkpoint keeps (the EMA denoiser)."""
        return {"ema_denoiser": self.ema_denoiser.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.ema_denoiser.load_state_dict(state["ema_denoiser"])

    def save_checkpoint(self) -> None:
        state = {
            "step": torch.tensor(self.step),
            "architecture": self.checkpoint_fingerprint(),
            "model_grid": torch.tensor(self.card.model_grid),
            "train_cases": json.dumps([case.name for case in self.train_cases]),
            "network": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **self.extra_state(),
        }
        # A new temporary file (O_EXCL), never a predictable name that a symbolic link could redirect.
        handle, temporary_name = tempfile.mkstemp(dir=self.output_dir, prefix=f".{CHECKPOINT_FILE}.", suffix=".partial")
        temporary = Path(temporary_name)
        try:
            with os.fdopen(handle, "wb") as stream:
                torch.save(state, stream)
            temporary.replace(self.output_dir / CHECKPOINT_FILE)
        finally:
            temporary.unlink(missing_ok=True)

    def resume(self) -> bool:
        """Loads the last checkpoint of this output folder, if any (our own file, loaded weights_only)."""
        path = self.output_dir / CHECKPOINT_FILE
        if not path.exists():
            return False
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            problem = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise LDSegError(f"Checkpoint {path} cannot be read ({problem[:200]}); delete it to start over.") from None
        try:
            same = state.get("architecture") == self.checkpoint_fingerprint() and tuple(
                state["model_grid"].tolist()
            ) == tuple(self.card.model_grid)
        except (AttributeError, KeyError, TypeError):
            raise LDSegError(f"Checkpoint {path} is not an LDSeg training checkpoint; delete it to start over.") from None
        if not same:
            raise LDSegError(
                f"Checkpoint {path} was written for another model, architecture or model grid than this config; "
                "use a new output_dir or the config that wrote it."
            )
        cases = json.dumps([case.name for case in self.train_cases])
        if state.get("train_cases", cases) != cases:  # checkpoints from before 0.2 did not record their cases
            raise LDSegError(
                f"Checkpoint {path} was trained on cases {', '.join(json.loads(state['train_cases']))}, this config "
                f"trains on {', '.join(json.loads(cases))}; use a new output_dir or the config that wrote it."
            )
        try:
            self.network.load_state_dict(state["network"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.load_extra_state(state)
            self.step = int(state["step"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            problem = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise LDSegError(f"Checkpoint {path} is damaged ({problem}); delete it to start over.") from None
        return True

    def training_record(self, seconds: float) -> dict:
        """The model card's `training`: data, cases, steps, optimiser, time and hardware."""
        return {
            "data": self.config.data_description or Path(self.config.data_dir).name,
            "cases": [case.name for case in self.train_cases],
            "validation_cases": [case.name for case in self.validation_cases],
            "steps": self.step,
            "batch_size": self.config.batch_size,
            "learning_rate": self.config.learning_rate,
            "seconds": round(seconds),
            "hardware": hardware_description(),
        }

    def export(self, seconds: float) -> ModelCard:
        training = {
            **self.training_record(seconds),
            "ema_decay": self.config.ema_decay,
            "denoised_latent": self.card.diffusion.denoised_latent,
        }
        return save_package(self.inference_network(), dataclasses.replace(self.card, training=training), self.output_dir / "model")

    def run(self) -> ModelCard:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.output_dir / LOG_FILE
        if self.resume():
            _truncate_log(log_path, self.step)
            self.log(f"resumed from step {self.step}")
        started = time.time()
        previous_seconds = _logged_seconds(log_path)
        with open(log_path, "a", encoding="utf-8") as log_file, STOP.polled():
            while self.step < self.config.steps:
                if STOP():  # Ctrl+C or SIGTERM: keep what was learnt, say how to go on
                    self.save_checkpoint()
                    raise CancelledError(
                        f"Training stopped at step {self.step} of {self.config.steps}; the checkpoint is in "
                        f"{self.output_dir / CHECKPOINT_FILE}. Run the same 'ldseg train' command again to resume."
                    )
                losses = self.train_step(self.step)
                self.step += 1
                if not math.isfinite(losses["loss"]):
                    raise LDSegError(f"Training diverged at step {self.step} (loss {losses['loss']}); lower the learning rate.")
                record: dict = {"step": self.step, **losses, "seconds": round(previous_seconds + time.time() - started, 1)}
                if self.validation_cases and (self.step % self.config.validate_every == 0 or self.step == self.config.steps):
                    record["validation_dice"] = self.validate()
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                self.log(json.dumps(record))
                if self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps:
                    self.save_checkpoint()
        return self.export(previous_seconds + time.time() - started)


def _truncate_log(log_path: Path, step: int) -> None:
    """Drops log lines written after the checkpoint we resume from (they will be redone), and lines
    that a killed run cut short."""
    if log_path.exists():
        kept = [line for line, record in _log_records(log_path) if record["step"] <= step]
        atomic_write_bytes(log_path, "".join(line + "\n" for line in kept).encode("utf-8"))


def _logged_seconds(log_path: Path) -> float:
    """Training seconds already spent before a resume (from the last complete log line)."""
    records = _log_records(log_path) if log_path.exists() else []
    return float(records[-1][1]["seconds"]) if records else 0.0


def _log_records(log_path: Path) -> list[tuple[str, dict]]:
    """The log's complete records (a line cut short by a kill, or damaged, is skipped)."""
    records = []
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and isinstance(record.get("seconds"), (int, float)):
            records.append((line, record))
    return records


def hardware_description() -> str:
    import platform

    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}"
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
