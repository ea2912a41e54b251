"""One segmentation from the panel or a script: input check, background engine run, import.

Headless on purpose (no Qt): the module's logic and widget drive it with a timer, tests drive it
with wait(). The scene is only touched after the engine succeeded, so a failed or cancelled run
leaves it as it was.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ldseg.settings import RunSettings

from . import process
from .input_check import input_problem
from .scene import DisplaySettings, ImportedResult, ImportTargets, import_result
from .summary import EngineResult, read_summary
from .workdirs import new_work_folder


class RunError(RuntimeError):
    """A run could not start or finish; the message is for the user, as is."""


@dataclass
class RunState:
    stage: str = "Starting"
    fraction: float = 0.0
    finished: bool = False
    cancelled: bool = False
    error: str | None = None
    result: ImportedResult | None = None
    engine_result: EngineResult | None = None  # what the engine's summary said (device, timings, settings)
    seconds: float | None = None
    events: list = field(default_factory=list)


class SegmentationRun:
    """Start with start(); call poll() regularly (or wait()); cancel() stops it."""

    def __init__(
        self,
        scene,
        input_volume,
        settings: RunSettings,
        targets: ImportTargets | None = None,
        display: DisplaySettings | None = None,
        sequences_logic=None,
        engine_module: str = "ldseg.cli",
        environment: dict[str, str] | None = None,
        python: str | None = None,
    ) -> None:
        self.scene = scene
        self.input_volume = input_volume
        self.settings = settings
        self.targets = targets or ImportTargets(load_samples=settings.segment.keep_samples)
        self.display = display or DisplaySettings()
        self.sequences_logic = sequences_logic
        self.engine_module = engine_module
        self.environment = environment
        self.python = python
        self.state = RunState()
        self._process: process.EngineProcess | None = None
        self._workdir: Path | None = None
        self._close_observer: int | None = None

    def start(self) -> None:
        problem = input_problem(self.input_volume)
        if problem:
            raise RunError(problem)
        if self.input_volume in (self.targets.segmentation, self.targets.uncertainty):
            raise RunError("The input volume cannot also be an output: choose another output or 'Create new'.")
        self._workdir = new_work_folder()
        input_path = self._workdir / "input" / f"{_safe_name(self.input_volume.GetName())}.nrrd"
        input_path.parent.mkdir()
        _write_volume(self.input_volume, input_path)
        output = self._workdir / "output"
        command = process.segment_command(
            input_path, output, self.settings.cli_options(), self.python, self.engine_module
        )
        self._process = process.EngineProcess(command, self.environment)
        # Closing the scene during the run cancels it: the result would have nowhere to go.
        self._close_observer = self.scene.AddObserver(self.scene.StartCloseEvent, lambda *_: self.cancel())

    @property
    def running(self) -> bool:
        return self._process is not None and not self.state.finished

    def poll(self) -> RunState:
        """Applies the events that arrived; on success imports the result into the scene."""
        if self._process is None or self.state.finished:
            return self.state
        for event in self._process.poll():
            self.state.events.append(event)
            if isinstance(event, process.Progress):
                self.state.stage, self.state.fraction = event.stage, event.fraction
            elif isinstance(event, process.Done):
                self._finish_with_import(event.summary_path, event.seconds)
            elif isinstance(event, process.Failed):
                self._finish(error=event.message)
            elif isinstance(event, process.Cancelled):
                self._finish(cancelled=True)
        return self.state

    def wait(self, timeout: float | None = None) -> RunState:
        if self._process is not None:
            self._process.wait(timeout)
        return self.poll()

    def cancel(self) -> None:
        """Kills the engine's process tree; the scene is not touched."""
        if self.running:
            self._process.cancel()

    def close(self) -> None:
        """For closing the module or Slicer: kills the engine's process tree and waits for it, then
        removes the work folder (it holds a copy of the patient's image). Nothing is imported."""
        if self._process is not None and not self.state.finished:
            self._process.stop()
            self._finish(cancelled=True)

    def _finish_with_import(self, summary_path: Path, seconds: float | None) -> None:
        try:
            if self.input_volume.GetScene() is not self.scene:
                raise RunError("The input volume was removed from the scene during the run; nothing was imported.")
            result = self.state.engine_result = read_summary(summary_path)
            self.state.seconds = seconds if seconds is not None else result.seconds
            self.state.result = import_result(
                self.scene, self.input_volume, result, self.targets, self.display, self.sequences_logic
            )
            self._finish()
        except Exception as error:  # shown to the user; the scene was not changed by a failed read
            self._finish(error=str(error))

    def _finish(self, error: str | None = None, cancelled: bool = False) -> None:
        if self._close_observer is not None:
            self.scene.RemoveObserver(self._close_observer)
            self._close_observer = None
        self.state.finished = True
        self.state.error = error
        self.state.cancelled = cancelled
        self.state.stage = "Cancelled" if cancelled else "Failed" if error else "Done"
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)


def _write_volume(volume_node, path: Path) -> None:
    import slicer

    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(False)
    if not storage.WriteData(volume_node):
        raise RunError(f"Could not write the input volume to {path} for the engine.")


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_")
    return cleaned or "input"


class RunSlot:
    """Allows one run at a time: a second Segment while one is in progress is refused."""

    def __init__(self) -> None:
        self.current: SegmentationRun | None = None

    def start(self, run: SegmentationRun) -> None:
        if self.current is not None and self.current.running:
            raise RunError("A segmentation is already running. Wait for it to finish or cancel it first.")
        run.start()
        self.current = run

    def cancel(self) -> None:
        if self.current is not None:
            self.current.cancel()

    def close(self) -> None:
        """Stops a running segmentation and waits for it (module or application closing)."""
        if self.current is not None:
            self.current.close()
