"""Finds out, without blocking Slicer, which compute device and package versions the engine would use.

The probe runs in the engine's Python in a separate process, so importing torch and initialising
CUDA never happens in Slicer's own process (the engine process needs the GPU memory).
"""

from __future__ import annotations

import json
import subprocess
import threading

from .process import engine_environment, python_executable, windowless

_PROBE = (
    "import json, torch, ldseg; from ldseg.inference import describe_devices; "
    "print(json.dumps({'engine': ldseg.__version__, 'torch': torch.__version__, "
    "'cuda': torch.version.cuda, 'devices': describe_devices()}))"
)


class DeviceProbe:
    """Starts at construction; `result` (the devices) and `packages` (the versions) are None until known."""

    def __init__(self, python: str | None = None, timeout: float = 120.0) -> None:
        self.result: str | None = None
        self.packages: str | None = None
        self._thread = threading.Thread(target=self._run, args=(python, timeout), daemon=True)
        self._thread.start()

    def _run(self, python: str | None, timeout: float) -> None:
        try:
            completed = subprocess.run(
                [python or python_executable(), "-c", _PROBE], capture_output=True, text=True, timeout=timeout,
                env=engine_environment(), check=False, **windowless(),
            )
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as error:
            self._set(f"Could not check the devices ({error}).", "unknown")
            return
        if completed.returncode == 0:
            try:
                found = json.loads(completed.stdout.strip().splitlines()[-1])
                cuda = f", CUDA {found['cuda']}" if found.get("cuda") else ", no CUDA"
                self._set(found["devices"], f"LDSeg engine {found['engine']}, PyTorch {found['torch']}{cuda}")
                return
            except (ValueError, KeyError, IndexError):
                self._set("unknown", f"Unexpected answer from the engine's Python: {completed.stdout.strip()[:200]}")
                return
        if "No module named 'torch'" in completed.stderr:
            self._set("PyTorch is not installed yet (it is set up on the first run).", "PyTorch not installed")
        else:
            lines = completed.stderr.strip().splitlines()
            self._set(f"Could not check the devices: {lines[-1] if lines else 'no output'}", "unknown")

    def _set(self, devices: str, packages: str) -> None:
        self.packages = packages
        self.result = devices  # last: the panel polls `result`

    def wait(self, timeout: float | None = None) -> str | None:
        self._thread.join(timeout)
        return self.result
