"""`ldseg train`: LDSeg and the UNet baseline learn, resume exactly, and refuse bad configs, data and checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

import synthetic_cases
from ldseg.baseline import (
    BaselineTrainConfig,
    BaselineTrainer,
    BaselinePredictor,
    config_model_type,
    load_baseline_package,
    train_from_config,
)
from ldseg.errors import LDSegError
from ldseg.package import load_package
from ldseg.training import LOG_FILE, TrainConfig, Trainer
from ldseg.uncertainty import entropy

QUIET = lambda _line: None  # noqa: E731


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return synthetic_cases.write_cases(tmp_path_factory.mktemp("data"))


def ldseg_trainer(tmp_path: Path, data: Path, steps: int, name: str = "run", **overrides) -> Trainer:
    config = synthetic_cases.tiny_config(data, tmp_path / name, steps, **overrides)
    return Trainer(TrainConfig.load(synthetic_cases.write_config(tmp_path / f"{name}.yaml", config)), QUIET)


def baseline_trainer(tmp_path: Path, data: Path, steps: int, name: str = "baseline", **overrides) -> BaselineTrainer:
    config = synthetic_cases.tiny_baseline_config(data, tmp_path / name, steps, **overrides)
    return BaselineTrainer(BaselineTrainConfig.load(synthetic_cases.write_config(tmp_path / f"{name}.yaml", config)), QUIET)


def falls(losses: list[float]) -> bool:
    return np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


# --- learning -------------------------------------------------------------------------------------------


def test_ldseg_loss_falls_on_tiny_crops(tmp_path, data):
    trainer = ldseg_trainer(tmp_path, data, steps=16)
    losses = [trainer.train_step(step)["loss"] for step in range(16)]
    assert falls(losses), losses


def test_baseline_loss_falls_on_tiny_crops(tmp_path, data):
    trainer = baseline_trainer(tmp_path, data, steps=15)
    losses = [trainer.train_step(step)["loss"] for step in range(15)]
    assert falls(losses), losses


def state_of(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in network.state_dict().items()}


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def logged_losses(output_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (output_dir / LOG_FILE).read_text().splitlines()]


@pytest.mark.parametrize("make_trainer", [ldseg_trainer, baseline_trainer], ids=["ldseg", "baseline"])
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(make_trainer, tmp_path, data):
    augmented = {"augmentation": {"native_noise_probability": 0.5}}  # every other transform at its default
    straight = make_trainer(tmp_path, data, steps=4, name="straight", **augmented)
    straight.run()
    make_trainer(tmp_path, data, steps=2, name="resumed", **augmented).run()
    resumed = make_trainer(tmp_path, data, steps=4, name="resumed", **augmented)
    executed, train_step = [], resumed.train_step
    resumed.train_step = lambda step: executed.append(step) or train_step(step)
    resumed.run()
    assert executed == [2, 3]  # it went on from the checkpoint rather than starting over
    assert_same_state(state_of(straight.network), state_of(resumed.network))
    if hasattr(straight, "ema_denoiser"):
        assert_same_state(state_of(straight.ema_denoiser), state_of(resumed.ema_denoiser))
    assert logged_losses(tmp_path / "straight") == logged_losses(tmp_path / "resumed")


def test_ldseg_training_exports_a_package_that_loads(tmp_path, data):
    card = ldseg_trainer(tmp_path, data, steps=1).run()
    package = load_package(tmp_path / "run" / "model")
    assert package.card.weights_sha256 == card.weights_sha256
    assert package.card.training["cases"] == ["case1", "case2"]
    assert package.card.training["data"] == data.name  # the config describes no data: its folder's name, no knee


def test_baseline_training_exports_a_package_that_segments(tmp_path, data):
    card = baseline_trainer(tmp_path, data, steps=1).run()
    package = load_baseline_package(tmp_path / "baseline" / "model")
    assert package.card.weights_sha256 == card.weights_sha256
    image = sitk.ReadImage(str(data / "images" / "case3.nii.gz"), sitk.sitkFloat32)
    prediction = BaselinePredictor(package, torch.device("cpu")).predict(image)
    assert prediction.labels.shape == image.GetSize()[::-1]
    assert prediction.mean_probability.shape == (3, *prediction.labels.shape)
    assert len(prediction.samples) == 1
    np.testing.assert_allclose(prediction.mean_probability.sum(axis=0), 1.0, atol=1e-5)
    # the baseline's uncertainty is the entropy of its softmax, in [0, log C]
    np.testing.assert_allclose(prediction.uncertainty, entropy(prediction.mean_probability), atol=1e-6)
    assert prediction.uncertainty.max() <= np.log(3) + 1e-6


def test_a_tampered_baseline_package_is_refused(tmp_path, data):
    baseline_trainer(tmp_path, data, steps=1).run()
    weights = tmp_path / "baseline" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")
    with pytest.raises(LDSegError, match="SHA-256"):
        load_baseline_package(weights.parent)


# --- `ldseg train` dispatch ---------------------------------------------------------------------------


def test_train_dispatches_on_model_type(tmp_path, data):
    baseline_yaml = synthetic_cases.write_config(
        tmp_path / "b.yaml", synthetic_cases.tiny_baseline_config(data, tmp_path / "b", steps=1)
    )
    assert train_from_config(baseline_yaml, QUIET).model_type == "baseline"
    ldseg_yaml = synthetic_cases.write_config(tmp_path / "l.yaml", synthetic_cases.tiny_config(data, tmp_path / "l", steps=1))
    assert train_from_config(ldseg_yaml, QUIET).diffusion.default_steps == 2
    explicit = synthetic_cases.tiny_config(data, tmp_path / "e", steps=1, model_type="ldseg")
    assert train_from_config(synthetic_cases.write_config(tmp_path / "e.yaml", explicit), QUIET).name == "tiny"


def test_train_refuses_an_unknown_model_type(tmp_path, data):
    config = synthetic_cases.tiny_baseline_config(data, tmp_path / "x", steps=1, model_type="transformer")
    with pytest.raises(LDSegError, match="model_type 'transformer'"):
        train_from_config(synthetic_cases.write_config(tmp_path / "x.yaml", config), QUIET)


def test_the_baseline_config_matches_the_held_out_ldseg_config():
    config = BaselineTrainConfig.load(synthetic_cases.REPO / "configs" / "baseline-knee.yaml")
    ldseg = TrainConfig.load(synthetic_cases.REPO / "configs" / "knee-bones-knee4-held-out.yaml")
    assert (config.train_cases, config.validation_cases) == (ldseg.train_cases, ldseg.validation_cases)
    assert config.card().model_grid == ldseg.card().model_grid
    assert config.data_dir == ldseg.data_dir
    assert config.data_description == ldseg.data_description == TrainConfig.load(
        synthetic_cases.REPO / "configs" / "knee-bones.yaml").data_description != ""


# --- refusals -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        ({"learning_rat": 0.1}, "unknown key.*learning_rat"),
        ({"model": {"architecture": {"denoiser_chanels": [8]}}}, "unknown key.*denoiser_chanels"),
        ({"steps": "ten"}, "config.steps must be of type int"),
        ({"train_cases": "case1"}, "config.train_cases must be a list"),
    ],
    ids=["unknown-key", "unknown-nested-key", "wrong-type", "not-a-list"],
)
@pytest.mark.parametrize("kind", ["ldseg", "baseline"])
def test_train_refuses_unknown_keys_and_wrong_types(kind, change, message, tmp_path, data):
    make = synthetic_cases.tiny_config if kind == "ldseg" else synthetic_cases.tiny_baseline_config
    config = {**make(data, tmp_path / "out", steps=1), **change}
    with pytest.raises(LDSegError, match=message):
        train_from_config(synthetic_cases.write_config(tmp_path / "bad.yaml", config), QUIET)
    assert not (tmp_path / "out").exists()


def test_baseline_refuses_an_architecture_that_does_not_fit_the_grid(tmp_path, data):
    config = synthetic_cases.tiny_baseline_config(data, tmp_path / "out", steps=1)
    config["model"]["architecture"] = {**synthetic_cases.TINY_BASELINE_ARCHITECTURE, "strides": [2]}
    with pytest.raises(LDSegError, match="strides needs one entry per downsampling"):
        train_from_config(synthetic_cases.write_config(tmp_path / "c.yaml", config), QUIET)


def write_case(data_dir: Path, image: np.ndarray, labels: np.ndarray, label_spacing=(0.8, 1.0, 1.5)) -> Path:
    for folder in ("images", "labels"):
        (data_dir / folder).mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(synthetic_cases.as_image(image), str(data_dir / "images" / "case1.nii.gz"))
    sitk.WriteImage(synthetic_cases.as_image(labels, label_spacing), str(data_dir / "labels" / "case1.nii.gz"))
    return data_dir


def no_pairs(data_dir: Path) -> Path:
    (data_dir / "images").mkdir(parents=True)
    (data_dir / "labels").mkdir()
    sitk.WriteImage(synthetic_cases.as_image(synthetic_cases.case_arrays(0, 0)[0]), str(data_dir / "images" / "case1.nii.gz"))
    return data_dir


@pytest.mark.parametrize(
    "make_data, message",
    [
        (no_pairs, "No image/label pairs"),
        (lambda d: write_case(d, *synthetic_cases.case_arrays(0, 0), label_spacing=(1.0, 1.0, 1.0)), "different geometry"),
        (lambda d: write_case(d, synthetic_cases.case_arrays(0, 0)[0], synthetic_cases.case_arrays(0, 0)[1] + 1), r"unknown value\(s\) \[3\]"),
    ],
    ids=["no-pairs", "geometry", "label-values"],
)
@pytest.mark.parametrize("kind", ["ldseg", "baseline"])
def test_train_refuses_bad_data(kind, make_data, message, tmp_path):
    data_dir = make_data(tmp_path / "data")
    make = synthetic_cases.tiny_config if kind == "ldseg" else synthetic_cases.tiny_baseline_config
    config = make(data_dir, tmp_path / "out", steps=1, train_cases=[], validation_cases=[])
    with pytest.raises(LDSegError, match=message):
        train_from_config(synthetic_cases.write_config(tmp_path / "c.yaml", config), QUIET)


def test_ldseg_refuses_a_checkpoint_of_another_architecture(tmp_path, data):
    ldseg_trainer(tmp_path, data, steps=2).run()
    wider = {**synthetic_cases.TINY_ARCHITECTURE, "denoiser_channels": [8, 24]}
    other = synthetic_cases.tiny_config(data, tmp_path / "run", steps=4)
    other["model"] = {**other["model"], "architecture": wider}
    with pytest.raises(LDSegError, match="another model, architecture"):
        Trainer(TrainConfig.load(synthetic_cases.write_config(tmp_path / "other.yaml", other)), QUIET).run()


def test_a_checkpoint_of_other_training_cases_is_refused(tmp_path, data):
    ldseg_trainer(tmp_path, data, steps=2).run()
    other = synthetic_cases.tiny_config(data, tmp_path / "run", steps=4, train_cases=["case1", "case3"])
    with pytest.raises(LDSegError, match="trained on cases case1, case2, this config trains on case1, case3"):
        Trainer(TrainConfig.load(synthetic_cases.write_config(tmp_path / "other.yaml", other)), QUIET).run()


def test_neither_trainer_resumes_the_other_s_checkpoint(tmp_path, data):
    baseline_trainer(tmp_path, data, steps=2, name="shared").run()
    with pytest.raises(LDSegError, match="another model, architecture"):
        ldseg_trainer(tmp_path, data, steps=4, name="shared").run()
    ldseg_trainer(tmp_path, data, steps=2, name="shared2").run()
    with pytest.raises(LDSegError, match="another model"):
        baseline_trainer(tmp_path, data, steps=4, name="shared2").run()


def test_the_structures_come_from_the_config_and_a_config_without_them_is_refused(tmp_path, data):
    configs = sorted((synthetic_cases.REPO / "configs").glob("*.yaml"))
    assert len(configs) >= 3
    for path in configs:
        kind = BaselineTrainConfig if config_model_type(path) == "baseline" else TrainConfig
        assert kind.load(path).card().labels == synthetic_cases.knee_labels(), path.name
    config = synthetic_cases.tiny_config(data, tmp_path / "run", 1)
    del config["model"]["labels"]
    with pytest.raises(LDSegError, match="lists no structure"):
        TrainConfig.load(synthetic_cases.write_config(tmp_path / "no-labels.yaml", config)).card()
