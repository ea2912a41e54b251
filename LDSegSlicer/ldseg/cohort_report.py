"""The cohort report: cohort.csv (and cohort.parquet when pyarrow is installed) and report.html.

Cases are ranked by their sample disagreement, 1 - the mean over structures of the mean pairwise Dice
of the posterior samples (uncertainty.py), most uncertain first: on 16 labelled knees and variants it
tracked 1 - Dice best (Spearman +0.74; mean uncertainty +0.57, boundary uncertainty +0.10;
docs/evaluation/cohort-benchmark.md). A case is flagged for review when that score reaches the
review threshold (by default the cohort's top 10 %) or when a structure was not found at all, which
a score of sample agreement alone would rank as confident.
The page is static, opens from disk, and refers to each case's QC picture by a relative link.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np

from .imageio import atomic_write_bytes

SCORE = "sample_disagreement"
BASE_COLUMNS = ("case_id", "status", "error", "review", "review_reason", "input")
CASE_COLUMNS = (SCORE, "mean_uncertainty", "boundary_uncertainty", "uncertain_volume_ml", "seconds", "device",
                "model_version", "summary", "qc_picture")
STRUCTURE_FIGURES = ("volume_ml", "mean_uncertainty", "boundary_uncertainty", "sample_agreement")


def review_threshold(rows: list[dict], top_percent: float, threshold: float | None) -> float | None:
    """The absolute threshold if given, else the score at which the top `top_percent` % of cases start."""
    if threshold is not None:
        return threshold
    scores = [row[SCORE] for row in rows if row["status"] != "failed"]
    return float(np.percentile(scores, 100.0 - top_percent, method="higher")) if scores and top_percent > 0 else None


def flag_for_review(rows: list[dict], structures: list[str], top_percent: float, threshold: float | None) -> float | None:
    """Sets each row's review and review_reason; returns the threshold used."""
    limit = review_threshold(rows, top_percent, threshold)
    how = f"absolute threshold {limit:.3f}" if threshold is not None else f"top {top_percent:g} %"
    for row in rows:
        reasons = []
        if row["status"] != "failed":
            if limit is not None and row[SCORE] >= limit:
                reasons.append(f"sample disagreement {row[SCORE]:.3f} >= {limit:.3f} ({how})")
            reasons += [f"{name} not found (0 mL)" for name in structures if not row[f"{name}_volume_ml"]]
        row["review"] = "yes" if reasons else ""
        row["review_reason"] = "; ".join(reasons)
    return limit


def write_report(output: Path, rows: list[dict], card, settings, top_percent: float, threshold: float | None) -> Path:
    """Writes cohort.csv (+ .parquet) and report.html into `output`; returns the page's path."""
    structures = [label.name for label in card.labels]
    limit = flag_for_review(rows, structures, top_percent, threshold)
    columns = [*BASE_COLUMNS, *(f"{s}_{figure}" for s in structures for figure in STRUCTURE_FIGURES), *CASE_COLUMNS]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(output / "cohort.csv", text.getvalue().encode("utf-8"))
    _write_parquet(output / "cohort.parquet", rows, columns)
    page = output / "report.html"
    atomic_write_bytes(page, _page(rows, structures, card, settings, limit).encode("utf-8"))
    return page


