"""Stands in for `python -m ldseg.cli` in the background-run tests: same arguments, same JSON lines.

FAKE_LDSEG_MODE picks the behaviour: "ok" writes engine-shaped results, "slow" starts a child
process and waits (for cancel tests; the child's PID goes to FAKE_LDSEG_CHILD_PID_FILE), "error"
reports a user error, "crash" dies with a traceback.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def emit(**message):
    print(json.dumps(message), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.add_argument("input")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--progress")
    parser.add_argument("--save-samples", action="store_true")
    options, _ = parser.parse_known_args()
    mode = os.environ.get("FAKE_LDSEG_MODE", "ok")
    if not Path(options.input).is_file():
        emit(event="error", message=f"input {options.input} missing")
        return 1
    emit(event="progress", stage="Loading model", fraction=0.1)
    if mode == "slow":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        Path(os.environ["FAKE_LDSEG_CHILD_PID_FILE"]).write_text(str(child.pid))
        emit(event="progress", stage="Sampling", fraction=0.3)
        time.sleep(120)
        return 0
    if mode == "error":
        emit(event="error", message="The input is not a knee MRI.")
        return 1
    if mode == "crash":
        print("Traceback (most recent call last):\nRuntimeError: CUDA out of memory", file=sys.stderr)
        return 3
    from scene_fixtures import write_engine_outputs

    emit(event="progress", stage="Sampling", fraction=0.5)
    name = Path(options.input).name.split(".")[0]
    summary = write_engine_outputs(Path(options.output), name, samples=3 if options.save_samples else 0)
    emit(event="progress", stage="Writing results", fraction=1.0)
    emit(event="done", summary=str(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
