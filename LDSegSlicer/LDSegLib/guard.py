"""Runs the engine's module as `__main__` and ends the engine when Slicer is gone.

The engine runs in its own process group (so a cancel reaches its data loaders), which also means
nothing ends it when Slicer is killed instead of closed: it would run on, writing results of a
patient's image into a folder nobody reads. This guard, the engine process's first code, watches
its parent and stops the engine's process group once the parent has changed.

Usage: python -m LDSegLib.guard PARENT_PID MODULE [ARGS...]
"""

import os
import runpy
import signal
import sys
import threading
import time

CHECK_SECONDS = 1.0
GRACE_SECONDS = 5.0  # for the engine to stop cleanly (cli.py turns SIGTERM into a cancel)


def _wait_for_exit(parent: int) -> None:
    """Returns once the parent has exited. POSIX re-parents an orphan; Windows keeps the stale parent
    ID, so there the parent's process handle is waited on."""
    if os.name == "nt":
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x00100000, False, parent)  # SYNCHRONIZE; 0 if already gone
        if handle:
            kernel32.WaitForSingleObject(handle, 0xFFFFFFFF)  # INFINITE
        return
    while os.getppid() == parent:
        time.sleep(CHECK_SECONDS)


def _watch(parent: int) -> None:
    _wait_for_exit(parent)
    if os.name != "posix":
        os._exit(1)  # no process group to signal; the engine itself ends
    os.killpg(0, signal.SIGTERM)
    time.sleep(GRACE_SECONDS)
    os.killpg(0, signal.SIGKILL)


def main() -> None:
    parent, module = int(sys.argv[1]), sys.argv[2]
    threading.Thread(target=_watch, args=(parent,), daemon=True).start()
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
