"""The model package: a folder with `model-card.json` and the safetensors weights it names.

Weights are never unpickled: safetensors holds only tensors, and its SHA-256 must equal the one in
the card before a single byte is parsed, so a tampered or truncated file is refused.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .card import CARD_FILE, ModelCard
from .download import sha256_of
from .errors import LDSegError
from .imageio import atomic_write_bytes, default_file_mode
from .networks import LDSegNetwork


@dataclass
class ModelPackage:
    """A loaded, verified model: the card and the network in eval mode."""

    card: ModelCard
    network: LDSegNetwork
    directory: Path


def write_weights(network: torch.nn.Module, path: Path, metadata: dict[str, str]) -> str:
    """Saves the network's state as safetensors via a temporary file and rename; returns its SHA-256."""
    temporary = path.with_name(f".{path.name}.partial")
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in network.state_dict().items()}
    save_file(state, str(temporary), metadata=metadata)
    os.chmod(temporary, default_file_mode())
    temporary.replace(path)
    return sha256_of(path)


def save_package(network: LDSegNetwork, card: ModelCard, directory: str | Path) -> ModelCard:
    """Writes weights and card (with the weights' SHA-256) into `directory`; returns the final card."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sha256 = write_weights(network, directory / card.weights_file, {"model": card.name, "version": card.version})
    card = dataclasses.replace(card, weights_sha256=sha256)
    atomic_write_bytes(directory / CARD_FILE, card.to_json().encode("utf-8"))
    return card


def load_package(directory: str | Path, device: str | torch.device = "cpu") -> ModelPackage:
    """Reads the card, verifies the weights' SHA-256, builds the network and loads the weights."""
    directory = Path(directory)
    card = ModelCard.load(directory / CARD_FILE)
    weights = directory / card.weights_file
    if not weights.is_file():
        raise LDSegError(f"Model '{card.name}': weights file {weights} is missing; reinstall or re-import the model.")
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
    network = LDSegNetwork(card)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        problem = str(error).splitlines()[0]
        raise LDSegError(
            f"Model '{card.name}': its model card does not match its weights ({problem}). "
            "The card describes a different architecture; use the card that was saved with these weights."
        ) from None
    return ModelPackage(card, network.to(device).eval(), directory)
