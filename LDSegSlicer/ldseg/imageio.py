"""Reading and validating input volumes, and writing files atomically.

Validation happens once, at the door, so the rest of the engine can assume a finite, non-constant
3D scalar volume large enough for the model grid.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import LDSegError
from .limits import current as current_limits

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
MIN_SPACING_MM, MAX_SPACING_MM = 0.01, 100.0  # outside, the header is wrong (volumes would be nonsense)


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
    image = _read_volume(path, "Input")
    validate_image(image, path.name)
    return sitk.Cast(image, sitk.sitkFloat32)


def read_label_map(path: str | Path) -> sitk.Image:
    """Reads a label map with the same checks as an image: complete, finite, within the size limit."""
    return _read_volume(Path(path), "Label map")


def _read_volume(path: Path, what: str) -> sitk.Image:
    """The file's image, after checking its header: size within the limits, data complete and finite."""
    if not path.exists():
        raise LDSegError(f"{what} {path} does not exist.")
    if path.is_dir():
        raise LDSegError(f"{what} {path} is a folder; give a DICOM series folder to 'ldseg segment' or an image file.")
    if not path.is_file():
        raise LDSegError(f"{what} {path} is not a regular file (a pipe or device, say); give an image file.")
    if not path.name.lower().endswith(IMAGE_SUFFIXES):
        raise LDSegError(
            f"{what} {path.name} is not a supported image file; use one of {', '.join(IMAGE_SUFFIXES)} or a DICOM folder."
        )
    limits = current_limits()
    if path.name.lower().endswith((".nii", ".nii.gz")):
        _check_nifti(path, limits)
    if path.name.lower().endswith((".mhd", ".nhdr")):
        _check_data_files(path)
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        limits.check_voxels((*reader.GetSize(), reader.GetNumberOfComponents()), path.name)
        return reader.Execute()
    except (RuntimeError, OSError) as error:
        raise LDSegError(f"Cannot read {path.name}: the file is unreadable or truncated ({itk_message(error)}).") from None


def _check_nifti(path: Path, limits) -> None:
    """Raises for a NIfTI file that ITK would read wrongly without a word: a truncated file (filled
    with zeros), NaN or infinite voxels (turned into 0), or one too large to decode."""
    import nibabel

    try:
        nifti = nibabel.load(str(path))
        shape, dtype = nifti.header.get_data_shape(), nifti.header.get_data_dtype()
        slope, intercept = nifti.header.get_slope_inter()
    except Exception as error:  # nibabel raises many kinds for a malformed header
        raise LDSegError(f"Cannot read {path.name}: its NIfTI header is invalid ({one_line(error)}).") from None
    limits.check_voxels(shape, path.name)
    if any(value is not None and not np.isfinite(value) for value in (slope, intercept)):
        raise LDSegError(f"{path.name} has a non-finite intensity scaling (scl_slope/scl_inter); re-export the volume.")
    if path.name.lower().endswith(".nii"):
        expected = int(nifti.header["vox_offset"]) + int(np.prod(shape)) * dtype.itemsize
        if path.stat().st_size < expected:
            raise LDSegError(f"Cannot read {path.name}: the file is unreadable or truncated ({path.stat().st_size} "
                             f"bytes, its header needs {expected}). Copy or export it again.")
    try:
        data = nifti.dataobj.get_unscaled()  # reads (and for .nii.gz decompresses) every voxel
    except Exception as error:
        raise LDSegError(f"Cannot read {path.name}: the file is unreadable or truncated ({one_line(error)}).") from None
    if data.dtype.kind in "fc" and not np.isfinite(data).all():
        raise LDSegError(f"{path.name} contains NaN or infinite voxel values (which image readers silently turn "
                         "into 0); fix or re-export the volume.")


DATA_FILE_KEYS = {".mhd": ("elementdatafile",), ".nhdr": ("data file", "datafile")}


def _check_data_files(header: Path) -> None:
    """A detached header (.mhd, .nhdr) names the file(s) holding its voxels; they must lie beside it.
    A header is data too: it must not make us read /etc/passwd or another patient's file as an image."""
    separator = "=" if header.suffix.lower() == ".mhd" else ":"
    keys = DATA_FILE_KEYS[header.suffix.lower()]
    lines = header.read_bytes()[: 1 << 16].decode("latin-1").splitlines()
    for number, line in enumerate(lines):
        key, found, value = line.partition(separator)
        if not found or key.strip().lower() not in keys:
            continue
        words = value.split()
        names = lines[number + 1:] if words[:1] in (["LIST"], ["list"]) else words[:1]
        for name in (n.strip() for n in names):
            if name and name.upper() != "LOCAL" and (Path(name).name != name or name in (".", "..")):
                raise LDSegError(f"{header.name} takes its voxels from {name!r}, which is not a file beside it; "
                                 "a detached header may only name data files in its own folder.")


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:300] or type(error).__name__


