"""The native-resolution LDSeg recipe: a label decoder with the image encoder's skips (configs/knee-bones-native.yaml)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import synthetic_cases
from ldseg.card import ModelCard
from ldseg.networks import LDSegNetwork
from ldseg.posterior import draw_samples, initial_noise
from ldseg.sampler import cosine_alphas_cumprod
from ldseg.training import TrainConfig, Trainer

NATIVE_CONFIG = synthetic_cases.REPO / "configs" / "knee-bones-native.yaml"
SMALL_GRID = (32, 32, 48)  # divisible by the recipe's 16, so every test here runs in seconds


def native_card(grid: tuple[int, int, int] = SMALL_GRID) -> ModelCard:
    return dataclasses.replace(TrainConfig.load(NATIVE_CONFIG).card(), model_grid=grid)


def test_the_recipe_s_model_voxels_are_at_most_1_2_mm_on_the_knee_crops():
    card = TrainConfig.load(NATIVE_CONFIG).card()
    knee_mm = (160, 104, 240)  # the knee crops' extent (z, y, x) at 1 mm
    voxel_mm = np.array(knee_mm) / np.array(card.model_grid)
    assert (voxel_mm <= 1.2).all(), voxel_mm
    assert card.architecture.decoder_image_skips
    assert ModelCard.from_dict(card.to_dict()) == card


def test_the_decoder_draws_from_the_image_through_its_skips():
    torch.manual_seed(0)
    network = LDSegNetwork(native_card()).eval()
    z = torch.randn(1, 1, *native_card().latent_grid)
    images = torch.rand(2, 1, 1, *SMALL_GRID)
    with torch.no_grad():
        logits = [network.label_decoder(z, network.image_encoder(image)[1]) for image in images]
    assert logits[0].shape == (1, 3, *SMALL_GRID)
    assert not torch.allclose(logits[0], logits[1])  # same latent, other image: other boundaries

    without = LDSegNetwork(dataclasses.replace(native_card(), architecture=dataclasses.replace(
        native_card().architecture, decoder_image_skips=False, full_resolution_kernel=3))).eval()
    with torch.no_grad():
        again = [without.label_decoder(z, without.image_encoder(image)[1]) for image in images]
    torch.testing.assert_close(again[0], again[1])  # the latent alone decides without skips


def test_samples_share_the_image_s_skips_and_differ_by_their_noise():
    torch.manual_seed(0)
    card = native_card()
    network = LDSegNetwork(card).eval()
    image = torch.rand(1, 1, *SMALL_GRID)
    z_T = initial_noise(3, card.latent_grid, seed=0)
    chunks = list(draw_samples(network, image, z_T, cosine_alphas_cumprod(), steps=2, chunk_size=2))
    probabilities = torch.cat(chunks)
    assert probabilities.shape == (3, 3, *SMALL_GRID)
    torch.testing.assert_close(probabilities.sum(1), torch.ones(3, *SMALL_GRID))
    assert not torch.allclose(probabilities[0], probabilities[1])
    # the chunking does not change a sample
    alone = next(draw_samples(network, image, z_T[2:], cosine_alphas_cumprod(), steps=2, chunk_size=1))
    torch.testing.assert_close(alone[0], probabilities[2])


def test_the_native_architecture_trains_end_to_end(tmp_path):
    data = synthetic_cases.write_cases(tmp_path / "data")
    architecture = dataclasses.asdict(TrainConfig.load(NATIVE_CONFIG).model.architecture)
    config = synthetic_cases.tiny_config(data, tmp_path / "run", steps=2, threads=1)
    config["model"].update(architecture=architecture, model_grid=list(SMALL_GRID))
    trainer = Trainer(TrainConfig.load(synthetic_cases.write_config(tmp_path / "native.yaml", config)), lambda _: None)
    before = [p.detach().clone() for p in trainer.network.label_decoder.parameters()]
    losses = [trainer.train_step(step) for step in range(2)]
    assert all(np.isfinite(loss["loss"]) for loss in losses)
    after = list(trainer.network.label_decoder.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("kernel", [2, 5])
def test_a_full_resolution_kernel_other_than_1_or_3_is_refused(kernel):
    from ldseg.errors import LDSegError

    data = native_card().to_dict()
    data["architecture"]["full_resolution_kernel"] = kernel
    with pytest.raises(LDSegError, match="full_resolution_kernel"):
        ModelCard.from_dict(data)
