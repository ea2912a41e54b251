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

import pytest
import torch

from conftest import REPO
from ldseg import cli, store
from ldseg.card import CARD_FILE, ModelCard
from ldseg.errors import LDSegError
from ldseg.networks import LDSegNetwork
from ldseg.package import load_package, save_package, write_weights

HANDLED: list[str] = []  # one entry per bad input that was refused as it should be


# --- helpers ------------------------------------------------------------------------------------


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """`ldseg ARGS` in this process (fast); the CLI's signal handlers are undone afterwards."""
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = cli.main([str(arg) for arg in args])
    finally:
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
    import numpy as np
    import SimpleITK as sitk
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
