"""The DDIM math, tested against a perfect noise predictor rather than only for shapes."""

import pytest
import torch

from ldseg.sampler import add_noise, cosine_alphas_cumprod, ddim_sample, ddim_timesteps, renormalise


def test_two_steps_visit_the_first_and_last_timestep():
    assert ddim_timesteps(2) == [999, 0]
    assert ddim_timesteps(1) == [999]
    steps = ddim_timesteps(10)
    assert steps[0] == 999 and steps[-1] == 0 and len(steps) == 10 and steps == sorted(steps, reverse=True)


def test_cosine_schedule_decreases_from_one_to_zero():
    abar = cosine_alphas_cumprod()
    assert abar.shape == (1000,)
    assert abar[0] > 0.999 and abar[-1] < 1e-4
    assert torch.all(abar[1:] <= abar[:-1])


@pytest.mark.parametrize("steps, tolerance", [(1, 1e-2), (2, 1e-4), (3, 1e-4), (10, 1e-4), (50, 1e-4)])
def test_ddim_with_a_perfect_noise_predictor_returns_the_clean_latent(steps, tolerance):
    """k = 1 is ill-conditioned in float32 (sqrt(abar_999) ~ 5e-5); a second step at t = 0 repairs it."""
    abar = cosine_alphas_cumprod()
    z_clean = renormalise(torch.randn(3, 1, 4, 4, 8, generator=torch.Generator().manual_seed(1)))
    z_T = torch.randn_like(z_clean)

    def perfect(z_t, t):  # the noise that, added to z_clean at level t, gives z_t
        a = abar[t].reshape(-1, 1, 1, 1, 1)
        return (z_t - a.sqrt() * z_clean) / (1 - a).sqrt()

    result = ddim_sample(perfect, z_T, abar, steps)
    torch.testing.assert_close(result, z_clean, atol=tolerance, rtol=0)


def test_renormalise_gives_zero_mean_unit_variance_per_sample():
    z = renormalise(torch.randn(4, 1, 3, 3, 6) * 5 + 2)
    torch.testing.assert_close(z.mean(dim=(1, 2, 3, 4)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=(1, 2, 3, 4), unbiased=False), torch.ones(4), atol=1e-4, rtol=0)


def test_add_noise_keeps_unit_variance():
    abar = cosine_alphas_cumprod()
    z0, eps = torch.randn(2, 1, 16, 16, 16), torch.randn(2, 1, 16, 16, 16)
    z_t = add_noise(z0, eps, abar[torch.tensor([100, 900])])
    assert 0.9 < z_t.std().item() < 1.1
