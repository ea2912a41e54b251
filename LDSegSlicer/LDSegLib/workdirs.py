"""The run's private work folder: it holds a copy of the patient's image, so none may stay behind."""

import os
import shutil
import tempfile
from pathlib import Path

WORK_FOLDER_PREFIX = "ldseg-slicer-"


def new_work_folder() -> Path:
    """A private temporary folder named for this process, after removing those of dead processes.

    SegmentationRun.close() removes its folder; only a Slicer that was killed leaves one behind, and
    the next run removes it (POSIX; on Windows the PID check is not made and such folders stay).
    """
    root = Path(tempfile.gettempdir())
    if os.name == "posix":
        for folder in root.glob(f"{WORK_FOLDER_PREFIX}*"):
            pid = folder.name[len(WORK_FOLDER_PREFIX):].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)) and folder.stat().st_uid == os.getuid():
                shutil.rmtree(folder, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{WORK_FOLDER_PREFIX}{os.getpid()}-", dir=root))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
