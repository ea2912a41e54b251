"""The model store: finds a model package by name or path, and imports packages into the user cache.

Search order for a name: the models bundled under Resources/Models, then the per-user cache
(LDSEG_CACHE_DIR, else the platform cache folder). Imports accept a package folder, a .zip of one,
or an http(s)/file URL of such a .zip with its SHA-256; every import is verified by loading it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .card import CARD_FILE, ModelCard
from .download import download_verified
from .errors import LDSegError

DEFAULT_MODEL = "knee-bones"


def cache_directory() -> Path:
    """Per-user cache (not per Slicer install), so weights are not fetched again for every install."""
    if os.environ.get("LDSEG_CACHE_DIR"):
        return Path(os.environ["LDSEG_CACHE_DIR"])
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "ldseg"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "ldseg"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ldseg"


def bundled_directory() -> Path:
    return Path(__file__).resolve().parents[2] / "Resources" / "Models"


def search_directories() -> list[Path]:
    return [bundled_directory(), cache_directory() / "models"]


@dataclass(frozen=True)
class StoredModel:
    name: str
    version: str
    directory: Path
    source: str  # "bundled" or "cache"


def list_models() -> list[StoredModel]:
    models = []
    for source, root in zip(("bundled", "cache"), search_directories()):
        for card_path in sorted(root.glob(f"*/{CARD_FILE}")) if root.is_dir() else []:
            try:
                card = ModelCard.load(card_path)
            except LDSegError:
                continue  # a broken package is reported when it is used by name
            models.append(StoredModel(card.name, card.version, card_path.parent, source))
    return models


def resolve_model(name_or_path: str = DEFAULT_MODEL) -> Path:
    """The folder of the model package named `name_or_path` (or that path itself)."""
    path = Path(name_or_path).expanduser()
    if (path / CARD_FILE).is_file():
        return path
    if path.is_file() and path.name == CARD_FILE:
        return path.parent
    for root in search_directories():
        if (root / name_or_path / CARD_FILE).is_file():
            return root / name_or_path
    known = ", ".join(sorted({model.name for model in list_models()})) or "none"
    raise LDSegError(
        f"Model '{name_or_path}' was not found (installed models: {known}). "
        "Import one with 'ldseg models import FILE_OR_URL' or give the path of a model folder."
    )


def import_model(source: str, sha256: str | None = None) -> StoredModel:
    """Copies a model package (folder, .zip, or URL of a .zip with its SHA-256) into the user cache."""
    from .package import load_package

    with tempfile.TemporaryDirectory(prefix="ldseg-import-") as work:
        work_path = Path(work)
        if "://" in source:
            if not sha256:
                raise LDSegError("Importing a model from a URL needs its SHA-256 (--sha256), so the download can be checked.")
            archive = download_verified(source, sha256, work_path / "model.zip")
            package_dir = _extract(archive, work_path / "package")
        elif Path(source).is_dir():
            package_dir = Path(source)
        elif zipfile.is_zipfile(source):
            package_dir = _extract(Path(source), work_path / "package")
        else:
            raise LDSegError(f"{source} is neither a model folder, a .zip of one, nor a URL.")
        card = load_package(package_dir).card  # verifies card, checksum and architecture
        target = cache_directory() / "models" / card.name
        staging = Path(tempfile.mkdtemp(prefix=f".{card.name}-", dir=_mkdir(target.parent)))
        for file in (CARD_FILE, card.weights_file):
            shutil.copy2(package_dir / file, staging / file)
        shutil.rmtree(target, ignore_errors=True)
        staging.replace(target)
    return StoredModel(card.name, card.version, target, "cache")


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _extract(archive: Path, destination: Path) -> Path:
    """Extracts only a model card and .safetensors files, flattening folders (no path traversal)."""
    destination.mkdir(parents=True)
    with zipfile.ZipFile(archive) as bundle:
        for member in bundle.infolist():
            name = Path(member.filename).name
            if member.is_dir() or not (name == CARD_FILE or name.endswith(".safetensors")):
                continue
            with bundle.open(member) as source, open(destination / name, "wb") as target:
                shutil.copyfileobj(source, target)
    if not (destination / CARD_FILE).is_file():
        raise LDSegError(f"{archive.name} holds no {CARD_FILE}; it is not an LDSeg model package.")
    return destination
