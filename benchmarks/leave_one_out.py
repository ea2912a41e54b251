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


COLUMNS = ("dice", "hd95_mm", "assd_mm", "dice_sigma_0.05", "dice_sigma_0.1", "dice_sigma_0.2", "auroc", "ece", "train_seconds")
DIGITS = (4, 2, 2, 4, 4, 4, 3, 4, 0)


def fold_rows(reports: dict[str, dict[str, dict]]) -> list[tuple[str, str, str, dict[str, float]]]:
    """(held-out case, structure, model, figures) for every fold, structure and model."""
    rows = []
    for held_out, by_model in reports.items():
        for model, report in by_model.items():
            case = report["cases"][held_out]
            for structure, f in case["structures"].items():
                values = [f["dice"], f["hd95_mm"], f["assd_mm"], *(f["noisy_dice"][s] for s in ("0.05", "0.1", "0.2")),
                          case["uncertainty"]["auroc"], case["uncertainty"]["ece"], report["train_seconds"]]
                rows.append((held_out, structure, model, dict(zip(COLUMNS, values))))
    return rows


def means(rows: list[tuple[str, str, str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """{model: {structure: figures averaged over the folds}}."""
    grouped: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _, structure, model, figures in rows:
        grouped.setdefault((model, structure), []).append(figures)
    result: dict[str, dict[str, dict[str, float]]] = {}
    for (model, structure), folds in sorted(grouped.items()):
        result.setdefault(model, {})[structure] = {c: sum(f[c] for f in folds) / len(folds) for c in COLUMNS}
    return result


def table(rows, mean_figures: dict, steps: int) -> str:
    """Markdown: one row per fold, structure and model, then the means over folds."""
    lines = [
        f"# Leave-one-out: LDSeg vs UNet baseline ({steps} training steps per fold)", "",
        "Each fold trains on the other cases and is measured on the held-out case, on its native grid. "
        "LDSeg: fused N = 8, k = 2. Both keep each structure's largest connected piece. "
        "Noise: Gaussian sigma on the [0, 1]-scaled image. "
        "Reproduce: `python benchmarks/leave_one_out.py --steps " + f"{steps}`.", "",
        "| held out | structure | model | Dice | HD95 (mm) | ASSD (mm) | Dice sigma=0.05 | Dice sigma=0.1 | Dice sigma=0.2 | AUROC | ECE | train s |",
        "|" + " --- |" * 12,
    ]
    lines += [row(held_out, structure, model, figures) for held_out, structure, model, figures in rows]
    lines += [row("**mean**", structure, model, figures)
              for structure in ("Femur", "Tibia") for model, by_structure in mean_figures.items()
              for figures in [by_structure[structure]]]
    return "\n".join(lines) + "\n"


def row(case: str, structure: str, model: str, figures: dict[str, float]) -> str:
    return "| " + " | ".join([case, structure, model] + [f"{figures[c]:.{d}f}" for c, d in zip(COLUMNS, DIGITS)]) + " |"


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
    rows = fold_rows(reports)
    mean_figures = means(rows)
    markdown = table(rows, mean_figures, args.steps)
    print(markdown)
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "leave-one-out.md").write_text(markdown, encoding="utf-8")
        summary = {"steps_per_fold": args.steps, "means": mean_figures, "folds": reports}
        (args.output / "leave-one-out.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
