"""Reading and validating input volumes, and writing files atomically.

Validation happens once, at the door, so the rest of the engine can assume a finite, non-constant
3D scalar volume large enough for the model grid.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import LDSegError

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def case_name(path: str | Path) -> str:
    """File name without its image extensions: knee1.nii.gz -> knee1, a DICOM folder -> its name."""
    name = Path(path).name if Path(path).name not in ("", ".", "..") else Path(path).resolve().name or "volume"
    for suffix in (".seg.nrrd", *IMAGE_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_image(path: str | Path) -> sitk.Image:
    """Reads a NIfTI, NRRD or MetaImage volume as float32 and validates it (see validate_image)."""
    path = Path(path)
    if not path.exists():
        raise LDSegError(f"Input {path} does not exist.")
    if path.is_dir():
        raise LDSegError(f"Input {path} is a folder; give a DICOM series folder to 'ldseg segment' or an image file.")
    if not path.name.lower().endswith(IMAGE_SUFFIXES):
        raise LDSegError(
            f"Input {path.name} is not a supported image file; use one of {', '.join(IMAGE_SUFFIXES)} or a DICOM folder."
        )
    try:
        _check_complete(path)
        image = sitk.ReadImage(str(path))
    except (RuntimeError, EOFError, OSError, zlib.error) as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        raise LDSegError(f"Cannot read {path.name}: the file is unreadable or truncated ({first_line}).") from None
    validate_image(image, path.name)
    return sitk.Cast(image, sitk.sitkFloat32)


def _check_complete(path: Path) -> None:
    """Raises for a truncated file: ITK's NIfTI reader fills a cut-off gzip stream with zeros silently."""
    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 22):
                pass
    elif path.name.lower().endswith(".nii"):
        import nibabel

        header = nibabel.load(str(path)).header
        expected = int(header["vox_offset"]) + int(np.prod(header.get_data_shape())) * header.get_data_dtype().itemsize
        if path.stat().st_size < expected:
            raise EOFError(f"{path.stat().st_size} bytes, the header needs {expected}")


def validate_image(image: sitk.Image, name: str, min_size: tuple[int, int, int] = (16, 16, 16)) -> None:
    """Refuses what the model cannot segment: not 3D, multi-component, non-finite, constant, too small."""
    if image.GetDimension() != 3:
        raise LDSegError(
            f"{name} is a {image.GetDimension()}D image; LDSeg segments single 3D volumes. "
            "Extract one 3D volume (for a 4D series, one time point or echo) and try again."
        )
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise LDSegError(
            f"{name} has {image.GetNumberOfComponentsPerPixel()} components per voxel (color or vector image); "
            "LDSeg needs a scalar (grayscale) MR volume."
        )
    size = image.GetSize()
    if any(s < m for s, m in zip(sorted(size), sorted(min_size))):
        raise LDSegError(f"{name} is too small ({' x '.join(map(str, size))} voxels); LDSeg needs at least "
                         f"{' x '.join(map(str, min_size))} voxels covering the knee.")
    array = sitk.GetArrayViewFromImage(image)
    if not np.isfinite(array).all():
        raise LDSegError(f"{name} contains NaN or infinite voxel values; fix or re-export the volume.")
    if array.min() == array.max():
        raise LDSegError(f"{name} is empty: every voxel has the value {array.min()}. Check that the right volume was loaded.")


def ensure_writable_directory(directory: str | Path) -> Path:
    """Creates `directory` if needed and checks that files can be created in it."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".ldseg-write-test-"):
            pass
    except OSError as error:
        raise LDSegError(f"Cannot write to output folder {directory} ({error.strerror}); choose another folder.") from None
    return directory


@contextlib.contextmanager
def output_directory(directory: str | Path) -> Iterator[Path]:
    """ensure_writable_directory for one run; a folder the run created is removed again if it fails."""
    created = not Path(directory).exists()
    path = ensure_writable_directory(directory)
    try:
        yield path
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                path.rmdir()  # only when still empty
        raise


@contextlib.contextmanager
def staged_outputs(directory: Path) -> Iterator[Path]:
    """A hidden staging folder inside `directory`; on success its files are renamed into place.

    A failed or interrupted run leaves no partial output: the staging folder is removed, and the
    renames are atomic on one file system.
    """
    staging = Path(tempfile.mkdtemp(prefix=".ldseg-partial-", dir=directory))
    try:
        yield staging
        for file in sorted(staging.iterdir()):
            os.replace(file, directory / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes `data` to a temporary file beside `path`, then renames it over `path`."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(data)
        temporary = Path(handle.name)
    try:
        os.chmod(temporary, default_file_mode())  # mkstemp creates 0600; give the usual permissions
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise


def default_file_mode() -> int:
    """The mode a plainly created file gets under the current umask (temporary files start at 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
