"""Runs the engine's command line in a separate process and reports its JSON-lines progress.

A separate process keeps Slicer responsive, lets a cancel stop the work at once (killing the whole
process tree, data loaders included), and runs exactly the code path of `ldseg segment`. A reader
thread turns stdout lines into events on a queue; the caller (the panel's QTimer, or a test) drains
the queue with poll(), so no Qt is needed here.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from .paths import module_directory


@dataclass(frozen=True)
class Progress:
    stage: str
    fraction: float


@dataclass(frozen=True)
class Done:
    summary_path: Path
    seconds: float | None = None  # wall time of the whole command, as the engine measured it


@dataclass(frozen=True)
class Failed:
    message: str


@dataclass(frozen=True)
class Cancelled:
    pass


Event = Progress | Done | Failed | Cancelled

EXIT_CANCELLED = 130


def python_executable() -> str:
    """Slicer's own Python (PythonSlicer) inside Slicer, else the interpreter running this code.

    Inside the application sys.executable is the Slicer binary, never a Python to run `-m` with: like
    slicer.util's own module launcher, look for PythonSlicer (on Slicer's PATH, else beside the
    binary) and stop with a clear error if it is absent.
    """
    if not _inside_slicer_application():
        return sys.executable
    found = shutil.which("PythonSlicer") or shutil.which("PythonSlicer", path=os.path.dirname(sys.executable))
    if not found:
        raise RuntimeError(
            f"Slicer's Python (PythonSlicer) was not found on the PATH or beside {sys.executable}; "
            "reinstall 3D Slicer or run LDSeg from its command line."
        )
    return found


def _inside_slicer_application() -> bool:
    slicer = sys.modules.get("slicer")
    return slicer is not None and getattr(slicer, "app", None) is not None


def windowless() -> dict:
    """subprocess options that keep Windows from opening a console window for a child process.

    Slicer is a GUI program: each plain subprocess would flash a console (slicer.util's
    launchConsoleProcess hides it the same way, with STARTUPINFO). Empty elsewhere.
    """
    if os.name != "nt":
        return {}
    startup = subprocess.STARTUPINFO()
    startup.dwFlags |= subprocess.STARTF_USESHOWWINDOW
    startup.wShowWindow = subprocess.SW_HIDE
    return {"creationflags": subprocess.CREATE_NO_WINDOW, "startupinfo": startup}


def engine_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for the engine's process: the module folder on PYTHONPATH so `ldseg` imports."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(module_directory()), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def segment_command(
    input_path: Path,
    output_directory: Path,
    options: dict[str, object],
    python: str | None = None,
    module: str = "ldseg.cli",
) -> list[str]:
    """The `ldseg segment` command line; options map flag names to values (True = bare flag)."""
    command = [python or python_executable(), "-m", module, "segment", str(input_path),
               "-o", str(output_directory), "--progress", "jsonl"]
    for flag, value in options.items():
        if value is None or value is False:
            continue
        command.append(f"--{flag}")
        if value is not True:
            command.append(str(value))
    return command


class EngineProcess:
    """One background run. Events come out of poll() in order; the last one is Done, Failed or Cancelled."""

    def __init__(self, command: list[str], environment: dict[str, str] | None = None) -> None:
        self.command = command
        self._events: queue.Queue[Event] = queue.Queue()
        self._stderr_tail: deque[str] = deque(maxlen=40)
        self._cancelled = False
        self._finished = False
        env = engine_environment(environment)
        self._process = subprocess.Popen(
            _guarded(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=env,
            **_new_process_group(),
        )
        self._stderr_thread = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_thread.start()
        self._stdout_thread = threading.Thread(target=self._read_stdout, daemon=True)
        self._stdout_thread.start()

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def running(self) -> bool:
        return not self._finished

    def poll(self) -> list[Event]:
        """Events that arrived since the last call (never blocks)."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def wait(self, timeout: float | None = None) -> None:
        """Blocks until the run ends or timeout passes (for scripts and tests); events stay queued."""
        self._stdout_thread.join(timeout)

    def cancel(self, grace_seconds: float = 10.0) -> None:
        """Stops the run and every process it started, without blocking; a Cancelled event follows.

        The grace period exceeds the ~4 s a run needs to reach its next safe point (a sampling step).
        """
        if self._finished or self._cancelled:
            return
        self._cancelled = True
        threading.Thread(target=_terminate_tree, args=(self._process, grace_seconds), daemon=True).start()

    def stop(self, grace_seconds: float = 3.0) -> None:
        """Stops the run and every process it started, and returns only once they are gone (for
        closing the module or Slicer, when a background thread would die with the application)."""
        if not self._finished:
            self._cancelled = True
            _terminate_tree(self._process, grace_seconds)
        self._stdout_thread.join(grace_seconds + 5)

    def _read_stderr(self) -> None:
        for line in self._process.stderr:
            self._stderr_tail.append(line.rstrip())

    def _read_stdout(self) -> None:
        final: Event | None = None
        for line in self._process.stdout:
            event = _parse_line(line)
            if isinstance(event, (Done, Failed)):
                final = event
            elif event is not None:
                self._events.put(event)
        code = self._process.wait()
        self._stderr_thread.join(5)
        if self._cancelled or code == EXIT_CANCELLED:
            final = Cancelled()
        elif final is None or code != 0 and isinstance(final, Done):
            final = Failed(self._crash_message(code))
        self._finished = True
        self._events.put(final)

    def _crash_message(self, code: int) -> str:
        tail = "\n".join(self._stderr_tail) or "(no error output)"
        return f"The LDSeg engine stopped unexpectedly (exit code {code}). Its last output:\n{tail}"


def _parse_line(line: str) -> Event | None:
    """One JSON object per line; anything else (a stray print) is ignored."""
    try:
        message = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(message, dict):
        return None
    kind = message.get("event")
    if kind == "progress":
        return Progress(str(message.get("stage", "")), float(message.get("fraction", 0.0)))
    if kind == "done":
        seconds = message.get("seconds")
        return Done(Path(message["summary"]), float(seconds) if seconds is not None else None)
    if kind == "error":
        return Failed(str(message.get("message", "The LDSeg engine reported an error.")))
    return None


def _guarded(command: list[str]) -> list[str]:
    """`python -m MODULE ARGS` run under LDSegLib/guard.py, which ends it if Slicer dies."""
    if len(command) < 3 or command[1] != "-m":
        return command
    python, _, module, *arguments = command
    return [python, "-m", "LDSegLib.guard", str(os.getpid()), module, *arguments]


def _new_process_group() -> dict:
    """Its own process group, so a cancel reaches the engine's children (data loaders) too."""
    if os.name == "nt":
        options = windowless()
        options["creationflags"] |= subprocess.CREATE_NEW_PROCESS_GROUP
        return options
    return {"start_new_session": True}


def _terminate_tree(process: subprocess.Popen, grace_seconds: float) -> None:
    """SIGTERM to the process group, SIGKILL after the grace period (taskkill /T on Windows)."""
    if os.name == "nt":
        subprocess.run(
            ["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False, **windowless()
        )
        try:
            process.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            pass
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(grace_seconds)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # children that ignored SIGTERM
    except ProcessLookupError:
        pass
