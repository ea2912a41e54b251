"""Does `ldseg cohort` pay off, and does its uncertainty ranking mean anything? (prints Markdown)

    python benchmarks/benchmark_cohort.py [--data-dir DIR] [--workers 2] [--json PATH]

Builds 16 cases in a temporary folder (never kept): the four labelled knees, and of each a noisy copy
(Gaussian noise sigma 0.2 on the [0, 1]-scaled image, as `ldseg evaluate`), an intensity-scaled copy
(multiplied by a smooth bias field rising from 0.4 to 1.6 along the long axis) and a cropped copy
(the central 60 % of the long axis). Then, with the default settings (8 samples, 2 DDIM steps):

1. `ldseg cohort` on a local Ray of --workers workers: wall time, Ray's start (until the workers have
   loaded the model) and stop, each worker's peak resident memory (VmHWM, read from /proc). Ray runs
   its workers at niceness 15 by default; here RAY_worker_niceness=0, so that on a machine shared
   with other jobs all three runs compete for the CPU alike;
2. the 16 cases as 16 separate `ldseg segment` processes, one after another: wall time and peak RSS;
3. `ldseg cohort --workers 0` (in-process, no Ray): wall time and peak RSS;
4. from run 1, each case's Dice against its labels and the Spearman correlation between each
   uncertainty score of cohort.csv and (1 - Dice), the mean Dice over femur and tibia.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "knee-oai"
SCORES = {
    "sample_disagreement": "sample disagreement, 1 - mean pairwise Dice (the ranking score)",
    "mean_uncertainty": "mean uncertainty inside the structures",
    "boundary_uncertainty": "boundary uncertainty",
    "uncertain_volume_ml": "uncertain-region volume",
}


def make_cases(data_dir: Path, folder: Path) -> dict[str, Path]:
    """Writes the 16 images into `folder`; returns {case id: label file} (labels written beside them)."""
    from ldseg.evaluation import noisy_image

    labels_dir = folder.parent / "labels"
    labels_dir.mkdir()
    truth = {}
    for knee in sorted(p.name[: -len(".nii.gz")] for p in (data_dir / "images").glob("*.nii.gz")):
        image = sitk.ReadImage(str(data_dir / "images" / f"{knee}.nii.gz"), sitk.sitkFloat32)
        labels = sitk.ReadImage(str(data_dir / "labels" / f"{knee}.nii.gz"), sitk.sitkUInt8)
        long_axis = int(np.argmax(image.GetSize()))
        ramp_shape = [1, 1, 1]
        ramp_shape[2 - long_axis] = image.GetSize()[long_axis]  # numpy axes are (z, y, x)
        bias = np.linspace(0.4, 1.6, image.GetSize()[long_axis], dtype=np.float32).reshape(ramp_shape)
        scaled = sitk.GetImageFromArray(sitk.GetArrayFromImage(image) * bias)
        scaled.CopyInformation(image)
        size = list(image.GetSize())
        start = [0, 0, 0]
        start[long_axis], size[long_axis] = size[long_axis] // 5, size[long_axis] * 3 // 5
        variants = {
            knee: (image, labels),
            f"{knee}-noisy": (noisy_image(image, 0.2), labels),
            f"{knee}-scaled": (scaled, labels),
            f"{knee}-cropped": (sitk.RegionOfInterest(image, size, start), sitk.RegionOfInterest(labels, size, start)),
        }
        for case, (volume, label_map) in variants.items():
            sitk.WriteImage(volume, str(folder / f"{case}.nii.gz"))
            sitk.WriteImage(label_map, str(labels_dir / f"{case}.nii.gz"))
            truth[case] = labels_dir / f"{case}.nii.gz"
    return truth


class WorkerMemory(threading.Thread):
    """Polls /proc for Ray's CohortWorker processes and keeps each one's peak RSS (VmHWM)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peaks: dict[int, float] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            for proc in Path("/proc").iterdir():
                try:
                    if proc.name.isdigit() and b"CohortWorker" in (proc / "cmdline").read_bytes():
                        for line in (proc / "status").read_text().splitlines():
                            if line.startswith("VmHWM:"):
                                self.peaks[int(proc.name)] = int(line.split()[1]) / 1024
                except OSError:
                    continue


