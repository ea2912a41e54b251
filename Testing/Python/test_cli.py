"""The `ldseg` command line end to end on a real knee case: files, metadata, errors, atomicity."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from conftest import REPO

OUTPUT_KINDS = {"segmentation", "uncertainty", "summary", "qc_picture"}


def ldseg(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ldseg.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def segmented(random_model, data_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("cli")
    run = ldseg("segment", data_dir / "images" / "knee1.nii.gz", "-o", output, "--model", random_model,
                "--samples", 3, "--save-samples", "--progress", "none")
    assert run.returncode == 0, run.stderr
    return output


def test_segment_writes_every_file(segmented):
    names = sorted(p.name for p in segmented.iterdir())
    assert names == sorted(["knee1.seg.nrrd", "knee1-uncertainty.nrrd", "knee1.json", "knee1-qc.png",
                            "knee1-sample-00.seg.nrrd", "knee1-sample-01.seg.nrrd", "knee1-sample-02.seg.nrrd"])
    assert (segmented / "knee1-qc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_seg_nrrd_has_slicer_segment_metadata_and_input_geometry(segmented, knee_image):
    segmentation = slicerio.read_segmentation(str(segmented / "knee1.seg.nrrd"))
    segments = {s["name"]: s for s in segmentation["segments"]}
    assert list(segments) == ["Femur", "Tibia"]
    femur, tibia = segments["Femur"], segments["Tibia"]
    assert femur["terminology"]["type"] == ["SCT", "71341001", "Bone structure of femur"]
    assert tibia["terminology"]["type"] == ["SCT", "12611008", "Bone structure of tibia"]
    assert femur["terminology"]["category"] == ["SCT", "123037004", "Anatomical Structure"]
    assert femur["tags"]["DICOM.SegmentAlgorithmType"] == "AUTOMATIC"
    assert femur["tags"]["DICOM.SegmentAlgorithmName"].startswith("LDSeg knee-bones")
    np.testing.assert_allclose(femur["color"], [0.93, 0.82, 0.62], atol=1e-6)
    assert segmentation["voxels"].shape == knee_image.GetSize()
    np.testing.assert_allclose(segmentation["ijkToLPS"][:3, 3], knee_image.GetOrigin())
    uncertainty = sitk.ReadImage(str(segmented / "knee1-uncertainty.nrrd"))
    assert uncertainty.GetSize() == knee_image.GetSize() and uncertainty.GetPixelID() == sitk.sitkFloat32
    assert uncertainty.GetSpacing() == knee_image.GetSpacing() and uncertainty.GetOrigin() == knee_image.GetOrigin()


def test_summary_reports_settings_model_structures_and_timings(segmented):
    summary = json.loads((segmented / "knee1.json").read_text())
    assert summary["settings"]["samples"] == 3 and summary["settings"]["steps"] == 2
    assert summary["settings"]["largest_component"] is True
    assert summary["model"]["name"] == "knee-bones" and len(summary["model"]["weights_sha256"]) == 64
    assert set(summary["structures"]) == {"Femur", "Tibia"}
    assert {"volume_ml", "mean_uncertainty", "boundary_uncertainty", "mean_pairwise_dice"} <= set(summary["structures"]["Femur"])
    assert summary["timings_seconds"]["total"] > 0
    assert OUTPUT_KINDS <= set(summary["files"])


def test_jsonl_progress_for_the_slicer_panel(random_model, small_knee, tmp_path):
    image = tmp_path / "small.nrrd"
    sitk.WriteImage(small_knee, str(image))
    run = ldseg("segment", image, "-o", tmp_path / "out", "--model", random_model, "--samples", 2, "--progress", "jsonl",
                "--all-components")
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert events[0]["event"] == "progress" and events[-1]["event"] == "done"
    assert json.loads(Path(events[-1]["summary"]).read_text())["settings"]["largest_component"] is False
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions == sorted(fractions)


def test_errors_are_one_line_and_leave_no_files(random_model, tmp_path):
    flat = tmp_path / "flat.nrrd"
    sitk.WriteImage(sitk.Image([40, 40, 40], sitk.sitkInt16), str(flat))
    output = tmp_path / "out"
    run = ldseg("segment", flat, "-o", output, "--model", random_model)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == ["ldseg: flat.nrrd is empty: every voxel has the value 0. "
                                               "Check that the right volume was loaded."]
    assert not output.exists()  # a failed run leaves no empty output folder either


@pytest.mark.parametrize(
    "args, message",
    [
        (["--samples", "0"], "number of samples must be between 1 and 64"),
        (["--samples", "5000"], "number of samples must be between 1 and 64"),
        (["--model", "no-such-model"], "Model 'no-such-model' was not found"),
    ],
)
def test_bad_options_are_explained(random_model, data_dir, tmp_path, args, message):
    if "--model" not in args:
        args = [*args, "--model", random_model]
    run = ldseg("segment", data_dir / "images" / "knee2.nii.gz", "-o", tmp_path / "out", *args)
    assert run.returncode == 1 and message in run.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_fusion_name_is_refused(data_dir, tmp_path):
    run = ldseg("segment", data_dir / "images" / "knee2.nii.gz", "-o", tmp_path, "--fusion", "average")
    assert run.returncode == 2 and "invalid choice: 'average'" in run.stderr


def test_output_path_that_is_a_file_is_explained(random_model, data_dir, tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a folder")
    run = ldseg("segment", data_dir / "images" / "knee2.nii.gz", "-o", blocker, "--model", random_model)
    assert run.returncode == 1 and "Cannot write to output folder" in run.stderr


def test_an_interrupted_run_leaves_no_partial_output(random_model, data_dir, tmp_path):
    output = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "ldseg.cli", "segment", str(data_dir / "images" / "knee3.nii.gz"), "-o", str(output),
         "--model", str(random_model), "--samples", "16", "--chunk-size", "1", "--progress", "jsonl"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    for line in process.stdout:  # wait until sampling has started, then cancel as the panel does
        if '"Sampling"' in line:
            process.send_signal(signal.SIGTERM)
            break
    remaining, _ = process.communicate(timeout=120)
    assert process.returncode == 130
    assert json.loads(remaining.strip().splitlines()[-1])["event"] == "cancelled"
    assert not output.exists()  # the folder this run created is removed with it