def itk_message(error: BaseException) -> str:
    """The informative part of an ITK exception: its ERROR line and its deepest cause, not the source
    location or a stray last line such as "(0 0 1)"."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    errors = [re.sub(r"^.*?ERROR:\s*(\w+\(0x[0-9a-fA-F]+\):\s*)?", "", line) for line in lines if "ERROR" in line]
    if not errors:
        return one_line(error)
    last = lines[-1] if "ERROR" not in lines[-1] and re.search(r"[A-Za-z]{3}", lines[-1]) else ""
    return " ".join(f"{errors[0]} {last}".split())[:300]


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
    spacing = image.GetSpacing()
    if not all(MIN_SPACING_MM <= value <= MAX_SPACING_MM for value in spacing):
        raise LDSegError(f"{name} has a voxel spacing of {' x '.join(f'{v:g}' for v in spacing)} mm; a knee MRI has "
                         f"{MIN_SPACING_MM} to {MAX_SPACING_MM} mm. Fix the spacing in the file's header.")
    if not np.isfinite(image.GetOrigin()).all() or not np.isfinite(image.GetDirection()).all():
        raise LDSegError(f"{name} has a non-finite origin or orientation in its header; re-export the volume.")
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


PARTIAL_PREFIX = ".ldseg-partial-"  # staging folders: .ldseg-partial-<pid>-<random>
STALE_SECONDS = 3600  # where a process cannot be asked whether it lives (Windows), leftovers this old go


@contextlib.contextmanager
def staged_outputs(directory: Path, replaces: Iterable[str] = ()) -> Iterator[Path]:
    """A hidden staging folder inside `directory`; on success its files replace the earlier set.

    The commit is all or nothing: every destination is checked first (a folder where a file goes is
    refused), earlier files of the same set (the staged names plus `replaces`, e.g. samples of an
    earlier run that this one did not write) are moved aside, the new files renamed in, and the old
    ones deleted only then; a failure puts the old set back. Staging folders that a killed run left
    behind are removed at the next run.
    """
    _remove_leftovers(directory)
    staging = Path(tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}{os.getpid()}-", dir=directory))
    try:
        yield staging
        _commit(staging, directory, set(replaces))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _commit(staging: Path, directory: Path, replaces: set[str]) -> None:
    new = sorted(file.name for file in staging.iterdir())
    in_the_way = [name for name in new if (directory / name).is_dir() and not (directory / name).is_symlink()]
    if in_the_way:
        raise LDSegError(f"{directory / in_the_way[0]} is a folder where a result file goes; nothing was written. "
                         "Move it away or choose another output folder.")
    old = [name for name in sorted(replaces | set(new)) if (directory / name).is_file() or (directory / name).is_symlink()]
    aside = staging / ".previous"
    aside.mkdir()
    moved: list[str] = []
    placed: list[str] = []
    try:
        for name in old:
            os.replace(directory / name, aside / name)
            moved.append(name)
        for name in new:
            os.replace(staging / name, directory / name)
            placed.append(name)
    except BaseException:
        for name in placed:
            with contextlib.suppress(OSError):
                os.replace(directory / name, staging / name)
        for name in moved:
            with contextlib.suppress(OSError):
                os.replace(aside / name, directory / name)
        raise


def _remove_leftovers(directory: Path) -> None:
    """Removes staging folders of runs that no longer run (killed, or the machine lost power)."""
    for entry in directory.glob(f"{PARTIAL_PREFIX}*"):
        pid = entry.name[len(PARTIAL_PREFIX):].split("-", 1)[0]
        try:
            if entry.is_symlink() or not entry.is_dir():
                continue
            if os.name == "posix" and pid.isdigit():
                running = _process_exists(int(pid))
            else:
                running = time.time() - entry.stat().st_mtime < STALE_SECONDS
        except OSError:
            continue
        if not running:
            shutil.rmtree(entry, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
