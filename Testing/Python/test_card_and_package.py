"""Model card validation and the model package: checksums, tampering, card/weights mismatch."""

import dataclasses
import json
import shutil

import pytest
import torch

from conftest import bundled_card
from ldseg.card import Architecture, ModelCard
from ldseg.errors import LDSegError
from ldseg.networks import LDSegNetwork
from ldseg.package import load_package, save_package


def test_card_round_trips_through_json():
    card = bundled_card()
    assert ModelCard.from_dict(json.loads(card.to_json())) == card
    assert card.latent_grid == (12, 12, 24)
    assert [label.name for label in card.labels] == ["Femur", "Tibia"]
    assert card.labels[1].type.code == "12611008"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(colour=1), "unknown key(s) colour"),
        (lambda d: d["architecture"].update(dropout="high"), "architecture.dropout must be a number"),
        (lambda d: d.update(model_grid=[50, 48, 96]), "not divisible"),
        (lambda d: d["architecture"].update(label_decoder_channels=[8]), "one entry per encoder downsampling"),
        (lambda d: d["labels"][0].update(value=5), "label values"),
    ],
)
def test_invalid_cards_are_refused_with_the_field_named(change, message):
    data = json.loads(bundled_card().to_json())
    change(data)
    with pytest.raises(LDSegError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ModelCard.from_dict(data)


def test_package_round_trip_gives_identical_outputs(random_model, tmp_path):
    package = load_package(random_model)
    assert package.card.weights_sha256 and len(package.card.weights_sha256) == 64
    z = torch.randn(1, 1, *package.card.latent_grid)
    image = torch.randn(1, 1, *package.card.model_grid)
    again = load_package(random_model)
    with torch.no_grad():
        outputs = [model.network.label_decoder(z, model.network.image_encoder(image)[1]) for model in (package, again)]
    torch.testing.assert_close(*outputs)


def test_tampered_weights_are_refused(random_model, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(random_model, copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(LDSegError, match="SHA-256 .* differs from its model card"):
        load_package(copy)


def test_card_that_does_not_match_the_weights_is_refused(random_model, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(random_model, copy)
    card = ModelCard.load(copy / "model-card.json")
    wider = dataclasses.replace(card.architecture, label_decoder_channels=(32, 32))
    (copy / "model-card.json").write_text(dataclasses.replace(card, architecture=wider).to_json())
    with pytest.raises(LDSegError, match="does not match its weights"):
        load_package(copy)


def test_missing_weights_and_broken_card_are_explained(random_model, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(random_model, copy)
    (copy / "model.safetensors").unlink()
    with pytest.raises(LDSegError, match="weights file .* is missing"):
        load_package(copy)
    (copy / "model-card.json").write_text("{not json")
    with pytest.raises(LDSegError, match="cannot be read as JSON"):
        load_package(copy)


def test_saved_card_records_the_weights_checksum(tmp_path):
    card = dataclasses.replace(bundled_card(), architecture=Architecture(
        label_encoder_channels=(4, 8), image_encoder_channels=(4, 8), label_decoder_channels=(8,),
        denoiser_channels=(8, 16), denoiser_attention_levels=(False, False), encoder_groups=2), model_grid=(16, 16, 32))
    saved = save_package(LDSegNetwork(card), card, tmp_path)
    from ldseg.download import sha256_of
    assert saved.weights_sha256 == sha256_of(tmp_path / "model.safetensors")
    assert ModelCard.load(tmp_path / "model-card.json") == saved
