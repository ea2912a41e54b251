"""Long fuzz run of the readers of untrusted files: prints how many generated inputs each reader was
given and how many ended in anything but a result or one LDSegError (a "crash").

    PYTHONPATH=LDSegSlicer:Testing/Python python benchmarks/fuzz_readers.py --examples 2000

The targets and input generators are Testing/Python/fuzz_targets.py (the CI test runs them briefly).
A crash is printed with the input that caused it (hypothesis shrinks it first) and the exit status is 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "Testing" / "Python"),
                str(Path(__file__).resolve().parents[1] / "LDSegSlicer")]

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_targets as targets


def readers() -> dict:
    """Reader name -> (input strategy, target)."""
    found = {f"image {suffix}": (targets.mutated(seed), lambda data, s=suffix: targets.image_file(s, data))
             for suffix, seed in sorted(targets.SEEDS.items())}
    found["DICOM series"] = (targets.mutated(targets.DICOM_SEED, header=1200), targets.dicom_folder)
    found["model card"] = (st.one_of(targets.mutated_card(), targets.json_values, st.text(max_size=300)),
                           targets.model_card)
    found["model zip import"] = (targets.mutated(targets.ZIP_SEED, header=4096), targets.model_zip)
    found["training config"] = (targets.config_text, targets.training_config)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="generated inputs per reader")
    parser.add_argument("--only", help="run the readers whose name contains this")
    args = parser.parse_args()
    os.environ["LDSEG_LIMITS"] = targets.FUZZ_LIMITS
    total, crashed = 0, 0
    for name, (strategy, target) in readers().items():
        if args.only and args.only not in name:
            continue
        count = 0

        def counted(data, target=target):
            nonlocal count
            count += 1
            target(data)

        run = settings(max_examples=args.examples, deadline=None, database=None,
                       suppress_health_check=list(HealthCheck))(given(strategy)(lambda data: counted(data)))

        started = time.perf_counter()
        try:
            run()
            status = "0 crashes"
        except Exception as error:  # hypothesis re-raises the shrunk failing example
            crashed += 1
            status = f"CRASH {type(error).__name__}: {str(error)[:300]}"
        total += count
        print(f"{name:18s} {count:6d} inputs  {time.perf_counter() - started:6.1f} s  {status}", flush=True)
    print(f"total: {total} inputs tried, {crashed} reader(s) crashed")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
