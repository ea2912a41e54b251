"""`ldseg cohort`: segment many knees with one model load per worker, resumable, and triage them.

A cohort is a list of cases found in a folder tree or read from a CSV manifest. Each case is
segmented with the same functions as `ldseg segment` (reading, `Segmenter.segment`,
`write_outputs`) and its files land in OUTDIR/<case id>/ all at once: they are written into a
hidden folder beside it that is renamed into place, so a worker killed mid-case leaves nothing
there. A case whose summary already records the same model SHA-256, settings and input is skipped.
A bad case becomes a row with its one-line error; the cohort goes on.

Cases run in this process (`workers=0`, no Ray import) or on Ray actors (`cohort_ray.py`); both
call `CaseRunner.run`, so a case is computed identically either way.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import CancelledError, LDSegError
from .imageio import IMAGE_SUFFIXES, case_name

STAGING_PREFIX = ".ldseg-case-"  # hidden folders of cases being written; removed when the cohort ends
SAFE_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MANIFEST_COLUMNS = ("case_id", "path")  # plus the optional series_uid
UNCERTAIN_FRACTION = 0.5  # a voxel is "uncertain" at or above this share of the measure's maximum


@dataclass(frozen=True)
class Case:
    case_id: str
    path: Path
    series_uid: str | None = None


# ---------------------------------------------------------------- finding the cases


def find_cases(source: Path, output: Path) -> list[Case]:
    """Cases from a CSV manifest (a .csv file) or a folder tree; `output` is never searched."""
    if source.is_file() and source.suffix.lower() == ".csv":
        return read_manifest(source)
    if not source.is_dir():
        raise LDSegError(f"Cohort input {source} is neither a folder of volumes nor a CSV manifest (.csv).")
    cases = _unique([Case(_case_id(path, source), path) for path in _walk(source, output.resolve())], source)
    if not cases:
        raise LDSegError(
            f"No volumes found in {source}: expected NIfTI, NRRD or MHA files ({', '.join(IMAGE_SUFFIXES)}) "
            "or DICOM series folders, or give a CSV manifest."
        )
    return cases


def _walk(folder: Path, output: Path) -> Iterator[Path]:
    """Volume files and DICOM series folders under `folder`, in sorted order, hidden names skipped.

    A folder that directly holds a DICOM file is one case (its series is read recursively).
    """
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    files = [p for p in entries if p.is_file()]
    if any(_is_dicom(p) for p in files if not p.name.lower().endswith(IMAGE_SUFFIXES)):
        yield folder
        return
    for path in entries:
        if path.is_dir() and path.resolve() != output:
            yield from _walk(path, output)
        elif path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES) and not path.name.lower().endswith(".seg.nrrd"):
            yield path


def _is_dicom(path: Path) -> bool:
    try:
        with path.open("rb") as stream:
            return stream.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _case_id(path: Path, root: Path) -> str:
    """The path below `root` without image extensions, '/' -> '_': subj01/v00/knee.nii.gz -> subj01_v00_knee."""
    relative = path.relative_to(root) if path != root else Path(root.name)
    identifier = "_".join((*relative.parts[:-1], case_name(relative.name)))
    return re.sub(r"[^A-Za-z0-9._-]", "_", identifier).lstrip("._") or "case"


def _unique(cases: list[Case], source: Path) -> list[Case]:
    seen: dict[str, Case] = {}
    for case in cases:
        if case.case_id in seen:
            raise LDSegError(
                f"Two inputs in {source} give the same case id {case.case_id!r} ({seen[case.case_id].path} and "
                f"{case.path}); rename one or list the cases in a CSV manifest with distinct case_id values."
            )
        seen[case.case_id] = case
    return cases


def read_manifest(path: Path) -> list[Case]:
    """CSV with a header: case_id, path (relative to the CSV's folder or absolute), optional series_uid."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as stream:
            rows = list(csv.DictReader(stream))
            header = [name.strip() for name in (rows[0].keys() if rows else [])]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise LDSegError(f"Cannot read the manifest {path.name} ({error}); it must be a UTF-8 CSV file.") from None
    missing = [column for column in MANIFEST_COLUMNS if column not in header]
    if not rows or missing:
        raise LDSegError(
            f"Manifest {path.name} needs a header row with the columns case_id, path (and optionally series_uid) "
            f"and one row per case; {'it has no rows' if not rows else 'missing: ' + ', '.join(missing)}."
        )
    cases = []
    for line, row in enumerate(rows, start=2):
        row = {key.strip(): (value or "").strip() for key, value in row.items() if key}
        case_id, location = row["case_id"], row["path"]
        if not SAFE_CASE_ID.match(case_id):
            raise LDSegError(
                f"Manifest {path.name} line {line}: case id {case_id!r} is not a safe folder name; "
                "use letters, digits, '.', '_' and '-', starting with a letter or digit."
            )
        if not location:
            raise LDSegError(f"Manifest {path.name} line {line}: case {case_id} has no path.")
        cases.append(Case(case_id, (path.parent / location), row.get("series_uid") or None))
    return _unique(cases, path)


# ---------------------------------------------------------------- one case


class CaseRunner:
    """Loads the model once, then segments cases one after another into `output`/<case id>/."""

    def __init__(self, model_directory: Path, device: str, settings, output: Path, threads: int | None = None) -> None:
        import torch

        from .inference import Segmenter, select_device
        from .package import load_package

        if threads:
            torch.set_num_threads(threads)
        self.device = select_device(device)
        self.segmenter = Segmenter(load_package(model_directory, self.device), self.device)
        self.settings, self.output = settings, output

    def run(self, case: Case, should_cancel: Callable[[], bool] | None = None) -> dict:
        """The case's row: its figures, or status 'failed' and the one-line error. Never raises but on cancel."""
        started = time.perf_counter()
        try:
            summary = self._segment(case, should_cancel)
        except CancelledError:
            raise
        except LDSegError as error:
            return failed_row(case, str(error))
        except Exception as error:  # noqa: BLE001 - one case's unexpected failure must not stop the cohort
            traceback.print_exc()
            return failed_row(case, f"unexpected {type(error).__name__}: {error}")
        return case_row(case, summary, "done", time.perf_counter() - started)

    def _segment(self, case: Case, should_cancel) -> dict:
        import SimpleITK as sitk

        from .imageio import read_image
        from .outputs import write_outputs

        if case.path.is_dir():
            from .dicom_input import read_dicom_series

            image = sitk.Cast(read_dicom_series(case.path, case.series_uid).image, sitk.sitkFloat32)
        else:
            image = read_image(case.path)
        name = case_name(case.path)
        result = self.segmenter.segment(image, self.settings, None, should_cancel, name=case.path.name)
        figures = {"uncertain_volume_ml": uncertain_volume_ml(result)}
        with case_folder(self.output, case.case_id) as staging:
            files = write_outputs(result, image, staging, name, str(case.path), cohort=figures)
            return json.loads((staging / files["summary"]).read_text(encoding="utf-8"))


def uncertain_volume_ml(result) -> float:
    """mL of voxels whose uncertainty is at least UNCERTAIN_FRACTION of the measure's maximum."""
    import SimpleITK as sitk

    from .uncertainty import uncertainty_range

    top = uncertainty_range(result.settings.uncertainty, result.card.num_classes)[1]
    count = int(np.count_nonzero(sitk.GetArrayViewFromImage(result.uncertainty) >= UNCERTAIN_FRACTION * top))
    return round(count * float(np.prod(result.uncertainty.GetSpacing())) / 1000.0, 3)


@contextlib.contextmanager
def case_folder(output: Path, case_id: str) -> Iterator[Path]:
    """A hidden staging folder; on success it replaces OUTDIR/<case id> with one rename."""
    staging = output / f"{STAGING_PREFIX}{case_id}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()  # mode from the umask, unlike mkdtemp's 0700
    try:
        yield staging
        target = output / case_id
        if target.exists():  # outputs of other settings: moved aside (removed with the staging folders)
            os.replace(target, output / f"{STAGING_PREFIX}{case_id}-old-{uuid.uuid4().hex[:8]}")
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_staging(output: Path) -> None:
    """Removes what killed or interrupted workers left; only call when no worker writes into `output`."""
    for folder in output.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- rows and resuming


def one_line(message: str) -> str:
    return " ".join(str(message).split())


def failed_row(case: Case, error: str) -> dict:
    return {"case_id": case.case_id, "status": "failed", "error": one_line(error), "input": str(case.path)}


def case_row(case: Case, summary: dict, status: str, seconds: float | None = None) -> dict:
    """A cohort.csv row from a case's summary JSON (the one place a row's figures come from)."""
    row = {"case_id": case.case_id, "status": status, "error": "", "input": str(case.path)}
    structures = summary["structures"]
    for structure, figures in structures.items():
        row[f"{structure}_volume_ml"] = figures["volume_ml"]
        row[f"{structure}_mean_uncertainty"] = round(figures["mean_uncertainty"], 5)
        row[f"{structure}_boundary_uncertainty"] = round(figures["boundary_uncertainty"], 5)
        row[f"{structure}_sample_agreement"] = round(figures["mean_pairwise_dice"], 5)
    row["boundary_uncertainty"] = round(float(np.mean([f["boundary_uncertainty"] for f in structures.values()])), 5)
    row["mean_uncertainty"] = round(float(np.mean([f["mean_uncertainty"] for f in structures.values()])), 5)
    row["sample_agreement"] = round(float(np.mean([f["mean_pairwise_dice"] for f in structures.values()])), 5)
    row["sample_disagreement"] = round(1.0 - row["sample_agreement"], 5)  # the report's ranking score
    row["uncertain_volume_ml"] = summary.get("cohort", {}).get("uncertain_volume_ml")
    row["seconds"] = round(seconds, 2) if seconds is not None else None  # this run's time; none when skipped
    row["device"] = summary["device"]
    row["model_version"] = summary["model"]["version"]
    row["summary"] = f"{case.case_id}/{summary['files']['summary']}"
    row["qc_picture"] = f"{case.case_id}/{summary['files']['qc_picture']}"
    return row


def finished_row(case: Case, output: Path, weights_sha256: str, settings) -> dict | None:
    """The row of a case already segmented with this model, these settings and this input, else None."""
    folder = output / case.case_id
    try:
        summary = json.loads((folder / f"{case_name(case.path)}.json").read_text(encoding="utf-8"))
        same = (
            summary["model"]["weights_sha256"] == weights_sha256
            and summary["settings"] == asdict(settings)
            and summary["input"] == str(case.path)
            and bool(summary.get("cohort"))
            and all((folder / file).is_file() for file in summary["files"].values())
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return case_row(case, summary, "skipped") if same else None


# ---------------------------------------------------------------- the cohort


@dataclass(frozen=True)
class CohortJob:
    """What every worker needs to build its CaseRunner (sent to Ray actors, so plain data)."""

    model_directory: Path
    device: str
    settings: object  # SegmentSettings
    output: Path
    threads: int | None = None

    def runner(self) -> CaseRunner:
        return CaseRunner(self.model_directory, self.device, self.settings, self.output, self.threads)


def run_in_process(cases: list[Case], job: CohortJob, should_cancel: Callable[[], bool]) -> Iterator[tuple]:
    """The cases one after another in this process: the events of cohort_ray.run_on_ray, without Ray."""
    runner = job.runner()
    for case in cases:
        yield "started", case, f"pid {os.getpid()}"
        yield "finished", runner.run(case, should_cancel)


def run_cohort(args) -> int:
    """`ldseg cohort`: returns 0 when every case is done or skipped, 1 when any failed.

    Ctrl+C or SIGTERM stops it between cases (in-process: at the segmenter's next check); the cases
    finished are kept.
    """
    from .cohort_report import write_report
    from .imageio import ensure_writable_directory
    from .interrupt import STOP
    from .settings import SegmentSettings
    from .package import load_package
    from .store import resolve_model

    started = time.perf_counter()
    _check_options(args)
    output = ensure_writable_directory(args.output)
    cases = find_cases(Path(args.input), output)
    model_directory = resolve_model(args.model)
    card = load_package(model_directory).card  # a corrupt model fails here, once, not in every worker
    settings = SegmentSettings(
        samples=args.samples, steps=args.steps, fusion=args.fusion, uncertainty=args.uncertainty, seed=args.seed,
        chunk_size=args.chunk_size, keep_samples=args.save_samples, largest_component=not args.all_components,
    ).for_card(card)
    rows: dict[str, dict] = {}
    todo = []
    for case in cases:
        row = finished_row(case, output, card.weights_sha256, settings)
        if row is None:
            todo.append(case)
        else:
            rows[case.case_id] = row
    progress = CohortProgress(args.progress, len(cases))
    for row in rows.values():
        progress.finished(row)
    job = CohortJob(model_directory, args.device, settings, output, args.cpus_per_worker if args.workers != 0 else None)
    events = None
    try:
        # Ray prints worker-death notices on stdout, which is for the JSON lines
        with STOP.polled(), contextlib.redirect_stdout(sys.stderr):
            if todo and args.workers == 0:
                events = run_in_process(todo, job, STOP)
            elif todo:
                try:
                    from .cohort_ray import run_on_ray
                except ModuleNotFoundError as error:
                    if error.name != "ray":
                        raise
                    raise LDSegError("Ray is not installed: pip install 'ldseg[cohort]', or run in this process "
                                     "with --workers 0.") from None
                events = run_on_ray(todo, job, args.workers, args.address, STOP, progress.note)
            for event in events or ():
                if event[0] == "finished":
                    rows[event[1]["case_id"]] = event[1]
                    progress.finished(event[1])
                else:
                    progress.event(*event)
    except (CancelledError, KeyboardInterrupt):
        raise CancelledError(
            f"Cohort interrupted: the {sum(r['status'] != 'failed' for r in rows.values())} cases finished are kept; "
            "run the same command again to segment the rest."
        ) from None
    finally:
        if events is not None:
            events.close()  # stops the workers before their staging folders go
        remove_staging(output)
        progress.close()
    ordered = [rows[case.case_id] for case in cases]
    report = write_report(output, ordered, card, settings, args.review_top, args.review_threshold)
    failed = sum(row["status"] == "failed" for row in ordered)
    progress.done(report, failed, time.perf_counter() - started)
    return 1 if failed else 0


def _check_options(args) -> None:
    if args.workers is not None and args.workers < 0:
        raise LDSegError(f"--workers must be 0 (run in this process) or more (got {args.workers}).")
    if args.cpus_per_worker < 1:
        raise LDSegError(f"--cpus-per-worker must be at least 1 (got {args.cpus_per_worker}).")
    if not 0 <= args.review_top <= 100:
        raise LDSegError(f"--review-top is a percentage of the cohort, 0 to 100 (got {args.review_top:g}).")


class CohortProgress:
    """A bar on stderr (cases done, failed, rate, ETA) or JSON lines on stdout."""

    def __init__(self, mode: str, total: int) -> None:
        self.mode, self.total, self.count, self.failed = mode, total, 0, 0
        self.stream, self.bar = sys.stdout, None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="case", file=sys.stderr, dynamic_ncols=True)

    def _emit(self, record: dict) -> None:
        if self.mode == "jsonl":
            print(json.dumps(record), file=self.stream, flush=True)

    def note(self, message: str) -> None:
        self._emit({"event": "note", "message": message})
        if self.bar is not None:
            self.bar.write(message)

    def event(self, kind: str, case: Case, detail: str) -> None:
        key = "worker" if kind == "started" else "reason"
        self._emit({"event": kind, "case_id": case.case_id, key: detail})
        if kind == "retry" and self.bar is not None:
            self.bar.write(f"{case.case_id}: {detail}; retrying")

    def finished(self, row: dict) -> None:
        self.count += 1
        self.failed += row["status"] == "failed"
        self._emit({"event": "case", "case_id": row["case_id"], "status": row["status"], "error": row["error"],
                    "done": self.count, "total": self.total})
        if self.bar is not None:
            if row["status"] == "failed":
                self.bar.write(f"{row['case_id']}: failed: {row['error']}")
            self.bar.set_postfix(failed=self.failed, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def done(self, report: Path, failed: int, seconds: float) -> None:
        self._emit({"event": "done", "report": str(report), "cases": self.total, "failed": failed,
                    "seconds": round(seconds, 2)})
        if self.mode == "bar":
            print(f"{self.total} cases, {failed} failed, {seconds:.0f} s. Report: {report}", file=self.stream)
