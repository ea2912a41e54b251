"""Fuzz targets of the readers that take untrusted files: each feeds one generated input to a reader
and fails only if the reader does something other than return a result or raise LDSegError (a
traceback, a hang is caught by the caller's deadline, a crash ends the process).

Inputs are valid files with mutated bytes and cut-off ends, so that they get past the first magic
number check and into the parsers. Used by test_fuzz_readers.py (a bounded run in CI) and by
benchmarks/fuzz_readers.py (a long run that prints how many inputs it tried).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from hypothesis import strategies as st

from ldseg.errors import LDSegError

# Small decoded sizes keep a mutated header's huge dimensions cheap to refuse (a real limit, lowered).
FUZZ_LIMITS = "max_voxels=2000000 max_card_bytes=100000 max_weights_bytes=1000000 max_archive_bytes=2000000"


def _volume() -> sitk.Image:
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray((rng.random((18, 20, 22)) * 1000).astype(np.int16))
    image.SetSpacing((0.8, 0.9, 1.5))
    return image


def _encoded(suffix: str) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"seed{suffix}"
        sitk.WriteImage(_volume(), str(path), useCompression=suffix in (".nii.gz", ".mha"))
        return path.read_bytes()


def _dicom_slice() -> bytes:
    import dicom_factory

    with tempfile.TemporaryDirectory() as folder:
        files = dicom_factory.write_mr_series(_volume()[:, :, :3], Path(folder))
        return files[0].read_bytes()


def _card() -> dict:
    from conftest import bundled_card

    return bundled_card().to_dict()


def _package_zip() -> bytes:
    from conftest import bundled_card

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("m/model-card.json", json.dumps(bundled_card().to_dict()))
        bundle.writestr("m/model.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    return buffer.getvalue()


SEEDS = {suffix: _encoded(suffix) for suffix in (".nii", ".nii.gz", ".nrrd", ".mha")}
DICOM_SEED = _dicom_slice()
CARD_SEED = _card()
ZIP_SEED = _package_zip()


@st.composite
def mutated(draw, seed: bytes, header: int = 512) -> bytes:
    """`seed` with a few bytes changed (mostly in its header) and maybe its end cut off."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 12))):
        limit = header if draw(st.booleans()) else len(data)
        position = draw(st.integers(0, min(limit, len(data)) - 1))
        data[position] = draw(st.integers(0, 255))
    if draw(st.integers(0, 3)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@st.composite
def mutated_card(draw) -> dict:
    """The bundled card with a few fields (nested ones too) replaced by arbitrary JSON values."""
    card = json.loads(json.dumps(CARD_SEED))
    for _ in range(draw(st.integers(1, 4))):
        node = card
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            if isinstance(node[key], (dict, list)) and node[key] and draw(st.booleans()):
                node = node[key]
                continue
            node[key] = draw(json_values)
            break
    return card


def expect_result_or_ldseg_error(read, *args):
    """Calls read(*args); anything but a result or LDSegError fails (with the input's description)."""
    try:
        return read(*args)
    except LDSegError as error:
        assert "\n" not in str(error) or "Series Instance UID" in str(error), str(error)
        return None


def image_file(suffix: str, data: bytes) -> None:
    from ldseg.imageio import read_image

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(data)
        expect_result_or_ldseg_error(read_image, path)


def dicom_folder(data: bytes) -> None:
    """A series of three slices of which the middle one is `data`."""
    import pydicom

    from ldseg.dicom_input import read_dicom_series

    with tempfile.TemporaryDirectory() as folder:
        seed = pydicom.dcmread(io.BytesIO(DICOM_SEED))
        for index in (0, 2):
            seed.ImagePositionPatient = [0, 0, 1.5 * index]
            seed.SOPInstanceUID = seed.file_meta.MediaStorageSOPInstanceUID = f"1.2.3.{index}"
            seed.save_as(Path(folder) / f"{index}.dcm")
        (Path(folder) / "1.dcm").write_bytes(data)
        expect_result_or_ldseg_error(read_dicom_series, folder)


def model_card(data: dict | str) -> None:
    from ldseg.card import ModelCard

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model-card.json"
        path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
        expect_result_or_ldseg_error(ModelCard.load, path)


def model_zip(data: bytes) -> None:
    from ldseg import store

    with tempfile.TemporaryDirectory() as folder:
        archive = Path(folder) / "model.zip"
        archive.write_bytes(data)
        previous = os.environ.get("LDSEG_CACHE_DIR")
        os.environ["LDSEG_CACHE_DIR"] = str(Path(folder) / "cache")
        try:
            expect_result_or_ldseg_error(store.import_model, str(archive))
        finally:
            if previous is None:
                os.environ.pop("LDSEG_CACHE_DIR")
            else:
                os.environ["LDSEG_CACHE_DIR"] = previous


def training_config(text: str) -> None:
    from ldseg.training import TrainConfig

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "train.yaml"
        path.write_text(text, encoding="utf-8")
        expect_result_or_ldseg_error(TrainConfig.load, path)


config_text = st.one_of(
    st.text(max_size=200),
    json_values.map(lambda value: json.dumps({"data_dir": "d", "output_dir": "o", "steps": 3, "model": value})),
    st.dictionaries(st.sampled_from(["data_dir", "output_dir", "steps", "batch_size", "seed", "learning_rate",
                                     "augmentation", "model", "checkpoint_every"]), json_values, max_size=6)
    .map(json.dumps),
)
