"""Writes the measured figures into a model package's card (`metrics`), from the evaluation reports.

The bundled model is trained on all four knee cases, so no case is left to measure it on. Its card
carries what the same recipe measured with cases held out:
- the leave-one-out means (benchmarks/leave_one_out.py) of LDSeg and of the UNet baseline;
- the recipe's knee1-3 model on knee4 (configs/knee-bones-knee4-held-out.yaml), beside the baseline
  trained on the same cases (configs/baseline-knee.yaml).

    python benchmarks/card_metrics.py Resources/Models/knee-bones

Only the card changes; the weights and their SHA-256 stay as they are.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from ldseg.card import CARD_FILE, ModelCard
from ldseg.imageio import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]
EVALUATION = ROOT / "docs" / "evaluation"


def held_out_figures(report: dict, case: str) -> dict:
    """The figures of one `ldseg evaluate` report for `case`, rounded for the card."""
    measured = report["cases"][case]
    return {
        "model": f"{report['model']['name']} {report['model']['version']}",
        "structures": {
            name: {
                "dice": round(s["dice"], 4), "hd95_mm": round(s["hd95_mm"], 2), "assd_mm": round(s["assd_mm"], 2),
                "noisy_dice": {sigma: round(value, 4) for sigma, value in s["noisy_dice"].items()},
                # sharpness of the uncertainty band, in reports written since `evaluate` measures it
                **{key: round(s[key], 3) for key in ("band_width_mm", "errors_in_band") if s.get(key) is not None},
            }
            for name, s in measured["structures"].items()
        },
        "uncertainty_auroc_errors": round(measured["uncertainty"]["auroc"], 4),
        "expected_calibration_error": round(measured["uncertainty"]["ece"], 4),
        "cpu_seconds_per_case": round(measured["seconds"], 1),
    }


def metrics(leave_one_out: dict, ldseg_knee4: dict, baseline_knee4: dict) -> dict:
    steps = leave_one_out["steps_per_fold"]
    return {
        "note": "Trained on all four cases: these figures measure the same recipe with cases held out.",
        "settings": {"samples": 8, "steps": 2, "fusion": "mean", "largest_component": True, "grid": "native"},
        "leave_one_out": {
            "steps_per_fold": steps,
            "command": f"python benchmarks/leave_one_out.py --steps {steps} -o docs/evaluation/leave-one-out-{steps}",
            "means": {
                model: {structure: {name: round(value, 4) for name, value in figures.items()}
                        for structure, figures in by_structure.items()}
                for model, by_structure in leave_one_out["means"].items()
            },
        },
        "knee4_held_out": {
            "command": "ldseg train configs/knee-bones-knee4-held-out.yaml, then ldseg evaluate "
                       "runs/knee-bones-knee4-held-out/model ../shared/data/knee-oai --cases knee4",
            "LDSeg": held_out_figures(ldseg_knee4, "knee4"),
            "UNet baseline": held_out_figures(baseline_knee4, "knee4"),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", type=Path, help="model package folder whose card gets the metrics")
    parser.add_argument("--leave-one-out", type=Path, default=EVALUATION / "leave-one-out-500" / "leave-one-out.json")
    parser.add_argument("--ldseg-knee4", type=Path, default=EVALUATION / "knee-bones-knee4" / "evaluation.json")
    parser.add_argument("--baseline-knee4", type=Path, default=EVALUATION / "baseline-knee4" / "evaluation.json")
    args = parser.parse_args()
    reports = [json.loads(path.read_text(encoding="utf-8"))
               for path in (args.leave_one_out, args.ldseg_knee4, args.baseline_knee4)]
    card = ModelCard.load(args.package / CARD_FILE)
    card = dataclasses.replace(card, metrics=metrics(*reports))
    atomic_write_bytes(args.package / CARD_FILE, card.to_json().encode("utf-8"))
    print(json.dumps(card.metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
