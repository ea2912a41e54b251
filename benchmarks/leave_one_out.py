"""Leave-one-out cross-validation of LDSeg against the deterministic UNet baseline.

For each case of the data folder, trains both models on the other cases with the settings of
configs/knee-bones.yaml and configs/baseline-knee.yaml (only the cases, the step count and the output
folder change), evaluates each on the held-out case with `ldseg evaluate` (N = 8, k = 2, native grid,
noise sigma 0.05 / 0.10 / 0.20), and writes a side-by-side table.

    python benchmarks/leave_one_out.py --steps 500 -o docs/evaluation/leave-one-out-500

Trainings resume from their checkpoints and finished folds are skipped, so an interrupted run is
continued by the same command. Runs go under runs/loo-<steps>/ (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from ldseg.baseline import BASELINE_CARD_FILE
from ldseg.card import CARD_FILE
from ldseg.data import find_cases

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"LDSeg": ROOT / "configs" / "knee-bones.yaml", "UNet baseline": ROOT / "configs" / "baseline-knee.yaml"}
CARD_FILES = {"LDSeg": CARD_FILE, "UNet baseline": BASELINE_CARD_FILE}


def fold_config(base: Path, held_out: str, cases: list[str], steps: int, data_dir: Path, output: Path) -> dict:
    """The base config with the fold's cases, step count and absolute paths."""
    config = yaml.safe_load(base.read_text(encoding="utf-8"))
    config.update(
        data_dir=str(data_dir), output_dir=str(output), steps=steps, validate_every=steps,
        train_cases=[case for case in cases if case != held_out], validation_cases=[held_out],
    )
    return config


def run(command: list[str]) -> None:
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)


def run_fold(model: str, held_out: str, cases: list[str], args: argparse.Namespace) -> dict:
    """Trains (or resumes) one fold and evaluates it; returns the evaluation report with the
    training seconds from the model card added."""
    folder = ROOT / "runs" / f"loo-{args.steps}" / model.split()[0].lower() / held_out
    report = folder / "evaluation" / "evaluation.json"
    if not report.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "config.yaml"
        config.write_text(yaml.safe_dump(fold_config(CONFIGS[model], held_out, cases, args.steps, args.data_dir, folder)))
        if not (folder / "model").is_dir():
            run(["ldseg", "train", str(config)])
        run(["ldseg", "evaluate", str(folder / "model"), str(args.data_dir), "--cases", held_out,
             "-o", str(folder / "evaluation"), "--device", "cpu"])
    card = json.loads((folder / "model" / CARD_FILES[model]).read_text(encoding="utf-8"))
    return {**json.loads(report.read_text(encoding="utf-8")), "train_seconds": float(card["training"]["seconds"])}


def table(reports: dict[str, dict[str, dict]], steps: int) -> str:
    """Markdown: one row per fold, structure and model, then the means over folds."""
    lines = [
        f"# Leave-one-out: LDSeg vs UNet baseline ({steps} training steps per fold)", "",
        "Each fold trains on the other cases and is measured on the held-out case, on its native grid. "
        "LDSeg: fused N = 8, k = 2. Noise: Gaussian sigma on the [0, 1]-scaled image. "
        "Reproduce: `python benchmarks/leave_one_out.py --steps " + f"{steps}`.", "",
        "| held out | structure | model | Dice | HD95 (mm) | ASSD (mm) | Dice sigma=0.05 | Dice sigma=0.1 | Dice sigma=0.2 | AUROC | ECE | train s |",
        "|" + " --- |" * 12,
    ]
    means: dict[tuple[str, str], list[list[float]]] = {}
    for held_out, by_model in reports.items():
        for model, report in by_model.items():
            case = report["cases"][held_out]
            for structure, f in case["structures"].items():
                noisy = [f["noisy_dice"][sigma] for sigma in ("0.05", "0.1", "0.2")]
                values = [f["dice"], f["hd95_mm"], f["assd_mm"], *noisy, case["uncertainty"]["auroc"], case["uncertainty"]["ece"], report["train_seconds"]]
                means.setdefault((structure, model), []).append(values)
                lines.append(row(held_out, structure, model, values))
    for (structure, model), rows in sorted(means.items()):
        columns = list(zip(*rows))
        lines.append(row("**mean**", structure, model, [sum(c) / len(c) for c in columns]))
    return "\n".join(lines) + "\n"


def row(case: str, structure: str, model: str, values: list[float]) -> str:
    digits = [4, 2, 2, 4, 4, 4, 3, 4, 0]
    return "| " + " | ".join([case, structure, model] + [f"{v:.{d}f}" for v, d in zip(values, digits)]) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500, help="training steps per fold (the bundled model: 2000)")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("LDSEG_DATA_DIR", ROOT.parent / "shared" / "data" / "knee-oai")))
    parser.add_argument("-o", "--output", type=Path, help="folder for leave-one-out.md and .json (default: print only)")
    args = parser.parse_args()
    args.data_dir = args.data_dir.resolve()
    cases = [case.name for case in find_cases(args.data_dir)]
    reports: dict[str, dict[str, dict]] = {}
    for held_out in cases:
        for model in CONFIGS:
            reports.setdefault(held_out, {})[model] = run_fold(model, held_out, cases, args)
    markdown = table(reports, args.steps)
    print(markdown)
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "leave-one-out.md").write_text(markdown, encoding="utf-8")
        (args.output / "leave-one-out.json").write_text(json.dumps(reports, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