def run_measured(command: list[str]) -> tuple[float, float, str]:
    """Runs `command`; returns (wall seconds, peak RSS MiB of that process, stdout)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed with status {os.waitstatus_to_exitcode(status)}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024, stdout


def ray_cohort(images: Path, output: Path, workers: int) -> dict:
    """`ldseg cohort` on an embedded Ray, with the time of each JSON line."""
    memory = WorkerMemory()
    memory.start()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "ldseg.cli", "cohort", str(images), "-o", str(output), "--workers", str(workers),
         "--progress", "jsonl"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO,
        env={**os.environ, "RAY_worker_niceness": "0"})
    events = [(time.perf_counter() - started, json.loads(line)) for line in process.stdout]
    if process.wait() != 0:
        raise SystemExit(f"ldseg cohort failed with status {process.returncode}")
    wall = time.perf_counter() - started
    memory.stopped.set()
    memory.join()
    first_start = next(t for t, e in events if e["event"] == "started")
    last_case = max(t for t, e in events if e["event"] == "case")
    return {"wall_s": wall, "ray_up_s": next(t for t, e in events if e["event"] == "note"),
            "workers_ready_s": first_start, "after_last_case_s": wall - last_case,
            "worker_peak_rss_mib": sorted(memory.peaks.values())}


def ray_start_stop() -> tuple[float, float]:
    """ray.init() and ray.shutdown() of an embedded Ray, alone, in a fresh process."""
    code = ("import time, logging, ray; t = time.perf_counter(); ray.init(address='local', include_dashboard=False, "
            "logging_level=logging.WARNING); up = time.perf_counter() - t; t = time.perf_counter(); ray.shutdown(); "
            "print(up, time.perf_counter() - t)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    up, down = output.split()
    return float(up), float(down)


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    def ranks(values: list[float]) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        order = np.argsort(values, kind="stable")
        result = np.empty(len(values))
        result[order] = np.arange(len(values), dtype=float)
        for value in np.unique(values):  # ties share their mean rank
            tied = values == value
            result[tied] = result[tied].mean()
        return result

    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("LDSEG_DATA_DIR", DEFAULT_DATA)))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ldseg-cohort-benchmark-") as temporary:
        root = Path(temporary)
        (root / "images").mkdir()
        truth = make_cases(args.data_dir, root / "images")
        cases = sorted(truth)

        ray_run = ray_cohort(root / "images", root / "ray", args.workers)
        separate_peak = 0.0
        started = time.perf_counter()
        for case in cases:
            _, peak, _ = run_measured([sys.executable, "-m", "ldseg.cli", "segment", str(root / "images" / f"{case}.nii.gz"),
                                       "-o", str(root / "separate" / case), "--progress", "none"])
            separate_peak = max(separate_peak, peak)
        separate_wall = time.perf_counter() - started
        in_process_wall, in_process_peak, _ = run_measured(
            [sys.executable, "-m", "ldseg.cli", "cohort", str(root / "images"), "-o", str(root / "in-process"),
             "--workers", "0", "--progress", "none"])
        ray_up, ray_down = ray_start_stop()
        rows = dice_errors(root / "ray", truth)

    errors = [row["error"] for row in rows]
    correlations = {name: spearman([float(row[name]) for row in rows], errors) for name in SCORES}
    figures = {
        "cases": len(cases), "cpu_count": os.cpu_count(), "workers": args.workers,
        "ray_cohort": ray_run, "separate_segment_calls": {"wall_s": separate_wall, "peak_rss_mib": separate_peak},
        "in_process_cohort": {"wall_s": in_process_wall, "peak_rss_mib": in_process_peak},
        "ray_init_s": ray_up, "ray_shutdown_s": ray_down, "speedup_vs_separate": separate_wall / ray_run["wall_s"],
        "spearman_vs_1_minus_dice": correlations,
        "per_case": [{"case_id": r["case_id"], "dice": r["dice"], **{name: float(r[name]) for name in SCORES},
                      "review": r["review"]} for r in rows],
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    print(markdown(figures))


def dice_errors(output: Path, truth: dict[str, Path]) -> list[dict]:
    """Rows of the cohort's cohort.csv with each structure's Dice and 1 - (their mean) added."""
    from ldseg.card import CARD_FILE, ModelCard
    from ldseg.evaluation import dice
    from ldseg.store import resolve_model

    card = ModelCard.load(resolve_model("knee-bones") / CARD_FILE)
    with (output / "cohort.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    for row in rows:
        predicted = sitk.GetArrayFromImage(sitk.ReadImage(str(output / row["case_id"] / f"{row['case_id']}.seg.nrrd")))
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(truth[row["case_id"]])))
        row["dice"] = {label.name: round(dice(predicted == label.value, labels == label.value), 4) for label in card.labels}
        row["error"] = 1.0 - float(np.mean(list(row["dice"].values())))
    return rows


def markdown(f: dict) -> str:
    ray_run, separate, in_process = f["ray_cohort"], f["separate_segment_calls"], f["in_process_cohort"]
    lines = [
        f"{f['cases']} cases (4 knees x original, noisy, intensity-scaled, cropped), bundled model, 8 samples, "
        f"2 DDIM steps, CPU, {f['cpu_count']} cores",
        "",
        "| run | wall s | peak RSS MiB |",
        "|---|---|---|",
        f"| {f['cases']} separate `ldseg segment` processes | {separate['wall_s']:.1f} | {separate['peak_rss_mib']:.0f} |",
        f"| `ldseg cohort --workers 0` (in-process, no Ray) | {in_process['wall_s']:.1f} | {in_process['peak_rss_mib']:.0f} |",
        f"| `ldseg cohort --workers {f['workers']}` (local Ray) | {ray_run['wall_s']:.1f} | "
        f"{', '.join(f'{m:.0f}' for m in ray_run['worker_peak_rss_mib'])} (per worker) |",
        "",
        f"Speed-up of the Ray cohort over separate calls: {f['speedup_vs_separate']:.2f}x.",
        f"Ray's own cost: `ray.init()` {f['ray_init_s']:.1f} s and `ray.shutdown()` {f['ray_shutdown_s']:.1f} s alone; "
        f"in the cohort, {ray_run['ray_up_s']:.1f} s until Ray was up, {ray_run['workers_ready_s']:.1f} s until the "
        f"first worker had loaded the model, {ray_run['after_last_case_s']:.1f} s from the last case to exit "
        "(Ray shutdown and report).",
        "",
        "Spearman correlation of each score with (1 - mean Dice over femur and tibia), over the cases:",
        "",
        "| score | Spearman rho |",
        "|---|---|",
        *(f"| {SCORES[name]} | {rho:+.2f} |" for name, rho in f["spearman_vs_1_minus_dice"].items()),
        "",
        "Cases as the report ranks them (flagged: the default top 10 %):",
        "",
        "| case | Femur Dice | Tibia Dice | sample disagreement | mean uncertainty | boundary uncertainty | flagged |",
        "|---|---|---|---|---|---|---|",
        *(f"| {c['case_id']} | {c['dice']['Femur']:.3f} | {c['dice']['Tibia']:.3f} | {c['sample_disagreement']:.4f} | "
          f"{c['mean_uncertainty']:.4f} | {c['boundary_uncertainty']:.3f} | {c['review'] or ''} |"
          for c in sorted(f["per_case"], key=lambda c: -c["sample_disagreement"])),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
