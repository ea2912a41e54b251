"""The panel's model list and model import, without Qt.

A model is chosen by its package folder, not its name: a newer knee-bones imported into the user
cache and the bundled one share a name, and the engine, given a name, takes the bundled one first
(ldseg/store.py searches the bundled folder first).
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from .process import engine_environment, python_executable, windowless

CARD_FILE = "model-card.json"


def label(model) -> str:
    """How the model list names a package: name, version and where it lives."""
    return f"{model.name} {model.version} ({model.source})"


def chosen_index(models, folder: str) -> int:
    """The index of the package in `folder` (the saved choice), else the first; -1 for none."""
    for index, model in enumerate(models):
        if folder and Path(model.directory) == Path(folder):
            return index
    return 0 if models else -1


def new_arrival(before, after) -> int:
    """The index in `after` of a package that was not in `before` (or whose version changed); -1."""
    known = {(str(model.directory), model.version) for model in before}
    for index, model in enumerate(after):
        if (str(model.directory), model.version) not in known:
            return index
    return -1


def package_source(chosen: str) -> str:
    """What `ldseg models import` takes (a folder, a .zip or a URL) for what the file dialog returned."""
    path = Path(chosen)
    return str(path.parent) if path.name == CARD_FILE else chosen


class ModelImport:
    """Runs `ldseg models import` in the engine's Python, in the background (the engine verifies the
    card and the weights' SHA-256). Poll `finished`; then `message` or `error` says what happened."""

    def __init__(self, chosen: str, python: str | None = None, environment: dict[str, str] | None = None) -> None:
        self.source = package_source(chosen)
        self.finished = False
        self.message: str | None = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, args=(python, environment), daemon=True)
        self._thread.start()

    def _run(self, python: str | None, environment: dict[str, str] | None) -> None:
        try:
            completed = subprocess.run(
                [python or python_executable(), "-m", "ldseg.cli", "models", "import", self.source],
                capture_output=True, text=True, check=False, env=engine_environment(environment), **windowless(),
            )
        except (OSError, RuntimeError) as error:
            self.error = f"The model import could not start: {error}"
        else:
            if completed.returncode == 0:
                self.message = completed.stdout.strip()
            else:
                self.error = completed.stderr.strip() or completed.stdout.strip() or "The model import failed."
        self.finished = True

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
