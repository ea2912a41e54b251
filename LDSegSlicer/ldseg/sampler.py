"""Cosine noise schedule and DDIM posterior sampling in LDSeg's latent space.

Notation (ldseg-method.md): abar_t = cumulative product of alphas at timestep t; z_lt noisy label
latent; z_nt predicted noise; z_0 clean-latent estimate; z_i image latent (the condition).

We take abar_t from MONAI's DDIMScheduler (cosine schedule, Nichol & Dhariwal 2021) but write the
DDIM update ourselves: MONAI 1.6's step() moves to t - T // k rather than to the next timestep it
visits, which for k = 2 lands at noise level 499 and then calls the model at t = 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.networks.schedulers import DDIMScheduler

NoisePredictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (z_lt, t) -> z_nt


def cosine_alphas_cumprod(train_timesteps: int = 1000) -> torch.Tensor:
    """abar_t for t = 0..T-1 of the cosine schedule (s = 0.008)."""
    return DDIMScheduler(num_train_timesteps=train_timesteps, schedule="cosine", clip_sample=False).alphas_cumprod


def ddim_timesteps(steps: int, train_timesteps: int = 1000) -> list[int]:
    """k evenly spaced timesteps from T-1 down to 0 (k = 2: [999, 0]), each visited once."""
    if steps < 1:
        raise ValueError("DDIM needs at least one step")
    if steps == 1:
        return [train_timesteps - 1]
    return torch.linspace(train_timesteps - 1, 0, steps).round().long().unique_consecutive().tolist()


def renormalise(z: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Zero mean, unit variance per sample, so the latent looks like a LayerNorm'd encoder latent."""
    dims = tuple(range(1, z.ndim))
    return (z - z.mean(dim=dims, keepdim=True)) / (z.std(dim=dims, keepdim=True, unbiased=False) + eps)


def add_noise(z_l0: torch.Tensor, noise: torch.Tensor, abar_t: torch.Tensor) -> torch.Tensor:
    """Forward process: z_lt = sqrt(abar_t) z_l0 + sqrt(1 - abar_t) eps (abar_t broadcast per item)."""
    abar_t = abar_t.reshape(-1, *([1] * (z_l0.ndim - 1)))
    return abar_t.sqrt() * z_l0 + (1 - abar_t).sqrt() * noise


def estimate_clean_latent(z_lt: torch.Tensor, z_nt: torch.Tensor, abar_t: torch.Tensor) -> torch.Tensor:
    """z_0 = (z_lt - sqrt(1 - abar_t) z_nt) / sqrt(abar_t)  (DDIM, Song et al. 2021, eq. 12)."""
    abar_t = abar_t.reshape(-1, *([1] * (z_lt.ndim - 1)))
    return (z_lt - (1 - abar_t).sqrt() * z_nt) / abar_t.sqrt()


def denoised_latent(z_lt: torch.Tensor, z_nt: torch.Tensor, abar_t: torch.Tensor, mode: str) -> torch.Tensor:
    """z_dn that the decoder sees during training: the x0 estimate, or the reference's z_lt - z_nt."""
    if mode == "x0":
        return estimate_clean_latent(z_lt, z_nt, abar_t)
    if mode == "difference":
        return z_lt - z_nt
    raise ValueError(f"unknown denoised-latent mode {mode!r}")


@torch.no_grad()
def ddim_sample(
    predict_noise: NoisePredictor,
    z_T: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    steps: int,
    on_step: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) from z_T through `steps` timesteps to the clean latent z_0.

    Each step: predict z_nt, estimate z_0 (eq. 12), move to the next visited timestep s with
    z_ls = sqrt(abar_s) z_0 + sqrt(1 - abar_s) z_nt, then re-normalise the latent. The last step
    returns the z_0 estimate itself. `on_step(done, total)` reports progress and may raise to cancel.
    """
    timesteps = ddim_timesteps(steps, len(alphas_cumprod))
    # The chain runs in float64 on the CPU (latents are tiny; MPS has no float64): at t = 999,
    # sqrt(abar_t) ~ 5e-5 and float32 would lose the clean-latent estimate to cancellation.
    device = z_T.device
    alphas_cumprod = alphas_cumprod.to("cpu", torch.float64)
    z = renormalise(z_T.to("cpu", torch.float64))
    for index, t in enumerate(timesteps):
        t_batch = torch.full((z.shape[0],), t, device=device, dtype=torch.long)
        z_nt = predict_noise(z.to(device, torch.float32), t_batch).to("cpu", torch.float64)
        z_0 = estimate_clean_latent(z, z_nt, alphas_cumprod[t])
        if index + 1 < len(timesteps):
            abar_s = alphas_cumprod[timesteps[index + 1]]
            z = abar_s.sqrt() * z_0 + (1 - abar_s).sqrt() * z_nt
        else:
            z = z_0
        z = renormalise(z)
        if on_step is not None:
            on_step(index + 1, len(timesteps))
    return z.to(device, torch.float32)