def _write_parquet(path: Path, rows: list[dict], columns: list[str]) -> None:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        return
    table = pyarrow.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows])
    sink = pyarrow.BufferOutputStream()
    pyarrow.parquet.write_table(table, sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def ranked(rows: list[dict]) -> list[dict]:
    """Segmented cases, most uncertain first (ties by case id)."""
    return sorted((r for r in rows if r["status"] != "failed"), key=lambda r: (-r[SCORE], r["case_id"]))


def _histograms(rows: list[dict], structures: list[str], limit: float | None) -> str:
    """The cohort's score and volume histograms as one inline PNG (the page stays one file)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(1, 1 + len(structures), figsize=(4.2 * (1 + len(structures)), 3.0))
    values = [r[SCORE] for r in rows]
    axes[0].hist(values, bins=min(30, max(5, len(values))), color="#d95f02")
    if limit is not None:
        axes[0].axvline(limit, color="black", linestyle="--", label="review threshold")
        axes[0].legend(fontsize=8)
    axes[0].set_title("sample disagreement (1 - mean pairwise Dice)")
    for ax, name in zip(axes[1:], structures):
        ax.hist([r[f"{name}_volume_ml"] for r in rows], bins=min(30, max(5, len(rows))), color="#1b9e77")
        ax.set_title(f"{name} volume (mL)")
    for ax in axes:
        ax.set_ylabel("cases")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: right; vertical-align: middle; }
th { background: #f4f4f4; position: sticky; top: 0; }
td.text, th.text { text-align: left; }
tr.review { background: #fff1e0; }
.flag { color: #b35900; font-weight: bold; }
img.qc { height: 120px; display: block; }
.failed td { color: #a00; }
"""


def _page(rows: list[dict], structures: list[str], card, settings, limit: float | None) -> str:
    e = html.escape
    cases = ranked(rows)
    failed = [r for r in rows if r["status"] == "failed"]
    flagged = sum(r["review"] == "yes" for r in cases)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>LDSeg cohort report: {len(rows)} cases</title><style>{STYLE}</style></head><body>",
        f"<h1>LDSeg cohort report</h1><p>{len(rows)} cases: {len(cases)} segmented, {len(failed)} failed, "
        f"<span class='flag'>{flagged} flagged for review</span>"
        + (f" (sample disagreement &ge; {limit:.3f})" if limit is not None else "") + ".<br>"
        f"Model {e(card.name)} {e(card.version)} (weights SHA-256 {e(card.weights_sha256[:12])}&hellip;), "
        f"{settings.samples} samples, {settings.steps} DDIM steps, fusion {e(settings.fusion)}, "
        f"uncertainty {e(settings.uncertainty)}. Written {e(time.strftime('%Y-%m-%d %H:%M'))}.</p>",
    ]
    if failed:
        parts.append("<h2>Failed cases</h2><table id='failed'><tr><th class='text'>case</th>"
                     "<th class='text'>input</th><th class='text'>error</th></tr>")
        parts += [f"<tr class='failed'><td class='text'>{e(r['case_id'])}</td><td class='text'>{e(r['input'])}</td>"
                  f"<td class='text'>{e(r['error'])}</td></tr>" for r in failed]
        parts.append("</table>")
    if cases:
        parts.append(f"<h2>Cohort</h2><img id='histograms' alt='histograms of sample disagreement and volumes' "
                     f"src='data:image/png;base64,{_histograms(cases, structures, limit)}'>")
        header = "".join(f"<th>{e(s)} mL</th><th>{e(s)} boundary unc.</th>" for s in structures)
        parts.append(
            "<h2>Cases, most uncertain first</h2><table id='cases'><tr><th>rank</th><th class='text'>case</th>"
            "<th class='text'>review</th><th>sample disagreement</th><th>mean unc.</th><th>boundary unc.</th>"
            f"<th>uncertain mL</th>{header}<th>s</th><th class='text'>QC picture</th></tr>"
        )
        for rank, r in enumerate(cases, start=1):
            figures = "".join(f"<td>{r[f'{s}_volume_ml']:.1f}</td><td>{r[f'{s}_boundary_uncertainty']:.3f}</td>"
                              for s in structures)
            flag = f"<span class='flag' title='{e(r['review_reason'])}'>review</span>" if r["review"] else ""
            seconds = f"{r['seconds']:.1f}" if r["seconds"] is not None else "reused"
            parts.append(
                f"<tr class='{'review' if r['review'] else ''}' data-case='{e(r['case_id'])}' data-score='{r[SCORE]}'>"
                f"<td>{rank}</td><td class='text'><a href='{quote(r['summary'])}'>{e(r['case_id'])}</a></td>"
                f"<td class='text'>{flag} {e(r['review_reason'])}</td><td>{r[SCORE]:.3f}</td>"
                f"<td>{r['mean_uncertainty']:.3f}</td><td>{r['boundary_uncertainty']:.3f}</td>"
                f"<td>{r['uncertain_volume_ml']:.1f}</td>{figures}<td>{seconds}</td>"
                f"<td class='text'><a href='{quote(r['qc_picture'])}'><img class='qc' loading='lazy' "
                f"alt='QC picture of {e(r['case_id'])}' src='{quote(r['qc_picture'])}'></a></td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
