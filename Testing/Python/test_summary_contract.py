"""The result contract: what the engine writes is what the scene layer reads, through one versioned class."""

import json

import pytest
import torch

import scene_fixtures  # noqa: F401  (puts the module folder on sys.path)
from LDSegLib.summary import SummaryError, read_summary
from ldseg.inference import Segmenter
from ldseg.outputs import write_outputs
from ldseg.package import load_package
from ldseg.settings import SegmentSettings
from ldseg.summary import SUMMARY_FORMAT_VERSION, RunSummary


@pytest.fixture(scope="module")
def engine_summary(random_model, small_knee, tmp_path_factory):
    """A real engine run's summary file (random weights: the figures do not matter here)."""
    result = Segmenter(load_package(random_model), torch.device("cpu")).segment(
        small_knee, SegmentSettings(samples=2, keep_samples=True))
    output = tmp_path_factory.mktemp("engine")
    files = write_outputs(result, small_knee, output, "knee1", "knee1.nii.gz")
    return output / files["summary"], result


def test_the_engine_writes_the_contract_and_the_scene_layer_reads_it_back(engine_summary):
    path, result = engine_summary
    data = json.loads(path.read_text())
    summary = RunSummary.from_plain(data)
    assert summary.format_version == SUMMARY_FORMAT_VERSION
    assert json.loads(summary.to_json()) == data  # nothing written outside the contract, nothing lost
    assert summary.settings == result.settings and summary.settings.samples == 2
    assert summary.structures == result.structures and summary.labels == result.card.labels
    engine_result = read_summary(path)
    assert engine_result.segmentation_path == path.parent / "knee1.seg.nrrd"
    assert [p.name for p in engine_result.sample_paths] == ["knee1-sample-00.seg.nrrd", "knee1-sample-01.seg.nrrd"]
    assert engine_result.statistics == result.structures
    assert engine_result.uncertainty_measure == "entropy" and engine_result.model_name == result.card.name


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format_version=SUMMARY_FORMAT_VERSION + 1), f"format version {SUMMARY_FORMAT_VERSION + 1}"),
    (lambda d: d.pop("format_version"), "format version None"),
    (lambda d: d["structures"]["Femur"].update(volume_ml="large"), "summary.structures.Femur.volume_ml"),
    (lambda d: d["settings"].update(temperature=1.0), "unknown key(s) temperature in summary.settings"),
    (lambda d: d.pop("files"), "files"),
])
def test_a_summary_outside_the_contract_is_refused_with_the_field_named(engine_summary, tmp_path, change, message):
    data = json.loads(engine_summary[0].read_text())
    change(data)
    broken = tmp_path / "knee1.json"
    broken.write_text(json.dumps(data))
    with pytest.raises(SummaryError) as refused:
        read_summary(broken)
    assert message in str(refused.value)
