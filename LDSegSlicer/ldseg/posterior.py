"""Drawing segmentations from LDSeg's posterior on the model grid, batched and chunked.

The image latent z_i is computed once and shared; only the latent DDIM chain and the decoder pass
run per sample, in chunks of at most `chunk_size` samples so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from .networks import LDSegNetwork
from .sampler import ddim_sample


def initial_noise(num_samples: int, latent_grid: tuple[int, int, int], seed: int | None) -> torch.Tensor:
    """z_T for every sample, drawn on the CPU so a seed gives the same draws on any device."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return torch.randn((num_samples, 1, *latent_grid), generator=generator)


@torch.no_grad()
def draw_samples(
    network: LDSegNetwork,
    image: torch.Tensor,
    z_T: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    steps: int,
    chunk_size: int,
    autocast_dtype: torch.dtype | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> Iterator[torch.Tensor]:
    """Yields class probabilities (n, C, D, H, W) on the model grid, chunk by chunk.

    `image` is (1, 1, D, H, W) on the network's device. `on_step(done, total)` counts DDIM steps
    and decoder passes over all chunks, for progress reporting and cancellation.
    """
    device = image.device
    chunks = z_T.split(chunk_size)
    total = len(chunks) * (steps + 1)
    done = 0

    def report(_step: int, _steps: int) -> None:
        nonlocal done
        done += 1
        if on_step is not None:
            on_step(done, total)

    with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        z_i, skips = network.image_encoder(image)
        for chunk in chunks:
            z_0 = ddim_sample(
                lambda z, t: network.predict_noise(z, z_i, t), chunk.to(device), alphas_cumprod, steps, report
            )
            # With image skips the decoder's widest maps are at the model grid itself: one sample at a time
            # bounds memory. Without, a whole chunk at once is faster (and what those models were measured with).
            per_pass = 1 if network.label_decoder.image_skips else len(z_0)
            probabilities = torch.cat(
                [network.label_decoder(z, skips).float().softmax(dim=1) for z in z_0.split(per_pass)]
            )
            report(0, 0)
            yield probabilities
