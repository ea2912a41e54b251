"""The model package: a folder with `model-card.json` and the safetensors weights it names.

Weights are never unpickled: safetensors holds only tensors, and its SHA-256 must equal the one in
the card before a single byte is parsed, so a tampered or truncated file is refused.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .card import CARD_FILE, ModelCard
from .download import sha256_of
from .errors import LDSegError
from .imageio import atomic_write_bytes, default_file_mode
from .limits import current as current_limits
from .networks import LDSegNetwork


@dataclass
class ModelPackage:
    """A loaded, verified model: the card and the network in eval mode."""

    card: ModelCard
    network: LDSegNetwork
    directory: Path


def package_file(directory: Path, name: str, what: str) -> Path:
    """`directory / name`, refused unless it resolves to a file or folder directly inside `directory`.

    Names come from model cards, which are data: a name with separators, '..' or an absolute path,
    or one that is a symbolic link leading elsewhere, must never become a path outside the package.
    """
    path = directory / name
    if Path(name).name != name or name in ("", ".", "..") or path.resolve().parent != directory.resolve():
        raise LDSegError(f"{what} {name!r} does not stay inside {directory}; the model package is refused.")
    return path


def write_weights(network: torch.nn.Module, path: Path, metadata: dict[str, str]) -> str:
    """Saves the network's state as safetensors via a new temporary file and rename; returns its SHA-256."""
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in network.state_dict().items()}
    handle, temporary_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(handle)
    temporary = Path(temporary_name)
    try:
        save_file(state, temporary_name, metadata=metadata)
        os.chmod(temporary, default_file_mode())
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
    return sha256_of(path)


def save_package(network: LDSegNetwork, card: ModelCard, directory: str | Path) -> ModelCard:
    """Writes weights and card (with the weights' SHA-256) into `directory`; returns the final card."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sha256 = write_weights(network, package_file(directory, card.weights_file, "Weights file"), {"model": card.name, "version": card.version})
    card = dataclasses.replace(card, weights_sha256=sha256)
    atomic_write_bytes(directory / CARD_FILE, card.to_json().encode("utf-8"))
    return card


def load_package(directory: str | Path, device: str | torch.device = "cpu") -> ModelPackage:
    """Reads the card, verifies the weights' SHA-256, builds the network and loads the weights."""
    directory = Path(directory)
    card = ModelCard.load(directory / CARD_FILE)
    weights = package_file(directory, card.weights_file, f"Model '{card.name}': weights file")
    if not weights.is_file():
        raise LDSegError(f"Model '{card.name}': weights file {weights} is missing; reinstall or re-import the model.")
    current_limits().check_bytes(weights.stat().st_size, "max_weights_bytes", f"Model '{card.name}': {weights.name}")
    actual = sha256_of(weights)
    if actual != card.weights_sha256:
        raise LDSegError(
            f"Model '{card.name}': the SHA-256 of {weights.name} ({actual[:12]}...) differs from its model card "
            f"({card.weights_sha256[:12] or 'none'}...). The file is corrupt or was modified; "
            "download or import the model again."
        )
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as error:
        raise LDSegError(f"Model '{card.name}': cannot read {weights.name} as safetensors ({error}).") from None
    try:
        network = LDSegNetwork(card)
    except (ValueError, RuntimeError, AssertionError, TypeError) as error:
        raise LDSegError(f"Model '{card.name}': its card describes networks that cannot be built ({error}).") from None
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        problem = str(error).splitlines()[0]
        raise LDSegError(
            f"Model '{card.name}': its model card does not match its weights ({problem}). "
            "The card describes a different architecture; use the card that was saved with these weights."
        ) from None
    return ModelPackage(card, network.to(device).eval(), directory)
