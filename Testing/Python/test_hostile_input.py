"""Hostile and broken input (issue 9): every bad file gets exit status 1 (130 when interrupted), one
line on stderr without a traceback, nothing written outside the output folder, and an output folder
that is either untouched or complete.

Bad inputs are generated here, class by class: model cards and packages (path traversal, control
characters, absurd values, zip bombs), images, DICOM series, training configs, disk-full and signals
on real subprocesses. Every generated input is counted in HANDLED (see test_report_the_count).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

import synthetic_cases
from conftest import REPO
from ldseg import cli, store
from ldseg.card import CARD_FILE, ModelCard
from ldseg.errors import LDSegError
from ldseg.networks import LDSegNetwork
from ldseg.package import load_package, save_package, write_weights

HANDLED: list[str] = []  # one entry per bad input that was refused as it should be


# --- helpers ------------------------------------------------------------------------------------


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """`ldseg ARGS` in this process (fast); the CLI's signal handlers are undone afterwards.

    As the `ldseg` program does (cli.run), native libraries' output on file descriptor 2 is dropped;
    what the CLI prints is captured by capsys. The tests on real processes check the real stderr.
    """
    import logging

    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    original, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        code = cli.main([str(arg) for arg in args])
    finally:
        os.dup2(original, 2)
        os.close(original)
        os.close(null)
        logging.disable(logging.NOTSET)
        for number, handler in handlers.items():
            signal.signal(number, handler)
    out, err = capsys.readouterr()
    return code, out, err


def ldseg(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ldseg.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=120, **kwargs)


def assert_one_line(code: int, err: str, what: str, status: int = 1, match: str = "") -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == status, f"{what}: exit {code}, stderr {err!r}"
    assert "Traceback" not in err, f"{what}: {err}"
    assert len(lines) == 1 and lines[0].startswith("ldseg: "), f"{what}: {err!r}"
    assert match.lower() in lines[0].lower(), f"{what}: {lines[0]!r} lacks {match!r}"
    HANDLED.append(what)


def tree(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under root (files with size and mtime), to prove that nothing else changed."""
    return {str(p.relative_to(root)): None if p.is_dir() and not p.is_symlink() else (p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LDSEG_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


TINY = {
    "label_encoder_channels": [4, 8], "image_encoder_channels": [4, 8], "label_decoder_channels": [4],
    "denoiser_channels": [8, 8], "denoiser_attention_levels": [False, False], "denoiser_res_blocks": 1,
    "denoiser_norm_groups": 4, "encoder_groups": 2, "dropout": 0.0,
}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A valid package with a tiny network: hostile cards are edits of its card."""
    from conftest import bundled_card

    card = ModelCard.from_dict({**bundled_card().to_dict(), "name": "tiny", "model_grid": [16, 16, 16],
                                "architecture": TINY})
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny-model")
    save_package(LDSegNetwork(card), card, directory)
    return directory


def edited_package(source: Path, destination: Path, **changes) -> Path:
    """A copy of a package whose card has `changes` (dotted keys reach into nested fields)."""
    shutil.copytree(source, destination)
    data = json.loads((destination / CARD_FILE).read_text())
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = data
        for parent in parents:
            node = node[int(parent)] if isinstance(node, list) else node[parent]
        node[leaf] = value
    (destination / CARD_FILE).write_text(json.dumps(data))
    return destination


# --- 1. card names never become paths -----------------------------------------------------------

# {victim} becomes an absolute path inside the test's own folder: run against a tool without the
# checks, these names must not be able to harm anything outside tmp_path (an absolute "/tmp" did).
HOSTILE_NAMES = ["/../../..{victim}", "{victim}", "../../victim", "..", ".", "", "a/b", "a\\b", "x" * 65, "-rf",
                 "name\nwith newline", "\x1b[31mred", "models/../..", "~", "na\x00me"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_import_refuses_card_names_that_are_not_plain_names(name, tiny_model, cache, tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    existing = store.import_model(str(tiny_model))  # an earlier import must survive too
    package = edited_package(tiny_model, tmp_path / "pkg", name=name.format(victim=victim))
    before = tree(tmp_path)
    code, _, err = run_cli(capsys, "models", "import", package)
    assert_one_line(code, err, f"card name {name!r}", match="name")
    assert tree(tmp_path) == before
    assert (victim / "keep.txt").read_text() == "precious" and existing.directory.is_dir()


def test_reimport_replaces_the_earlier_import_atomically(tiny_model, cache, tmp_path):
    first = store.import_model(str(tiny_model))
    (first.directory / "stale.txt").write_text("from the first import")
    second = store.import_model(str(tiny_model))
    assert second.directory == first.directory
    assert sorted(p.name for p in second.directory.iterdir()) == ["model-card.json", "model.safetensors"]
    assert [p.name for p in (cache / "models").iterdir()] == ["tiny"]  # no staging folder left


def test_import_through_a_planted_symlink_in_the_cache_is_refused(tiny_model, cache, tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    (cache / "models").mkdir(parents=True)
    (cache / "models" / "tiny").symlink_to(victim)
    code, _, err = run_cli(capsys, "models", "import", tiny_model)
    assert_one_line(code, err, "cache entry is a symlink out of the cache", match="does not stay inside")
    assert (victim / "keep.txt").read_text() == "precious"


# --- 2. weights_file is a plain file name inside the package -------------------------------------

HOSTILE_WEIGHTS = ["../outside.safetensors", "../../outside.safetensors", "{tmp}/outside.safetensors",
                   "sub/model.safetensors", "..", "model.pt", ".safetensors", "a\nb.safetensors"]


@pytest.mark.parametrize("weights_file", HOSTILE_WEIGHTS)
def test_weights_file_must_be_a_plain_name_inside_the_package(weights_file, tiny_model, cache, tmp_path, capsys):
    package = edited_package(tiny_model, tmp_path / "pkg", weights_file=weights_file.format(tmp=tmp_path))
    shutil.copy(tiny_model / "model.safetensors", tmp_path / "outside.safetensors")
    before = tree(tmp_path)
    code, _, err = run_cli(capsys, "models", "import", package)
    assert_one_line(code, err, f"weights_file {weights_file!r}", match="weights_file")
    assert tree(tmp_path) == before


def test_weights_file_that_is_a_symlink_out_of_the_package_is_refused(tiny_model, tmp_path):
    package = edited_package(tiny_model, tmp_path / "pkg")
    (package / "model.safetensors").unlink()
    shutil.copy(tiny_model / "model.safetensors", tmp_path / "elsewhere.safetensors")
    (package / "model.safetensors").symlink_to(tmp_path / "elsewhere.safetensors")
    with pytest.raises(LDSegError, match="does not stay inside"):
        load_package(package)
    HANDLED.append("weights file symlinked out of the package")


# --- 3. card text is plain text before it reaches headers or the terminal --------------------------

HOSTILE_TEXT = {
    "labels.0.name": ["Femur\nSegment9_Name:=evil", "\x1b[2J\x1b[31mFemur", "Fe|mur", "Fe~mur", "", "Tibia",
                      "Femur\u202e", "F" * 300, "Fémur"],
    "description": ["line one\nline two", "\x1b]0;title\x07", "\r overwritten"],
    "labels.0.type.meaning": ["Bone^of femur", "Bone\x00"],
    "labels.1.category.scheme": ["SCT\n"],
    "version": ["1.0\n", "../1"],
}


@pytest.mark.parametrize("key,text", [(key, text) for key, texts in HOSTILE_TEXT.items() for text in texts])
def test_card_text_with_control_characters_or_separators_is_refused(key, text, tiny_model, cache, tmp_path, capsys):
    package = edited_package(tiny_model, tmp_path / "pkg", **{key: text})
    code, out, err = run_cli(capsys, "models", "import", package)
    assert_one_line(code, err, f"card {key} {text!r}", match="not a valid LDSeg model card")
    assert "\x1b" not in err and "\x1b" not in out
    assert not (cache / "models" / "tiny").exists()


def test_plain_label_names_reach_the_seg_nrrd_intact(tiny_model, tmp_path):
    import slicerio

    from ldseg.outputs import write_segmentation

    card = ModelCard.load(edited_package(tiny_model, tmp_path / "pkg", **{"labels.0.name": "Femur (distal), left: 'L'"})
                          / CARD_FILE)
    labels = sitk.GetImageFromArray(np.pad(np.ones((4, 4, 4), np.uint8), 2) + 0)
    labels[0, 0, 0] = 2
    write_segmentation(labels, card, tmp_path / "x.seg.nrrd")
    names = [segment["name"] for segment in slicerio.read_segmentation(str(tmp_path / "x.seg.nrrd"))["segments"]]
    assert names == ["Femur (distal), left: 'L'", "Tibia"]


# --- 4. temporary files are new files, never a predictable name a link could redirect -------------


def test_weights_are_not_written_through_a_planted_partial_symlink(tiny_model, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "out"
    target.mkdir()
    (target / ".model.safetensors.partial").symlink_to(victim)
    write_weights(LDSegNetwork(ModelCard.load(tiny_model / CARD_FILE)), target / "model.safetensors", {})
    assert victim.read_text() == "precious" and (target / "model.safetensors").stat().st_size > 1000
    HANDLED.append("planted .partial symlink (weights)")


def test_checkpoint_is_not_written_through_a_planted_partial_symlink(tmp_path):
    from types import SimpleNamespace

    from ldseg.training import CHECKPOINT_FILE, Trainer

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / f".{CHECKPOINT_FILE}.partial").symlink_to(victim)
    network = torch.nn.Linear(2, 2)
    trainer = SimpleNamespace(
        step=3, checkpoint_fingerprint=lambda: "x", card=SimpleNamespace(model_grid=(16, 16, 16)), train_cases=[],
        network=network, optimizer=torch.optim.SGD(network.parameters(), lr=0.1), extra_state=dict, output_dir=tmp_path,
    )
    Trainer.save_checkpoint(trainer)
    assert victim.read_text() == "precious"
    assert int(torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["step"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f".{CHECKPOINT_FILE}.partial", CHECKPOINT_FILE,
                                                                 "victim.txt"])
    HANDLED.append("planted .partial symlink (checkpoint)")


# --- synthetic inputs (small, so that the whole file stays fast) --------------------------------


def blob(size=(24, 24, 20), dtype=np.float32) -> np.ndarray:
    """A bright ellipsoid in noise, (z, y, x): something to segment."""
    z, y, x = np.mgrid[: size[2], : size[1], : size[0]].astype(np.float32)
    centre = np.array([size[2], size[1], size[0]]) / 2
    inside = ((z - centre[0]) / 6) ** 2 + ((y - centre[1]) / 7) ** 2 + ((x - centre[2]) / 7) ** 2 < 1
    rng = np.random.default_rng(0)
    return (100 + 400 * inside + rng.normal(0, 20, inside.shape)).astype(dtype)


def volume(array: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    return image


def write_nifti(array: np.ndarray, path: Path, patch: dict[int, bytes] | None = None) -> Path:
    """A NIfTI-1 file of `array`; `patch` overwrites header bytes at offsets (dim at 40, scl_slope at 112)."""
    import gzip

    import nibabel

    nifti = nibabel.Nifti1Image(np.transpose(array, (2, 1, 0)), np.eye(4))
    data = bytearray(nifti.to_bytes())
    for offset, value in (patch or {}).items():
        data[offset: offset + len(value)] = value
    path.write_bytes(gzip.compress(bytes(data), 1) if path.name.endswith(".gz") else bytes(data))
    return path


def put(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def written(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path))
    return path


def synthetic_data_dir(root: Path, cases=("a", "b")) -> Path:
    for folder in ("images", "labels"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(cases):
        image = blob()
        labels = (image > 300).astype(np.uint8)
        labels[: labels.shape[0] // 2] *= 2  # two structures, as the card's labels
        labels[labels == 0] = 0
        sitk.WriteImage(volume(image + index), str(root / "images" / f"{name}.nii.gz"))
        sitk.WriteImage(volume(labels), str(root / "labels" / f"{name}.nii.gz"))
    return root


def segment_in_process(capsys, tiny_model, source, output, *extra) -> tuple[int, str, str]:
    return run_cli(capsys, "segment", source, "-o", output, "--model", tiny_model, "--samples", 2,
                   "--progress", "none", *extra)


# --- 6, 7, 10. images: corrupt, malformed, oversized ---------------------------------------------


def _truncated(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _nrrd_header(path: Path, lines: list[str], data: bytes = b"") -> Path:
    path.write_bytes(("NRRD0004\n" + "\n".join(lines) + "\n\n").encode() + data)
    return path


def _nan_array() -> np.ndarray:
    array = blob()
    array[5, 5, 5] = np.nan
    return array


def _inf_array() -> np.ndarray:
    array = blob()
    array[6, 6, 6] = np.inf
    return array


BAD_IMAGES = {
    # name: (writer(tmp) -> path, words the one line must contain)
    "nan.nii.gz": (lambda t: write_nifti(_nan_array(), t / "nan.nii.gz"), "NaN"),
    "inf.nii": (lambda t: write_nifti(_inf_array(), t / "inf.nii"), "NaN or infinite"),
    "nan.nrrd": (lambda t: written(volume(_nan_array()), t / "nan.nrrd"), "NaN"),
    "truncated 60% .nii.gz": (lambda t: _truncated(write_nifti(blob(), t / "cut.nii.gz"), 0.6), "truncated"),
    "truncated 60% .nii": (lambda t: _truncated(write_nifti(blob(), t / "cut.nii"), 0.6), "truncated"),
    "truncated .nrrd": (lambda t: _truncated(written(volume(blob()), t / "cut.nrrd"), 0.6), "truncated"),
    "empty .nii.gz": (lambda t: put(t / "empty.nii.gz", b""), "cannot read"),
    "random bytes .nii": (lambda t: put(t / "r.nii", os.urandom(4000)), "cannot read"),
    "random bytes .mha": (lambda t: put(t / "r.mha", os.urandom(4000)), "cannot read"),
    "nifti header with dim -1": (lambda t: write_nifti(blob(), t / "dim.nii", {40: np.array([3, -1, 24, 20], "<i2")
                                                                              .tobytes()}), "cannot read"),
    "nifti header of 1024^3": (lambda t: write_nifti(blob(), t / "huge.nii.gz",
                                                     {40: np.array([3, 1024, 1024, 1024], "<i2").tobytes()}), "limit"),
    "nrrd header of 4000^3": (lambda t: _nrrd_header(t / "huge.nrrd", ["type: float", "endian: little", "dimension: 3",
                                                                      "sizes: 4000 4000 4000", "encoding: raw"]), "limit"),
    "nrrd malformed header": (lambda t: _nrrd_header(t / "bad.nrrd", ["type: short", "dimension: 3", "sizes: 10 10 10",
                                                                     "encoding: raw", "space directions: (1,0,0)"],
                                                     os.urandom(100)), "valid space dimension"),
    "nhdr with missing data file": (lambda t: _nrrd_header(t / "x.nhdr", ["type: short", "dimension: 3",
                                                                         "sizes: 20 20 20", "encoding: raw",
                                                                         "data file: missing.raw"]), "cannot read"),
    "nifti vox_offset past the end": (lambda t: write_nifti(blob(), t / "off.nii", {108: np.array([1e6], "<f4")
                                                                                   .tobytes()}), "truncated"),
    "2D image": (lambda t: written(sitk.GetImageFromArray(blob()[0]), t / "flat.nrrd"), "2D"),
    "4D image": (lambda t: write_nifti_4d(t / "four.nii.gz"), "4D"),
    "RGB volume": (lambda t: written(sitk.Compose(*[volume(blob())] * 3), t / "rgb.nrrd"), "components"),
    "constant volume": (lambda t: written(volume(np.full((20, 24, 24), 7, np.float32)), t / "c.nrrd"), "empty"),
    "spacing 1e-30 mm": (lambda t: written(volume(blob(), (1e-30, 1e-30, 1e-30)), t / "s.nrrd"), "spacing"),
    "too small 8^3": (lambda t: written(volume(blob((8, 8, 8))), t / "small.nrrd"), "too small"),
    "unsupported .png": (lambda t: put(t / "x.png", b"\x89PNG"), "not a supported"),
    "missing file": (lambda t: t / "nope.nii.gz", "does not exist"),
    "folder without DICOM": (lambda t: (t / "folder").mkdir() or t / "folder", "No DICOM files"),
    "mhd reading /etc/passwd": (lambda t: put(t / "p.mhd", b"ObjectType = Image\nNDims = 3\nDimSize = 16 16 4\n"
                                                            b"ElementType = MET_UCHAR\nElementDataFile = /etc/passwd\n"),
                                "not a file beside it"),
    "nhdr reading ../x.raw": (lambda t: _nrrd_header(t / "p.nhdr", ["type: uchar", "dimension: 3", "sizes: 16 16 16",
                                                                    "encoding: raw", "data file: ../x.raw"]),
                              "not a file beside it"),
}


def write_nifti_4d(path: Path) -> Path:
    import nibabel

    nibabel.save(nibabel.Nifti1Image(np.stack([blob(), blob()], -1), np.eye(4)), str(path))
    return path


@pytest.mark.parametrize("kind", BAD_IMAGES)
def test_bad_images_get_one_line_and_no_output(kind, tiny_model, tmp_path, capsys):
    make, words = BAD_IMAGES[kind]
    source = make(tmp_path)
    output = tmp_path / "out"
    before = tree(tmp_path)
    code, _, err = segment_in_process(capsys, tiny_model, source, output)
    assert_one_line(code, err, f"image: {kind}", match=words)
    assert tree(tmp_path) == before and not output.exists()


def test_a_large_image_is_read_once_its_limit_is_raised(tiny_model, tmp_path, capsys, monkeypatch):
    source = written(volume(blob()), tmp_path / "v.nrrd")
    monkeypatch.setenv("LDSEG_LIMITS", "max_voxels=1000")
    code, _, err = segment_in_process(capsys, tiny_model, source, tmp_path / "out")
    assert_one_line(code, err, "image over a lowered voxel limit", match="--limit max_voxels=11520")
    code, _, err = run_cli(capsys, "--limit", "max_voxels=20000", "segment", source, "-o", tmp_path / "out",
                           "--model", tiny_model, "--samples", 2, "--progress", "none")
    assert code == 0, err
    assert (tmp_path / "out" / "v.seg.nrrd").is_file()
    code, _, err = run_cli(capsys, "--limit", "max_voxels=-1", "models", "list")
    assert_one_line(code, err, "negative limit", match="positive")
    code, _, err = run_cli(capsys, "--limit", "bogus=1", "models", "list")
    assert_one_line(code, err, "unknown limit", match="Unknown limit")


def test_truncated_label_map_in_evaluate_is_refused(tiny_model, tmp_path, capsys):
    data = synthetic_data_dir(tmp_path / "data")
    _truncated(data / "labels" / "b.nii.gz", 0.6)
    code, _, err = run_cli(capsys, "evaluate", tiny_model, data, "-o", tmp_path / "eval", "--samples", 1,
                           "--noise")
    assert_one_line(code, err, "evaluate: truncated label map", match="truncated")
    assert not (tmp_path / "eval" / "evaluation.json").exists()


# --- 6, 7, 8. DICOM series: damaged files, malformed geometry, de-identified sources ----------------


def dicom_series(folder: Path, edit=None) -> Path:
    """A 20-slice MR series of blob(); edit(dataset, index) changes each slice before it is saved."""
    import dicom_factory
    import pydicom

    files = sorted(dicom_factory.write_mr_series(volume(blob().astype(np.int16)), folder),
                   key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))
    if edit is not None:
        for index, path in enumerate(files):
            dataset = pydicom.dcmread(path)
            if edit(dataset, index) is not False:
                dataset.save_as(path)
    return folder


def _on_slice(number, change):
    def edit(dataset, index):
        if index != number:
            return False
        change(dataset)
    return edit


def _delete(*keywords):
    def change(dataset, _index=None):
        for keyword in keywords:
            if keyword in dataset:
                delattr(dataset, keyword)
    return change


def _raw(keyword_tag, vr, value):
    return lambda dataset, _index=None: dataset.add_new(keyword_tag, vr, value)


BAD_SERIES = {
    "PixelData half as long": (_on_slice(7, lambda d: setattr(d, "PixelData", d.PixelData[: len(d.PixelData) // 2])),
                               "truncated or damaged"),
    "no PixelData in a slice": (_on_slice(3, _delete("PixelData")), "no pixel data"),
    "IPP with two values": (_on_slice(4, _raw(0x00200032, "DS", ["1", "2"])), "ImagePositionPatient needs 3"),
    "IPP not numbers": (_on_slice(4, _raw(0x00200032, "LO", "a\\b\\c")), "malformed geometry"),
    "IOP not unit vectors": (_raw(0x00200037, "DS", ["2", "0", "0", "0", "1", "0"]), "perpendicular unit"),
    "IOP five values": (_raw(0x00200037, "DS", ["1", "0", "0", "0", "1"]), "ImageOrientationPatient needs 6"),
    "PixelSpacing zero": (_raw(0x00280030, "DS", ["0", "0"]), "not positive"),
    "PixelSpacing one value": (_raw(0x00280030, "DS", ["1"]), "PixelSpacing needs 2"),
    "PixelSpacing NaN": (_raw(0x00280030, "LO", "nan\\nan"), "not a finite number"),
    "NumberOfFrames text": (_on_slice(2, _raw(0x00280008, "LO", "many")), "invalid NumberOfFrames"),
    "Rows 0": (_on_slice(2, _raw(0x00280010, "US", 0)), "not an image size"),
    "missing IPP": (_on_slice(5, _delete("ImagePositionPatient")), "lack ImagePositionPatient"),
    "duplicate positions": (lambda d, i: setattr(d, "ImagePositionPatient", [0, 0, 0]) if i < 2 else False,
                            "same position"),
    "slice missing (gap)": (None, "missing"),
    "damaged file with DICM marker": (None, "damaged DICOM file"),
    "single slice": (None, "single image"),
    "over the voxel limit": (None, "limit"),
}


@pytest.mark.parametrize("kind", BAD_SERIES)
def test_bad_dicom_series_get_one_line_and_no_output(kind, tiny_model, tmp_path, capsys, monkeypatch):
    edit, words = BAD_SERIES[kind]
    folder = dicom_series(tmp_path / "series", edit)
    files = sorted(folder.iterdir())
    if kind == "slice missing (gap)":
        import pydicom

        by_position = sorted(files, key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
        by_position[10].unlink()
    elif kind == "damaged file with DICM marker":
        put(folder / "broken.dcm", b"\0" * 128 + b"DICM" + os.urandom(300))
    elif kind == "single slice":
        for path in files[1:]:
            path.unlink()
    elif kind == "over the voxel limit":
        monkeypatch.setenv("LDSEG_LIMITS", "max_voxels=5000")
    output = tmp_path / "out"
    before = tree(tmp_path)
    code, _, err = segment_in_process(capsys, tiny_model, folder, output)
    assert_one_line(code, err, f"DICOM: {kind}", match=words)
    assert tree(tmp_path) == before and not output.exists()


BAD_OPTIONS = {
    "--seed 10^30": (["--seed", str(10**30)], "--seed"),
    "--seed -1": (["--seed", "-1"], "--seed"),
    "--samples 0": (["--samples", "0"], "--samples"),
    "--steps 100000": (["--steps", "100000"], "--steps"),
    "--chunk-size 0": (["--chunk-size", "0"], "chunk size"),
}


@pytest.mark.parametrize("kind", BAD_OPTIONS)
def test_bad_segment_options_are_one_line(kind, tiny_model, tmp_path, capsys):
    options, words = BAD_OPTIONS[kind]
    source = written(volume(blob()), tmp_path / "v.nrrd")
    code, _, err = segment_in_process(capsys, tiny_model, source, tmp_path / "out", *options)
    assert_one_line(code, err, f"option {kind}", match=words)
    assert not (tmp_path / "out").exists()


def test_series_uid_for_an_image_file_is_refused(tiny_model, tmp_path, capsys):
    source = written(volume(blob()), tmp_path / "v.nrrd")
    code, _, err = segment_in_process(capsys, tiny_model, source, tmp_path / "out", "--series-uid", "1.2.3")
    assert_one_line(code, err, "--series-uid with a file", match="--series-uid")


def test_dot_as_dicom_folder_names_outputs_by_the_folder(tiny_model, tmp_path, capsys, monkeypatch):
    folder = dicom_series(tmp_path / "knee7")
    monkeypatch.chdir(folder)
    code, _, err = segment_in_process(capsys, tiny_model, ".", tmp_path / "out")
    assert code == 0, err
    assert (tmp_path / "out" / "knee7.seg.nrrd").is_file() and not (tmp_path / "out" / ".json").exists()


def dciodvfy_errors(path: Path) -> list[str]:
    report = subprocess.run([shutil.which("dciodvfy"), str(path)], capture_output=True, text=True)
    return [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]


DEIDENTIFIED = {
    "no patient or study attributes": _delete("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                                              "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName"),
    "SeriesNumber text": _raw(0x00200011, "LO", "abc"),
    "SeriesNumber 2^31-1": lambda d, i: setattr(d, "SeriesNumber", 2**31 - 1),
    "no SeriesNumber": _delete("SeriesNumber"),
}


@pytest.mark.parametrize("kind", DEIDENTIFIED)
def test_dicom_seg_from_a_deidentified_series_is_valid(kind, tmp_path):
    from ldseg.dicom_input import read_dicom_series
    from ldseg.dicom_seg import write_dicom_seg

    series = read_dicom_series(dicom_series(tmp_path / "series", DEIDENTIFIED[kind]))
    labels = sitk.Cast(series.image > 300, sitk.sitkUInt8)
    labels[0, 0, 0] = 2
    card = ModelCard.load(Path(__file__).parents[2] / "Resources" / "Models" / "knee-bones" / CARD_FILE)
    path = write_dicom_seg(labels, series, card, tmp_path / "seg.dcm")
    assert dciodvfy_errors(path) == []
    HANDLED.append(f"DICOM SEG: {kind}")


REFUSED_SOURCES = {
    "empty StudyInstanceUID": (lambda d, i: setattr(d, "StudyInstanceUID", ""), "no StudyInstanceUID"),
    "two studies in one series": (lambda d, i: setattr(d, "StudyInstanceUID", "1.2.3.4" if i == 3 else
                                                       d.StudyInstanceUID), "more than one StudyInstanceUID"),
    "unknown character set": (lambda d, i: setattr(d, "SpecificCharacterSet", "ISO_IR 999"), "character set"),
}


@pytest.mark.parametrize("kind", REFUSED_SOURCES)
def test_dicom_seg_export_refuses_what_it_cannot_fill_before_segmenting(kind, tiny_model, tmp_path, capsys):
    edit, words = REFUSED_SOURCES[kind]
    folder = dicom_series(tmp_path / "series", edit)
    code, _, err = segment_in_process(capsys, tiny_model, folder, tmp_path / "out", "--dicom-seg")
    assert_one_line(code, err, f"DICOM SEG source: {kind}", match=words)
    assert not (tmp_path / "out").exists()


# --- 7, 10. model cards with absurd values, broken packages and zips ------------------------------

ABSURD_CARDS = {
    "model_grid 4e6": ({"model_grid": [4000000, 16, 16]}, "model_grid"),
    "train_timesteps 0": ({"diffusion.train_timesteps": 0}, "train_timesteps"),
    "default_steps 0": ({"diffusion.default_steps": 0}, "default_steps"),
    "default_samples 10^6": ({"diffusion.default_samples": 10**6}, "default_samples"),
    "channels 0": ({"architecture.label_encoder_channels": [0, 8]}, "channel"),
    "dropout 5": ({"architecture.dropout": 5}, "dropout"),
    "percentile 150": ({"normalization.upper_percentile": 150}, "percentiles"),
    "percentiles reversed": ({"normalization.lower_percentile": 90, "normalization.upper_percentile": 10}, "percentiles"),
    "NaN colour": ({"labels.0.color": [float("nan"), 0, 0]}, "color"),
    "colour 300": ({"labels.0.color": [300, 0, 0]}, "color"),
    "norm groups not dividing": ({"architecture.denoiser_norm_groups": 3}, "multiples"),
    "res blocks 0": ({"architecture.denoiser_res_blocks": 0}, "denoiser_res_blocks"),
    "labels 1, 3": ({"labels.1.value": 3}, "label values"),
    "duplicate label names": ({"labels.1.name": "Femur"}, "label names"),
    "format_version 99": ({"format_version": 99}, "format_version"),
    "weights_sha256 not hex": ({"weights_sha256": "zz"}, "weights_sha256"),
    "name is a number": ({"name": 5}, "must be of type str"),
    "unknown key": ({"surprise": 1}, "unknown key"),
}


@pytest.mark.parametrize("kind", ABSURD_CARDS)
def test_cards_with_absurd_values_are_refused(kind, tiny_model, cache, tmp_path, capsys):
    changes, words = ABSURD_CARDS[kind]
    package = edited_package(tiny_model, tmp_path / "pkg", **changes)
    code, _, err = run_cli(capsys, "models", "import", package)
    assert_one_line(code, err, f"card: {kind}", match=words)
    assert not (cache / "models").exists()


def _deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


BROKEN_CARD_FILES = {
    "nested 1e5 deep": (lambda: _deep_json(100_000), "nested too deeply"),
    "over 1 MiB": (lambda: json.dumps({"description": "x" * (2 << 20)}), "limit"),
    "not JSON": (lambda: "{name: knee", "cannot be read as JSON"),
    "a JSON list": (lambda: "[1, 2]", "must be a mapping"),
    "not UTF-8": (lambda: b"\xff\xfe{}".decode("latin-1"), "cannot be read"),
    "empty": (lambda: "", "cannot be read as JSON"),
}


@pytest.mark.parametrize("kind", BROKEN_CARD_FILES)
def test_broken_card_files_are_refused_and_do_not_break_models_list(kind, tiny_model, cache, tmp_path, capsys):
    make, words = BROKEN_CARD_FILES[kind]
    package = edited_package(tiny_model, tmp_path / "pkg")
    (package / CARD_FILE).write_text(make(), encoding="latin-1" if kind == "not UTF-8" else "utf-8")
    code, _, err = run_cli(capsys, "models", "import", package)
    assert_one_line(code, err, f"card file: {kind}", match=words)
    planted = cache / "models" / "planted"  # such a card already in the cache (copied by hand)
    shutil.copytree(package, planted)
    code, out, err = run_cli(capsys, "models", "list")
    assert code == 0 and "Traceback" not in err and "planted" not in out
    code, _, err = run_cli(capsys, "segment", tmp_path / "x.nrrd", "-o", tmp_path / "o", "--model", planted)
    assert_one_line(code, err, f"segment with card file: {kind}")


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return path


def _package_members(tiny_model: Path) -> dict[str, bytes]:
    return {f"m/{file.name}": file.read_bytes() for file in tiny_model.iterdir()}


BAD_ZIPS = {
    "zip bomb (weights inflate past the limit)": (lambda m: {**m, "m/model.safetensors": b"\0" * (3 << 20)},
                                                  "limit", "max_weights_bytes=1000000"),
    "members past the total limit": (lambda m: m, "limit", "max_archive_bytes=10000"),
    "card twice (second one hostile)": (lambda m: m, "twice", ""),
    "no card": (lambda m: {k: v for k, v in m.items() if not k.endswith(".json")}, "holds no model-card.json", ""),
    "traversal member names": (lambda m: {"../../" + k.split("/")[-1]: v for k, v in m.items()}, "", ""),
    "not a zip": (None, "neither a model folder", ""),
    "truncated zip": (None, "neither a model folder", ""),
}


@pytest.mark.parametrize("kind", BAD_ZIPS)
def test_bad_zips_are_refused_and_leave_nothing(kind, tiny_model, cache, tmp_path, capsys, monkeypatch):
    change, words, limit = BAD_ZIPS[kind]
    archive = tmp_path / "model.zip"
    if kind == "not a zip":
        put(archive, b"PK\x03\x04 but not really a zip")
    elif kind == "truncated zip":
        _truncated(_zip(archive, _package_members(tiny_model)), 0.7)
    elif kind == "card twice (second one hostile)":
        members = _package_members(tiny_model)
        with zipfile.ZipFile(archive, "w") as bundle:
            for name, data in members.items():
                bundle.writestr(name, data)
            bundle.writestr("other/model-card.json", b'{"name": "../../evil"}')
    else:
        _zip(archive, change(_package_members(tiny_model)))
    if limit:
        monkeypatch.setenv("LDSEG_LIMITS", limit)
    code, _, err = run_cli(capsys, "models", "import", archive)
    if kind == "traversal member names":  # flattened: imported as the plain package it is, nothing outside
        assert code == 0 and (cache / "models" / "tiny" / CARD_FILE).is_file()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "model.zip"]
        HANDLED.append("zip: traversal member names")
        return
    assert_one_line(code, err, f"zip: {kind}", match=words)
    assert not (cache / "models").exists() or [p.name for p in (cache / "models").iterdir()] == []


def test_url_serving_a_non_zip_is_refused(cache, tmp_path, capsys):
    served = put(tmp_path / "page.html", b"<html>not a model</html>")
    from ldseg.download import sha256_of

    code, _, err = run_cli(capsys, "models", "import", served.as_uri(), "--sha256", sha256_of(served))
    assert_one_line(code, err, "URL serving a non-zip", match="not a readable .zip")
    code, _, err = run_cli(capsys, "models", "import", "file:///nonexistent/model.zip", "--sha256", "0" * 64)
    assert_one_line(code, err, "URL that does not exist", match="Cannot download")


def test_cache_dir_that_is_a_file_is_one_line(tiny_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LDSEG_CACHE_DIR", str(put(tmp_path / "file", b"x")))
    code, _, err = run_cli(capsys, "models", "import", tiny_model)
    assert_one_line(code, err, "LDSEG_CACHE_DIR is a file", match="LDSEG_CACHE_DIR")


# --- 7. training configs, checkpoints and logs ------------------------------------------------------


def training_config(root: Path, **changes) -> Path:
    """A tiny, valid training run on two synthetic cases; `changes` edit its YAML text's fields."""
    import yaml

    synthetic_data_dir(root / "data")
    config = {
        "data_dir": "data", "output_dir": "run", "steps": 2, "train_cases": ["a", "b"], "validation_cases": [],
        "batch_size": 1, "checkpoint_every": 1, "validate_every": 1000, "threads": 1,
        "model": {"name": "tiny", "model_grid": [16, 16, 16], "architecture": TINY,
                  "labels": synthetic_cases.plain_labels()},
    }
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    path = root / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


BAD_CONFIGS = {
    "steps -1": ({"steps": -1}, "steps -1"),
    "steps 0": ({"steps": 0}, "steps 0"),
    "batch_size 0": ({"batch_size": 0}, "batch_size"),
    "learning_rate NaN": ({"learning_rate": float("nan")}, "learning_rate"),
    "learning_rate 0": ({"learning_rate": 0.0}, "learning_rate"),
    "checkpoint_every 0": ({"checkpoint_every": 0}, "checkpoint_every"),
    "seed 10^30": ({"seed": 10**30}, "too large"),
    "flip_probability 2": ({"augmentation": {"flip_probability": 2.0}}, "at most 1"),
    "negative noise": ({"augmentation": {"grid_noise_std": -1.0}}, "grid_noise_std"),
    "model name ../x": ({"model.name": "../x"}, "plain name"),
    "model dropout 5": ({"model.architecture": {**TINY, "dropout": 5.0}}, "dropout"),
    "model grid 0": ({"model.model_grid": [0, 16, 16]}, "model_grid"),
    "unknown key": ({"stepz": 3}, "unknown key"),
    "steps as text": ({"steps": "many"}, "must be of type int"),
}


@pytest.mark.parametrize("kind", BAD_CONFIGS)
def test_bad_training_configs_are_one_line(kind, tmp_path, capsys):
    changes, words = BAD_CONFIGS[kind]
    config = training_config(tmp_path, **changes)
    code, _, err = run_cli(capsys, "train", config)
    assert_one_line(code, err, f"config: {kind}", match=words)
    assert not (tmp_path / "run").exists()


BAD_CONFIG_TEXT = {
    "duplicate key": ("steps: 2\nsteps: 5\ndata_dir: d\noutput_dir: o\n", "given twice"),
    "a list": ("- 1\n- 2\n", "must be a mapping"),
    "malformed YAML": ("steps: [1, 2\n", "cannot be parsed"),
    "TOML with a duplicate key": ("steps = 2\nsteps = 3\n", "cannot be parsed"),
    "YAML billion laughs": ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n", "unknown key"),
    "missing file": (None, "does not exist"),
}


@pytest.mark.parametrize("kind", BAD_CONFIG_TEXT)
def test_unparsable_training_configs_are_one_line(kind, tmp_path, capsys):
    text, words = BAD_CONFIG_TEXT[kind]
    path = tmp_path / ("train.toml" if "TOML" in kind else "train.yaml")
    if text is not None:
        path.write_text(text)
    code, _, err = run_cli(capsys, "train", path)
    assert_one_line(code, err, f"config text: {kind}", match=words)


BAD_CHECKPOINTS = {
    "random bytes": lambda path: put(path, os.urandom(2000)),
    "a tensor, not a checkpoint": lambda path: torch.save(torch.zeros(3), path),
    "a checkpoint without its network": lambda path: torch.save({"step": torch.tensor(1), "architecture": "x",
                                                                 "model_grid": torch.tensor([16, 16, 16])}, path),
}


@pytest.mark.parametrize("kind", BAD_CHECKPOINTS)
def test_damaged_checkpoints_are_one_line(kind, tmp_path, capsys):
    config = training_config(tmp_path)
    (tmp_path / "run").mkdir()
    BAD_CHECKPOINTS[kind](tmp_path / "run" / "checkpoint.pt")
    code, _, err = run_cli(capsys, "train", config)
    assert_one_line(code, err, f"checkpoint: {kind}", match="checkpoint")


def test_a_training_log_cut_short_by_a_kill_is_read_without_its_broken_lines(tmp_path):
    from ldseg.training import _logged_seconds, _truncate_log

    log = put(tmp_path / "train-log.jsonl", b'{"step": 1, "seconds": 2.0}\n{"step": 2, "seconds": 4.5}\n'
                                            b'not json\n{"step": 3, "seconds": 7.0}\n{"step": 4, "sec')
    assert _logged_seconds(log) == 7.0
    _truncate_log(log, 2)
    assert log.read_text() == '{"step": 1, "seconds": 2.0}\n{"step": 2, "seconds": 4.5}\n'
    HANDLED.append("training log cut short")


def test_an_unexpected_failure_is_one_line_with_a_hint_and_a_traceback_with_debug(tmp_path, capsys, monkeypatch):
    from ldseg import store as store_module

    def broken(*_args, **_kwargs):
        raise ValueError("something nobody foresaw\nsecond line")

    monkeypatch.setattr(store_module, "list_models", broken)
    code, _, err = run_cli(capsys, "models", "list")
    assert_one_line(code, err, "unexpected exception", match="rerun with 'ldseg --debug")
    assert "ValueError: something nobody foresaw second line" in err
    with pytest.raises(ValueError):
        run_cli(capsys, "--debug", "models", "list")


# --- 9. outputs: all or nothing, stale files of the case removed, leftovers cleaned -----------------


def test_a_folder_where_an_output_goes_is_refused_before_anything_changes(tiny_model, tmp_path, capsys):
    source = written(volume(blob()), tmp_path / "v.nrrd")
    output = tmp_path / "out"
    assert segment_in_process(capsys, tiny_model, source, output, "--save-samples")[0] == 0
    (output / "v-qc.png").unlink()
    (output / "v-qc.png").mkdir()  # a folder named like an output
    before = tree(output)
    code, _, err = segment_in_process(capsys, tiny_model, source, output)
    assert_one_line(code, err, "folder named like an output", match="is a folder")
    assert tree(output) == before


def test_a_rerun_replaces_the_whole_set_of_the_case(tiny_model, tmp_path, capsys):
    source = written(volume(blob()), tmp_path / "v.nrrd")
    output = tmp_path / "out"
    output.mkdir()
    put(output / "other.seg.nrrd", b"another case, kept")
    put(output / "v-seg.dcm", b"a DICOM SEG of an earlier run")
    put(output / "notes.txt", b"the user's, kept")
    leftover = output / ".ldseg-partial-999999999-x"  # of a run that was killed
    leftover.mkdir()
    put(leftover / "v.seg.nrrd", b"half")
    alive = output / f".ldseg-partial-{os.getppid()}-y"  # of a run still going (its process exists)
    alive.mkdir()
    assert segment_in_process(capsys, tiny_model, source, output, "--save-samples")[0] == 0
    assert (output / "v-sample-01.seg.nrrd").is_file() and not leftover.exists() and alive.exists()
    assert segment_in_process(capsys, tiny_model, source, output)[0] == 0
    names = sorted(p.name for p in output.iterdir() if p != alive)
    assert names == ["notes.txt", "other.seg.nrrd", "v-qc.png", "v-uncertainty.nrrd", "v.json", "v.seg.nrrd"]
    summary = json.loads((output / "v.json").read_text(), parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert set(summary["files"]) == {"segmentation", "uncertainty", "summary", "qc_picture"}
    HANDLED.extend(["stale samples of the case", "stale DICOM SEG of the case", "leftover staging folder"])


def test_disk_full_while_writing_keeps_the_earlier_set(tiny_model, tmp_path, capsys, monkeypatch):
    import errno

    from ldseg import outputs

    source = written(volume(blob()), tmp_path / "v.nrrd")
    output = tmp_path / "out"
    assert segment_in_process(capsys, tiny_model, source, output, "--save-samples")[0] == 0
    before = tree(output)

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(outputs, "write_qc_picture", full)
    code, _, err = segment_in_process(capsys, tiny_model, source, output)
    assert_one_line(code, err, "ENOSPC (injected) while writing", match="No space left")
    assert tree(output) == before


def test_an_interrupt_while_writing_keeps_the_earlier_set(tiny_model, tmp_path, capsys, monkeypatch):
    """Ctrl+C while results are written (outside the polled sampling loop, so it interrupts at once)."""
    from ldseg import outputs

    source = written(volume(blob()), tmp_path / "v.nrrd")
    output = tmp_path / "out"
    assert segment_in_process(capsys, tiny_model, source, output, "--save-samples")[0] == 0
    before = tree(output)

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs, "write_qc_picture", interrupted)
    code, _, err = segment_in_process(capsys, tiny_model, source, output)
    assert_one_line(code, err, "interrupt while writing", status=130, match="Interrupted")
    assert tree(output) == before


def test_a_file_size_limit_while_writing_is_one_line_and_keeps_the_earlier_set(tiny_model, tmp_path, capsys):
    """A real write failure in a real process: RLIMIT_FSIZE makes writes fail (EFBIG) as a full disk does."""
    import resource

    source = written(volume(blob((48, 48, 40))), tmp_path / "v.nrrd")
    output = tmp_path / "out"
    assert segment_in_process(capsys, tiny_model, source, output)[0] == 0
    before = tree(output)

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    run = subprocess.run([sys.executable, "-m", "ldseg.cli", "segment", source, "-o", output, "--model", tiny_model,
                          "--samples", "2", "--progress", "none"], capture_output=True, text=True, cwd=REPO,
                         timeout=120, preexec_fn=limit_file_size)
    assert_one_line(run.returncode, run.stderr, "file size limit (EFBIG) while writing", match="nothing was written")
    assert tree(output) == before


# --- 5, 10. signals on real processes, and a trickling download --------------------------------------


def wait_for_handlers(process: subprocess.Popen, timeout: float = 60) -> None:
    """Waits until the process catches SIGTERM, i.e. the CLI installed its handlers (Linux /proc)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Path(f"/proc/{process.pid}/status").read_text()
        caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.05)
    raise AssertionError("the CLI never installed its signal handlers")


def start(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ldseg.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)


def test_native_library_diagnostics_stay_off_stderr(tiny_model, tmp_path):
    """ITK's MetaIO prints its parse errors to file descriptor 2 itself; the program shows one line."""
    header = put(tmp_path / "h.mha", b"ObjectType = Image\nNDims = 3\nDimSize = 20\n")
    run = ldseg("segment", header, "-o", tmp_path / "out", "--model", tiny_model)
    assert_one_line(run.returncode, run.stderr, "MetaImage header ITK complains about on fd 2", match="cannot read")
    assert "MetaImage" not in run.stderr and not (tmp_path / "out").exists()


def test_a_fifo_or_device_as_input_is_refused_instead_of_blocking(tiny_model, tmp_path, capsys):
    fifo = tmp_path / "input.nii"
    os.mkfifo(fifo)
    for source in (fifo, Path("/dev/zero")):
        code, _, err = segment_in_process(capsys, tiny_model, source, tmp_path / "out")
        assert_one_line(code, err, f"input {source.name} that is not a regular file", match="not a regular file")


@pytest.mark.parametrize("number,delay", [(signal.SIGINT, 0.0), (signal.SIGTERM, 0.3), (signal.SIGINT, 1.0)])
def test_segment_stops_on_a_signal_in_any_phase(number, delay, tiny_model, tmp_path):
    """Signals while modules load, the image is read or the model is built: exit 130, nothing written."""
    import time

    source = written(volume(blob((64, 64, 48))), tmp_path / "v.nrrd")
    process = start("segment", source, "-o", tmp_path / "out", "--model", tiny_model, "--samples", 64,
                    "--steps", 1000, "--chunk-size", 1, "--progress", "none")  # minutes of work: never done first
    wait_for_handlers(process)
    time.sleep(delay)
    process.send_signal(number)
    _, err = process.communicate(timeout=60)
    assert_one_line(process.returncode, err, f"segment, signal {number} after {delay} s", status=130)
    assert not (tmp_path / "out").exists()


def test_training_stops_on_sigint_with_a_checkpoint_and_resumes(tmp_path, capsys):
    import time

    import yaml

    config = training_config(tmp_path, steps=100_000, checkpoint_every=100_000)
    process = start("train", config)
    log = tmp_path / "run" / "train-log.jsonl"
    deadline = time.monotonic() + 120
    while not (log.exists() and len(log.read_text().splitlines()) >= 2):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read() if process.poll() else ""
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert_one_line(process.returncode, err, "train interrupted by SIGINT", status=130, match="again to resume")
    step = int(torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"])
    assert f"stopped at step {step} of 100000" in err and step >= 2
    settings = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**settings, "steps": step + 1}))
    code, out, err = run_cli(capsys, "train", config)
    assert code == 0, err
    assert f"resumed from step {step}" in out
    assert ModelCard.load(tmp_path / "run" / "model" / CARD_FILE).training["steps"] == step + 1


