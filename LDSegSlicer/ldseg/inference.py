"""`Segmenter`: one input volume in, fused segmentation, uncertainty and statistics out.

The same object serves the command line, the Slicer panel (through the command line) and the
evaluation. It reports named stages through a progress callback and checks a cancel callback
between sampling chunks and DDIM steps, raising CancelledError before anything is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
import torch

from .card import ModelCard
from .choices import DEVICES
from .errors import CancelledError, LDSegError
from .fusion import fuse
from .imageio import validate_image
from .package import ModelPackage
from .posterior import draw_samples, initial_noise
from .postprocess import keep_largest_components
from .preprocess import prepare_image, probabilities_to_input_grid
from .sampler import cosine_alphas_cumprod
from .settings import SegmentSettings
from .summary import StructureFigures
from .uncertainty import SampleStatistics, structure_statistics

Progress = Callable[[str, float], None]  # (stage, overall fraction 0..1)
ShouldCancel = Callable[[], bool]


def select_device(requested: str = "auto") -> torch.device:
    """auto: CUDA, then Apple MPS, then CPU. An explicit GPU that is missing is an error, not a silent fallback."""
    if requested not in DEVICES:
        raise LDSegError(f"Unknown device {requested!r}; choose one of {', '.join(DEVICES)}.")
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if requested == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if requested == "cuda" and not cuda:
        raise LDSegError("A CUDA GPU was requested but none is available to PyTorch; choose the device auto or cpu.")
    if requested == "mps" and not mps:
        raise LDSegError("Apple MPS was requested but is not available; choose the device auto or cpu.")
    return torch.device(requested)


def describe_devices() -> str:
    """What PyTorch can see, for the panel and the summary."""
    if torch.cuda.is_available():
        return f"CUDA: {torch.cuda.get_device_name(0)}"
    if torch.backends.mps.is_available():
        return "Apple MPS"
    return f"CPU only ({torch.get_num_threads()} threads)"


@dataclass
class SegmentationResult:
    """Everything on the input grid: fused labels, uncertainty, mean probabilities, optional samples."""

    labels: sitk.Image  # uint8, values = card label values
    uncertainty: sitk.Image  # float32
    mean_probability: np.ndarray  # (C, z, y, x) float32
    samples: list[sitk.Image]
    structures: dict[str, StructureFigures]
    settings: SegmentSettings
    card: ModelCard
    device: str
    timings: dict[str, float] = field(default_factory=dict)


class Segmenter:
    """Runs LDSeg posterior sampling, fusion and uncertainty for a loaded model package."""

    def __init__(self, package: ModelPackage, device: torch.device) -> None:
        self.card = package.card
        self.network = package.network.to(device).eval()
        self.device = device
        self.alphas_cumprod = cosine_alphas_cumprod(self.card.diffusion.train_timesteps)
        # Mixed precision on CUDA only: CPU autocast is slower for these 3D convolutions.
        self.autocast_dtype = torch.float16 if device.type == "cuda" else None

    def segment(
        self,
        image: sitk.Image,
        settings: SegmentSettings = SegmentSettings(),
        progress: Progress | None = None,
        should_cancel: ShouldCancel | None = None,
        name: str = "input",
    ) -> SegmentationResult:
        settings = settings.for_card(self.card)
        minimum = tuple(max(8, size // 4) for size in self.card.model_grid)
        validate_image(image, name, min_size=minimum)  # type: ignore[arg-type]
        report = _Reporter(progress, should_cancel)
        timings: dict[str, float] = {}

        started = time.perf_counter()
        report("Preparing image", 0.0)
        prepared = prepare_image(image, self.card)
        timings["preprocessing"] = time.perf_counter() - started

        stats = SampleStatistics(self.card.num_classes, prepared.input_shape, (settings.uncertainty,))
        self._sample(prepared, settings, stats, report, timings)

        report("Fusing samples", 0.9)
        mark = time.perf_counter()
        fused = fuse(stats, settings.fusion)
        if settings.largest_component:
            fused = keep_largest_components(fused, [label.value for label in self.card.labels])
        timings["fusion"] = time.perf_counter() - mark

        report("Computing uncertainty", 0.95)
        mark = time.perf_counter()
        uncertainty = stats.uncertainty(settings.uncertainty)
        voxel_volume = float(np.prod(image.GetSpacing()))
        structures = {
            label.name: structure_statistics(fused, uncertainty, stats, label.value, voxel_volume)
            for label in self.card.labels
        }
        timings["uncertainty"] = time.perf_counter() - mark
        timings["total"] = time.perf_counter() - started
        report("Done", 1.0)
        return SegmentationResult(
            labels=_on_grid(fused, image),
            uncertainty=_on_grid(uncertainty, image),
            mean_probability=stats.mean_probability,
            samples=[_on_grid(labels, image) for labels in stats.sample_labels] if settings.keep_samples else [],
            structures=structures,
            settings=settings,
            card=self.card,
            device=str(self.device),
            timings=timings,
        )

    def _sample(self, prepared, settings: SegmentSettings, stats: SampleStatistics, report, timings) -> None:
        """Draws all samples in chunks (halving the chunk on GPU out-of-memory) into `stats`."""
        z_T = initial_noise(settings.samples, self.card.latent_grid, settings.seed)
        image = prepared.tensor.to(self.device)
        chunk_size = settings.chunk_size
        timings["sampling"] = timings["resampling"] = 0.0

        network_fraction = 0.0

        def on_step(done: int, total: int) -> None:
            nonlocal network_fraction
            network_fraction = done / total
            report_sampling()

        def report_sampling() -> None:
            # half for the network passes, half for bringing samples to the input grid
            report("Sampling", 0.05 + 0.85 * 0.5 * (network_fraction + stats.count / settings.samples))

        while stats.count < settings.samples:
            try:
                mark = time.perf_counter()
                for probabilities in draw_samples(
                    self.network, image, z_T[stats.count:], self.alphas_cumprod, settings.steps, chunk_size,
                    self.autocast_dtype, on_step,
                ):
                    timings["sampling"] += time.perf_counter() - mark
                    mark = time.perf_counter()
                    for sample in probabilities:
                        stats.add(probabilities_to_input_grid(sample, prepared))
                        report_sampling()
                    timings["resampling"] += time.perf_counter() - mark
                    mark = time.perf_counter()
            except torch.cuda.OutOfMemoryError:
                if chunk_size == 1:
                    raise LDSegError("The GPU ran out of memory even for one sample at a time; run on the CPU.") from None
                chunk_size //= 2
                torch.cuda.empty_cache()


class _Reporter:
    """Forwards progress and turns a cancel request into CancelledError at the next checkpoint."""

    def __init__(self, progress: Progress | None, should_cancel: ShouldCancel | None) -> None:
        self.progress, self.should_cancel = progress, should_cancel

    def __call__(self, stage: str, fraction: float) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise CancelledError()
        if self.progress is not None:
            self.progress(stage, min(max(fraction, 0.0), 1.0))


def _on_grid(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image
