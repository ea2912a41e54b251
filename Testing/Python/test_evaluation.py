"""`ldseg evaluate`: the metric definitions on masks with known answers, and the whole report on tiny models."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

import synthetic_cases
from synthetic_cases import knee_labels
from ldseg import evaluation
from ldseg.baseline import BaselineCard, BaselineArchitecture, build_network, save_baseline_package
from ldseg.card import ModelCard
from ldseg.cli import main as cli_main
from ldseg.data import Case, find_cases
from ldseg.errors import LDSegError
from ldseg.prediction import Prediction
from ldseg.networks import LDSegNetwork
from ldseg.package import save_package
from ldseg.settings import SegmentSettings

SPACING_ZYX = (2.0, 1.0, 0.5)  # anisotropic, so a mix-up of the axis order changes every distance


def cube(shift_x: int = 0, shape=(24, 24, 32)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[5:15, 5:15, 5 + shift_x:15 + shift_x] = True
    return mask


def reference_surface_distances(a: np.ndarray, b: np.ndarray, spacing) -> tuple[float, float]:
    """HD95 and ASSD by brute force over all surface-voxel pairs (independent of MONAI)."""

    def surface_points(mask):
        edge = mask & ~ndimage.binary_erosion(mask)
        return np.argwhere(edge) * np.asarray(spacing)

    pa, pb = surface_points(a), surface_points(b)
    distances = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))
    a_to_b, b_to_a = distances.min(1), distances.min(0)
    hd95 = max(np.percentile(a_to_b, 95), np.percentile(b_to_a, 95))
    return float(hd95), float(np.concatenate([a_to_b, b_to_a]).mean())


# --- segmentation metrics -----------------------------------------------------------------------------


def test_dice_and_hd95_of_cubes_shifted_along_the_fine_axis_are_exact():
    truth, prediction = cube(), cube(shift_x=2)  # 2 voxels of 0.5 mm along x
    assert evaluation.dice(prediction, truth) == pytest.approx(0.8, abs=1e-6)  # overlap 10*10*8 of 1000 + 1000
    hd95, assd = evaluation.surface_distances(prediction, truth, SPACING_ZYX)
    assert hd95 == pytest.approx(1.0, abs=1e-6)  # the two end faces lie 2 x 0.5 mm from the other cube's surface
    reference_hd95, reference_assd = reference_surface_distances(prediction, truth, SPACING_ZYX)
    assert hd95 == pytest.approx(reference_hd95, abs=1e-6)
    assert assd == pytest.approx(reference_assd, abs=1e-6)
    assert 0.0 < assd < hd95


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI 1.6 warns about its own internal call
def test_hd95_and_assd_equal_monai_s_own_functions():
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    rng = np.random.default_rng(4)
    blob_a, blob_b = (ndimage.gaussian_filter(rng.random((24, 24, 24)), 2) > 0.5 for _ in range(2))
    assert blob_a.any() and blob_b.any()
    a, b = torch.from_numpy(blob_a.astype(np.float32))[None, None], torch.from_numpy(blob_b.astype(np.float32))[None, None]
    hd95, assd = evaluation.surface_distances(blob_a, blob_b, SPACING_ZYX)
    expected_hd95 = compute_hausdorff_distance(a, b, include_background=True, percentile=95, spacing=list(SPACING_ZYX))
    expected_assd = compute_average_surface_distance(a, b, include_background=True, symmetric=True, spacing=list(SPACING_ZYX))
    assert hd95 == pytest.approx(float(expected_hd95), rel=1e-5)
    assert assd == pytest.approx(float(expected_assd), rel=1e-5)


def test_distances_follow_the_spacing_of_the_shifted_axis():
    truth = cube()
    shifted_z = np.roll(truth, 2, axis=0)  # 2 voxels of 2 mm along z
    hd95, _ = evaluation.surface_distances(shifted_z, truth, SPACING_ZYX)
    assert hd95 == pytest.approx(4.0, abs=1e-6)


def test_identical_masks_score_dice_one_and_zero_distance():
    truth = cube()
    assert evaluation.dice(truth, truth) == 1.0
    assert evaluation.surface_distances(truth, truth, SPACING_ZYX) == (0.0, 0.0)


def test_empty_masks_give_dice_one_or_zero_and_no_distance():
    empty = np.zeros((8, 8, 8), dtype=bool)
    assert evaluation.dice(empty, empty) == 1.0
    assert evaluation.dice(empty, np.ones((8, 8, 8), dtype=bool)) == 0.0
    assert evaluation.surface_distances(empty, cube(), SPACING_ZYX) == (None, None)


# --- uncertainty quality ------------------------------------------------------------------------------


def test_auroc_is_one_when_the_uncertainty_is_the_error_indicator():
    errors = np.random.default_rng(0).random((10, 10, 10)) < 0.1
    assert evaluation.auroc(errors.astype(np.float32), errors) == 1.0
    assert evaluation.auroc(1.0 - errors.astype(np.float32), errors) == 0.0


def test_auroc_is_one_half_for_random_or_constant_uncertainty():
    rng = np.random.default_rng(1)
    errors = rng.random(200_000) < 0.2
    assert evaluation.auroc(rng.random(200_000), errors) == pytest.approx(0.5, abs=0.01)
    assert evaluation.auroc(np.zeros(200_000), errors) == 0.5


def test_auroc_counts_ties_half_like_the_pairwise_definition():
    rng = np.random.default_rng(2)
    scores, positives = rng.integers(0, 4, 300).astype(float), rng.random(300) < 0.3
    pos, neg = scores[positives], scores[~positives]
    pairwise = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (pos.size * neg.size)
    assert evaluation.auroc(scores, positives) == pytest.approx(pairwise, abs=1e-12)


def test_auroc_is_undefined_without_errors():
    assert evaluation.auroc(np.random.rand(50), np.zeros(50, dtype=bool)) is None


def test_ece_of_calibrated_probabilities_is_near_zero_and_of_overconfident_ones_is_not():
    rng = np.random.default_rng(3)
    p = rng.random((1, 40, 40, 40)).astype(np.float32)
    truth = (rng.random(p.shape[1:]) < p[0]).astype(np.uint8)  # class 1 happens with probability p
    calibrated = np.concatenate([1 - p, p])
    assert evaluation.expected_calibration_error(calibrated, truth) < 0.01
    overconfident = np.concatenate([1 - (p > 0.5), p > 0.5]).astype(np.float32)
    assert evaluation.expected_calibration_error(overconfident, truth) > 0.15


def test_uncertainty_region_is_the_grown_foreground_box_clipped_to_the_volume():
    truth = np.zeros((30, 30, 30), dtype=np.uint8)
    labels = np.zeros_like(truth)
    truth[10:12, 2:4, 20:22] = 1
    labels[14:15, 3:4, 25:29] = 2
    box = evaluation.uncertainty_region(truth, labels, margin=5)
    assert box == (slice(5, 20), slice(0, 9), slice(15, 30))


def test_uncertainty_quality_scores_a_perfect_uncertainty_map():
    truth = cube().astype(np.uint8)
    labels = cube(shift_x=1).astype(np.uint8)
    errors = labels != truth
    probability = np.stack([1.0 - labels, labels]).astype(np.float32)
    prediction = Prediction(labels, probability, errors.astype(np.float32), [labels])
    quality = evaluation.uncertainty_quality(prediction, truth)
    assert quality["auroc"] == 1.0
    assert quality["error_voxels"] == int(errors.sum())
    assert quality["region_voxels"] == 20 * 20 * 21  # foreground 5..14 (z, y), 5..15 (x), grown by 5, clipped at 0


def test_surface_area_counts_the_faces_of_each_axis_at_their_physical_size():
    mask = np.zeros((6, 7, 8), dtype=bool)
    mask[1:3, 1:4, 1:5] = True  # 2 x 3 x 4 voxels (z, y, x)
    spacing = (2.0, 1.0, 0.5)  # (z, y, x) in mm
    # faces normal to z: 2 x (3 x 4) of 1.0 x 0.5 mm^2; to y: 2 x (2 x 4) of 2.0 x 0.5; to x: 2 x (2 x 3) of 2.0 x 1.0
    assert evaluation.surface_area(mask, spacing) == 2 * 12 * 0.5 + 2 * 8 * 1.0 + 2 * 6 * 2.0
    edge = np.ones((2, 2, 2), dtype=bool)  # the volume's border counts as outside
    assert evaluation.surface_area(edge, (1.0, 1.0, 1.0)) == 24.0


def _ball_prediction(uncertain_shell: float) -> tuple[Prediction, np.ndarray]:
    """A ball predicted exactly, with the uncertainty 1 on the voxels within `uncertain_shell` voxels of its surface."""
    grid = np.indices((40, 40, 40)).astype(np.float32)
    radius = np.sqrt(((grid - 19.5) ** 2).sum(axis=0))
    truth = (radius <= 12).astype(np.uint8)
    uncertainty = (np.abs(radius - 12) <= uncertain_shell).astype(np.float32)
    probability = np.stack([1.0 - truth, truth]).astype(np.float32)
    return Prediction(truth.copy(), probability, uncertainty, [truth.copy()]), truth


def test_band_width_measures_how_thick_the_uncertain_band_is_along_the_surface():
    thin, truth = _ball_prediction(0.5)  # about one voxel thick
    thick, _ = _ball_prediction(2.5)  # about five voxels thick
    spacing = (1.0, 1.0, 1.0)
    owner = evaluation.nearest_structure(truth, [1], spacing)
    thin_width = evaluation.sharpness(thin, truth, 1, owner, spacing, 0.2)["band_width_mm"]
    thick_width = evaluation.sharpness(thick, truth, 1, owner, spacing, 0.2)["band_width_mm"]
    # voxel faces overstate a sphere's area by about 1.5x, so a one-voxel shell reads below 1 mm
    assert 0.4 < thin_width < 1.0
    assert 4.0 < thick_width / thin_width < 6.0
    # halving the voxel size along every axis halves the width in mm
    half = evaluation.sharpness(thin, truth, 1, owner, (0.5, 0.5, 0.5), 0.2)["band_width_mm"]
    assert half == pytest.approx(thin_width / 2)


def test_errors_in_band_is_the_share_of_wrong_voxels_the_band_covers():
    prediction, truth = _ball_prediction(0.5)
    prediction.labels[19, 19, 19] = 0  # an error deep inside: no uncertainty there
    surface = np.argwhere((prediction.uncertainty > 0) & (truth == 1))[:3]
    prediction.labels[tuple(surface.T)] = 0  # three errors in the band
    owner = evaluation.nearest_structure(prediction.labels, [1], (1.0, 1.0, 1.0))
    figures = evaluation.sharpness(prediction, truth, 1, owner, (1.0, 1.0, 1.0), 0.2)
    assert figures["errors_in_band"] == pytest.approx(3 / 4)


def test_band_voxels_go_to_the_nearest_structure():
    labels = np.zeros((5, 5, 20), dtype=np.uint8)
    labels[..., 2:6] = 1
    labels[..., 14:18] = 2
    owner = evaluation.nearest_structure(labels, [1, 2], (1.0, 1.0, 1.0))
    assert (owner[..., :10] == 1).all() and (owner[..., 10:] == 2).all()
    assert (evaluation.nearest_structure(np.zeros_like(labels), [1, 2], (1.0, 1.0, 1.0)) == 0).all()


def test_noise_is_added_to_the_min_max_scaled_image_reproducibly():
    image = synthetic_cases.as_image(synthetic_cases.case_arrays(0, 0)[0])
    first, second = evaluation.noisy_image(image, 0.1), evaluation.noisy_image(image, 0.1)
    difference = sitk.GetArrayFromImage(first) - evaluation.min_max_scale(sitk.GetArrayFromImage(image))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(first), sitk.GetArrayFromImage(second))
    assert difference.std() == pytest.approx(0.1, rel=0.05)
    assert first.GetSpacing() == image.GetSpacing()


# --- one case through a fixed prediction (geometry handling) ----------------------------------------


class FixedPredictor:
    """Predicts the truth shifted by 2 voxels along x, with two samples."""

    kind = "fixed"
    settings: dict = {}

    def __init__(self) -> None:
        self.card = SimpleNamespace(labels=knee_labels()[:1], num_classes=2, name="fixed", version="0", weights_sha256="")

    def predict(self, image: sitk.Image) -> Prediction:
        labels = cube(shift_x=2).astype(np.uint8)
        probability = np.stack([1.0 - labels, labels]).astype(np.float32)
        return Prediction(labels, probability, np.zeros(labels.shape, np.float32), [labels, cube().astype(np.uint8)])


def test_a_case_is_measured_in_mm_of_its_own_spacing(tmp_path: Path):
    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
    truth = cube().astype(np.uint8)
    image = sitk.GetImageFromArray(truth * 100 + np.random.default_rng(0).random(truth.shape).astype(np.float32))
    image.SetSpacing(SPACING_ZYX[::-1])  # SimpleITK order (x, y, z)
    labels = sitk.GetImageFromArray(truth)
    labels.CopyInformation(image)
    sitk.WriteImage(image, str(tmp_path / "images" / "a.nii.gz"))
    sitk.WriteImage(labels, str(tmp_path / "labels" / "a.nii.gz"))
    figures = evaluation.evaluate_case(FixedPredictor(), Case("a", tmp_path / "images/a.nii.gz", tmp_path / "labels/a.nii.gz"), (0.1,))
    femur = figures["structures"]["Femur"]
    assert femur["dice"] == pytest.approx(0.8) and femur["hd95_mm"] == pytest.approx(1.0)
    assert femur["single_sample_dice"] == pytest.approx(0.9)  # mean of 0.8 and 1.0
    assert femur["pairwise_dice"] == pytest.approx(0.8)
    assert femur["noisy_dice"] == {"0.1": pytest.approx(0.8)}
    assert figures["uncertainty"]["auroc"] == 0.5  # a constant map ranks nothing


# --- the whole command on tiny models ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return synthetic_cases.write_cases(tmp_path_factory.mktemp("data"), count=2)


@pytest.fixture(scope="module")
def tiny_ldseg_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    card = ModelCard(name="tiny", version="0.0.1", description="test", labels=knee_labels(),
                     model_grid=tuple(synthetic_cases.TINY_GRID), architecture=synthetic_cases.tiny_architecture())
    directory = tmp_path_factory.mktemp("tiny-ldseg")
    save_package(LDSegNetwork(card), card, directory)
    return directory


@pytest.fixture(scope="module")
def tiny_baseline_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    architecture = BaselineArchitecture(channels=(4, 8, 16), strides=(2, 2), dropout=0.0)
    card = BaselineCard(name="tiny-baseline", version="0.0.1", description="test", labels=knee_labels(),
                        model_grid=tuple(synthetic_cases.TINY_GRID), architecture=architecture)
    directory = tmp_path_factory.mktemp("tiny-baseline")
    save_baseline_package(build_network(card), card, directory)
    return directory


def evaluate(model: Path, data_dir: Path, output: Path, noise=(0.05, 0.2)) -> dict:
    return evaluation.run_evaluation(str(model), data_dir, output, settings=SegmentSettings(samples=2, steps=1),
                                     noise=tuple(noise), device="cpu", band_threshold=0.2)


@pytest.mark.parametrize("model", ["tiny_ldseg_model", "tiny_baseline_model"])
def test_evaluation_writes_json_and_markdown_for_either_kind_of_model(model, tiny_data, tmp_path, request, capsys):
    torch.set_num_threads(1)
    report = evaluate(request.getfixturevalue(model), tiny_data, tmp_path / "out")
    written = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert written == json.loads(json.dumps(report))
    assert set(written["cases"]) == {"case1", "case2"}
    femur = written["cases"]["case1"]["structures"]["Femur"]
    assert set(femur["noisy_dice"]) == {"0.05", "0.2"}
    assert 0.0 <= femur["dice"] <= 1.0 and 0.0 <= written["cases"]["case1"]["uncertainty"]["ece"] <= 1.0
    assert (femur["pairwise_dice"] is None) == (written["model"]["kind"] == "baseline")
    markdown = (tmp_path / "out" / "evaluation.md").read_text()
    assert "| case1 | Femur |" in markdown and "| **mean** | Tibia |" in markdown and "AUROC" in markdown
    assert "[2/2] case2" in capsys.readouterr().out


def test_the_evaluate_command_runs_one_case(tiny_ldseg_model, tiny_data, tmp_path):
    torch.set_num_threads(1)
    status = cli_main(["evaluate", str(tiny_ldseg_model), str(tiny_data), "-o", str(tmp_path), "--cases", "case2",
                       "--noise", "--device", "cpu"])
    assert status == 0
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert list(report["cases"]) == ["case2"]
    diffusion = ModelCard.load(tiny_ldseg_model / "model-card.json").diffusion  # no --samples/--steps: the card's
    assert (report["settings"]["samples"], report["settings"]["steps"]) == (diffusion.default_samples, diffusion.default_steps)


def test_evaluation_reads_the_shared_knee_cases(data_dir, tiny_baseline_model, tmp_path):
    """knee4, shrunk 3 times per axis (real anatomy and intensities, seconds instead of minutes)."""
    torch.set_num_threads(1)
    (case,) = find_cases(data_dir, ("knee4",))
    for folder, path in (("images", case.image_path), ("labels", case.label_path)):
        (tmp_path / "data" / folder).mkdir(parents=True)
        sitk.WriteImage(sitk.Shrink(sitk.ReadImage(str(path)), [3, 3, 3]), str(tmp_path / "data" / folder / "knee4.nii.gz"))
    report = evaluate(tiny_baseline_model, tmp_path / "data", tmp_path / "out", noise=[0.1])
    assert set(report["cases"]["knee4"]["structures"]) == {"Femur", "Tibia"}


def write_pair(data_dir: Path, image: np.ndarray, labels: np.ndarray, label_spacing=(0.8, 1.0, 1.5)) -> Path:
    for folder in ("images", "labels"):
        (data_dir / folder).mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(synthetic_cases.as_image(image), str(data_dir / "images" / "bad.nii.gz"))
    sitk.WriteImage(synthetic_cases.as_image(labels, label_spacing), str(data_dir / "labels" / "bad.nii.gz"))
    return data_dir


@pytest.mark.parametrize(
    "make_data, message",
    [
        (lambda d: write_pair(d, *synthetic_cases.case_arrays(0, 0), label_spacing=(1.0, 1.0, 1.0)), "different geometry"),
        (lambda d: write_pair(d, synthetic_cases.case_arrays(0, 0)[0], synthetic_cases.case_arrays(0, 0)[1] * 2), "unknown value"),
        (lambda d: (d / "images").mkdir(parents=True) or (d / "labels").mkdir() or d, "No image/label pairs"),
    ],
    ids=["geometry", "label-values", "no-pairs"],
)
def test_evaluation_refuses_bad_data(make_data, message, tiny_baseline_model, tmp_path):
    data_dir = make_data(tmp_path / "data")
    with pytest.raises(LDSegError, match=message):
        evaluate(tiny_baseline_model, data_dir, tmp_path / "out")
    assert not (tmp_path / "out" / "evaluation.json").exists()


def test_evaluation_refuses_negative_noise(tiny_baseline_model, tiny_data, tmp_path):
    with pytest.raises(LDSegError, match="sigmas"):
        evaluate(tiny_baseline_model, tiny_data, tmp_path, noise=[-0.1])


def test_the_one_dice_agrees_with_monai_and_takes_numpy_or_torch_masks():
    from monai.metrics import DiceMetric

    from ldseg.overlap import dice

    rng = np.random.default_rng(3)
    metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    for density_a, density_b in ((0.3, 0.6), (0.01, 0.02), (0.0, 0.0), (0.0, 0.5)):
        a, b = rng.random((12, 10, 8)) < density_a, rng.random((12, 10, 8)) < density_b
        reference = float(metric(*(torch.from_numpy(m.astype(np.float32))[None, None] for m in (a, b))))
        assert dice(a, b) == pytest.approx(reference, abs=1e-6)
        assert dice(torch.from_numpy(a), torch.from_numpy(b)) == dice(a, b)
