"""The model store: finds a model package by name or path, and imports packages into the user cache.

Search order for a name: the models bundled under Resources/Models, then the per-user cache
(LDSEG_CACHE_DIR, else the platform cache folder). Imports accept a package folder, a .zip of one,
or an http(s)/file URL of such a .zip with its SHA-256; every import is verified by loading it.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import tempfile
import time
import zipfile
import zlib
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
        for card_path in sorted(root.glob(f"[!.]*/{CARD_FILE}")) if root.is_dir() else []:
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
    """Copies a model package (folder, .zip, or URL of a .zip with its SHA-256) into the user cache.

    The card is data, never a path: its name must be a plain name (card.py), the target folder is
    checked to lie directly inside the cache's models folder, and an earlier import of that name is
    replaced atomically (new copy staged beside it, then swapped), so nothing else is ever removed.
    """
    from .package import load_package, package_file

    if "://" in source and not sha256:
        raise LDSegError("Importing a model from a URL needs its SHA-256 (--sha256), so the download can be checked.")
    if "://" not in source and not Path(source).is_dir() and not (Path(source).is_file() and zipfile.is_zipfile(source)):
        raise LDSegError(f"{source} is neither a model folder, a .zip of one, nor a URL.")
    if Path(source).is_dir():
        load_package(source)  # refuse a bad folder before the cache is touched
    root = _mkdir(cache_directory() / "models")
    _remove_leftovers(root)
    with tempfile.TemporaryDirectory(prefix=f"{PARTIAL_PREFIX}work-", dir=root) as work:
        work_path = Path(work)
        if "://" in source:
            archive = download_verified(source, sha256, work_path / "model.zip")
            package_dir = _extract(archive, work_path / "package")
        elif Path(source).is_dir():
            package_dir = Path(source)
        else:
            package_dir = _extract(Path(source), work_path / "package")
        card = load_package(package_dir).card  # verifies card, checksum and architecture
        target = package_file(root, card.name, "Model name")
        staging = Path(tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}{card.name}-", dir=root))
        try:
            for file in (CARD_FILE, card.weights_file):
                shutil.copyfile(package_file(package_dir, file, "Package file"), staging / file)
            _swap_in(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return StoredModel(card.name, card.version, target, "cache")


PARTIAL_PREFIX = ".ldseg-partial-"  # staging and work folders in the cache; never listed as models
LEFTOVER_SECONDS = 24 * 3600  # an import's leftovers older than this are from a killed run


def _swap_in(staging: Path, target: Path) -> None:
    """Puts `staging` at `target`; an existing `target` is moved aside first and removed only after."""
    old = Path(tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}old-", dir=target.parent))
    try:
        if target.exists() or target.is_symlink():
            os.replace(target, old / "previous")  # moves a link itself, never what it points to
        os.replace(staging, target)
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _remove_leftovers(root: Path) -> None:
    """Removes staging folders that a killed import left behind (only our own hidden prefix)."""
    now = time.time()
    for entry in root.glob(f"{PARTIAL_PREFIX}*"):
        try:
            if not entry.is_symlink() and entry.is_dir() and now - entry.stat().st_mtime > LEFTOVER_SECONDS:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


def _mkdir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LDSegError(
            f"Cannot create the model cache folder {path} ({error.strerror}); set LDSEG_CACHE_DIR to a writable folder."
        ) from None
    return path


def _extract(archive: Path, destination: Path) -> Path:
    """Extracts only a model card and .safetensors files, flattening folders (no path traversal).

    Members are size-checked while they are copied (their declared sizes may lie), and two members
    that flatten to the same name are refused rather than one silently replacing the other.
    """
    from .limits import current

    limits = current()
    destination.mkdir(parents=True)
    total = 0
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.infolist():
                name = Path(member.filename).name
                if member.is_dir() or not (name == CARD_FILE or name.endswith(".safetensors")):
                    continue
                if (destination / name).exists():
                    raise LDSegError(f"{archive.name} holds {name} twice; a model package holds each file once.")
                cap = "max_card_bytes" if name == CARD_FILE else "max_weights_bytes"
                with bundle.open(member) as source, open(destination / name, "xb") as target:
                    written = 0
                    for block in iter(lambda: source.read(1 << 20), b""):
                        written += len(block)
                        total += len(block)
                        limits.check_bytes(written, cap, f"{name} in {archive.name}")
                        limits.check_bytes(total, "max_archive_bytes", f"The content of {archive.name}")
                        target.write(block)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):  # writing, not the archive: disk full
            raise
        raise LDSegError(f"{archive.name} is not a readable .zip of a model package ({error}).") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError, EOFError, ValueError,
            zlib.error) as error:
        raise LDSegError(f"{archive.name} is not a readable .zip of a model package ({error}).") from None
    if not (destination / CARD_FILE).is_file():
        raise LDSegError(f"{archive.name} holds no {CARD_FILE}; it is not an LDSeg model package.")
    return destination