def test_evaluate_stops_on_sigterm_and_writes_nothing(tiny_model, tmp_path):
    data = synthetic_data_dir(tmp_path / "data", cases=("a", "b", "c", "d", "e", "f"))
    process = start("evaluate", tiny_model, data, "-o", tmp_path / "eval", "--samples", 2)
    wait_for_handlers(process)
    process.stdout.readline()  # the first case started
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert_one_line(process.returncode, err, "evaluate interrupted by SIGTERM", status=130)
    assert not (tmp_path / "eval" / "evaluation.json").exists()


@pytest.fixture
def trickling_server():
    """An HTTP server that sends one byte every 0.1 s, forever (a stalled mirror)."""
    import http.server
    import threading
    import time

    class Trickle(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            try:
                for _ in range(600):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/model.zip"
    server.shutdown()


def test_a_trickling_download_is_given_up_after_its_time_limit(trickling_server, cache, capsys, monkeypatch):
    monkeypatch.setenv("LDSEG_LIMITS", "download_seconds=1")
    code, _, err = run_cli(capsys, "models", "import", trickling_server, "--sha256", "0" * 64)
    assert_one_line(code, err, "trickling download", match="download_seconds")
    assert [p.name for p in (cache / "models").iterdir()] == []


def test_a_download_stops_on_sigterm(trickling_server, tmp_path):
    env = {**os.environ, "LDSEG_CACHE_DIR": str(tmp_path / "cache")}
    process = start("models", "import", trickling_server, "--sha256", "0" * 64, env=env)
    import time

    deadline = time.monotonic() + 60
    models = tmp_path / "cache" / "models"
    while not (models.is_dir() and any(models.glob(".ldseg-partial-work-*/.model.zip.*"))):  # downloading
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert_one_line(process.returncode, err, "download interrupted by SIGTERM", status=130)
    assert [p.name for p in models.iterdir()] == []


# --- the count -------------------------------------------------------------------------------------


def test_report_the_count():
    """How many bad inputs this file tried and saw handled (printed with -s; the run's log keeps it)."""
    print(f"\nhostile inputs tried and handled: {len(HANDLED)}")
    assert len(HANDLED) == len(set(HANDLED)), "every bad input is named once"
