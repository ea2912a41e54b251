"""Finds out, without blocking Slicer, which compute device the engine would use.

The probe runs in the engine's Python in a separate process, so importing torch and initialising
CUDA never happens in Slicer's own process (the engine process needs the GPU memory).
"""

from __future__ import annotations

import subprocess
import threading

from .process import engine_environment, python_executable

_PROBE = "from ldseg.inference import describe_devices; print(describe_devices())"


class DeviceProbe:
    """Starts at construction; `result` is None until the answer (or an explanation) is known."""

    def __init__(self, python: str | None = None, timeout: float = 120.0) -> None:
        self.result: str | None = None
        self._thread = threading.Thread(target=self._run, args=(python or python_executable(), timeout), daemon=True)
        self._thread.start()

    def _run(self, python: str, timeout: float) -> None:
        try:
            completed = subprocess.run(
                [python, "-c", _PROBE], capture_output=True, text=True, timeout=timeout, env=engine_environment(),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            self.result = f"Could not check the devices ({error})."
            return
        if completed.returncode == 0:
            self.result = completed.stdout.strip() or "unknown"
        elif "No module named 'torch'" in completed.stderr:
            self.result = "PyTorch is not installed yet (it is set up on the first run)."
        else:
            lines = completed.stderr.strip().splitlines()
            self.result = f"Could not check the devices: {lines[-1] if lines else 'no output'}"

    def wait(self, timeout: float | None = None) -> str | None:
        self._thread.join(timeout)
        return self.result
