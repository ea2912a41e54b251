"""The `ldseg` command line: segment, train, evaluate, models.

User errors (LDSegError) print one line and exit with status 1; a cancelled run (Ctrl+C or
SIGTERM, as the Slicer panel sends) exits with 130 and leaves no output files (training leaves a
checkpoint to resume from). Any other failure is a bug or an input nobody foresaw: it also prints one
line, with a hint to rerun with --debug for the traceback.
With `--progress jsonl`, `segment` prints machine-readable JSON lines on stdout for the Slicer panel.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from . import __version__
from .errors import CancelledError, LDSegError
from .interrupt import STOP
from .settings import DEFAULT_NOISE_SIGMAS, SegmentSettings, SettingError

EXIT_ERROR, EXIT_CANCELLED = 1, 130


def build_parser() -> argparse.ArgumentParser:
    from .choices import BAND_THRESHOLD, DEVICES, FUSION_METHODS, MAX_SAMPLES, UNCERTAINTY_MEASURES
    from .store import DEFAULT_MODEL

    defaults = SegmentSettings()

    parser = argparse.ArgumentParser(prog="ldseg", description="LDSeg latent-diffusion segmentation of knee MRI.")
    parser.add_argument("--version", action="version", version=f"ldseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    parser.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                        help="raise a resource limit for this run, e.g. max_voxels=400000000 (see docs/security.md)")
    commands = parser.add_subparsers(dest="command", required=True)

    segment = commands.add_parser("segment", help="segment a volume: fused labels, uncertainty, summary, QC picture")
    source = segment.add_mutually_exclusive_group(required=True)
    source.add_argument("input", nargs="?", help="NIfTI, NRRD or MHA file, or a DICOM series folder")
    source.add_argument("--sample", action="store_true", help="segment the public sample knee case (fetched once)")
    segment.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    segment.add_argument("--model", default=DEFAULT_MODEL, help=f"model name or folder (default {DEFAULT_MODEL})")
    segment.add_argument("--samples", type=int, help=f"posterior samples N, 1..{MAX_SAMPLES} (default: model card, 8)")
    segment.add_argument("--steps", type=int, help="DDIM steps k (default: model card, 2)")
    segment.add_argument("--fusion", default=defaults.fusion, choices=FUSION_METHODS)
    segment.add_argument("--uncertainty", default=defaults.uncertainty, choices=UNCERTAINTY_MEASURES)
    segment.add_argument("--device", default="auto", choices=DEVICES)
    segment.add_argument("--seed", type=int, default=defaults.seed, help=f"seed of the noise draws (default {defaults.seed})")
    segment.add_argument("--chunk-size", type=int, default=defaults.chunk_size,
                         help="samples per batch (halved on GPU out-of-memory)")
    segment.add_argument("--save-samples", action="store_true", help="also write each sample as .seg.nrrd")
    segment.add_argument("--all-components", action="store_true",
                         help="keep every connected piece of a structure (default: only the largest, which drops stray islands)")
    segment.add_argument("--progress", default="bar", choices=("bar", "jsonl", "none"))
    segment.add_argument("--series-uid", help="DICOM SeriesInstanceUID when the folder holds several series")
    segment.add_argument("--dicom-seg", action="store_true", help="also write a DICOM SEG (DICOM input only)")
    segment.add_argument("--dicom-probability", action="store_true", help="also write a FRACTIONAL probability SEG")
    segment.add_argument("--dicom-uncertainty", action="store_true", help="also write the uncertainty as a Parametric Map")

    cohort = commands.add_parser(
        "cohort", help="segment a cohort (folder tree or CSV manifest) on Ray; cohort.csv and report.html ranked by uncertainty"
    )
    cohort.add_argument("input", type=Path, help="folder of NIfTI/NRRD/MHA files and DICOM series folders, or a CSV "
                        "manifest with columns case_id, path[, series_uid]")
    cohort.add_argument("-o", "--output", required=True, type=Path, help="output folder: one folder per case, the report")
    cohort.add_argument("--workers", type=int, help="Ray workers (default: one per GPU, else one per CPU slot); "
                        "0 runs the cases in this process without Ray")
    cohort.add_argument("--address", help="join a running Ray cluster (auto, ray://HEAD:10001); default: start one here")
    cohort.add_argument("--cpus-per-worker", type=int, default=1, help="CPU threads per worker (default 1)")
    cohort.add_argument("--review-top", type=float, default=10.0,
                        help="flag this percentage of cases with the highest sample disagreement for review (default 10)")
    cohort.add_argument("--review-threshold", type=float,
                        help="flag cases whose sample disagreement (1 - mean pairwise Dice) is at least this value (instead of --review-top)")
    # the segment command's own option objects, as argparse's parents= shares them: defined once
    for option in ("--model", "--samples", "--steps", "--fusion", "--uncertainty", "--device", "--seed", "--chunk-size",
                   "--save-samples", "--all-components"):
        action = next(a for a in segment._actions if option in a.option_strings)
        cohort._add_action(action)
    cohort.add_argument("--progress", default="bar", choices=("bar", "jsonl", "none"))

    train = commands.add_parser(
        "train", help="train an LDSeg model (or, with model_type: baseline, the UNet baseline) from a YAML or TOML config"
    )
    train.add_argument("config", type=Path)

    evaluate = commands.add_parser("evaluate", help="Dice, HD95, ASSD, uncertainty quality and robustness")
    evaluate.add_argument("model", help="model name or folder")
    evaluate.add_argument("data_dir", type=Path, help="folder with images/ and labels/")
    evaluate.add_argument("-o", "--output", type=Path, default=Path("evaluation"), help="folder for JSON and Markdown")
    evaluate.add_argument("--cases", nargs="*", default=(), help="case names (default: all)")
    evaluate.add_argument("--samples", type=int, help="posterior samples N of an LDSeg model (default: model card)")
    evaluate.add_argument("--steps", type=int, help="DDIM steps k of an LDSeg model (default: model card)")
    evaluate.add_argument("--noise", type=float, nargs="*", default=DEFAULT_NOISE_SIGMAS,
                          help="Gaussian noise sigmas added to the [0, 1]-scaled image")
    evaluate.add_argument("--device", default="auto", choices=DEVICES)
    evaluate.add_argument("--band-threshold", type=float, default=BAND_THRESHOLD,
                          help="uncertainty at or above which a voxel is in the band (default %(default)s nats of entropy)")

    models = commands.add_parser("models", help="list installed models or import one")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    models_commands.add_parser("list", help="models bundled and in the user cache")
    imported = models_commands.add_parser("import", help="import a model folder, .zip or URL into the user cache")
    imported.add_argument("source")
    imported.add_argument("--sha256", help="required for URLs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    jsonl = getattr(args, "progress", None) == "jsonl"
    STOP.requested = False
    STOP.install()
    if not args.debug:  # the contract is one line on stderr; libraries' warnings go with --debug
        warnings.simplefilter("ignore")
        logging.disable(logging.ERROR)
    try:
        from .limits import raise_limits

        raise_limits(args.limit)
        if args.command == "segment":
            return run_segment(args)
        if args.command == "cohort":
            from .cohort import run_cohort

            return run_cohort(args)
        if args.command == "train":
            from .baseline import train_from_config

            card = train_from_config(args.config)
            print(f"Model package written: {card.name} {card.version}, weights SHA-256 {card.weights_sha256}")
        elif args.command == "evaluate":
            from .evaluation import run_evaluation

            run_evaluation(args.model, args.data_dir, args.output, tuple(args.cases),
                           _checked(SegmentSettings(samples=args.samples, steps=args.steps)), tuple(args.noise), args.device,
                           args.band_threshold)
        elif args.command == "models":
            return run_models(args)
        return 0
    except CancelledError as error:
        _report_error(str(error), jsonl, "cancelled")
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        _report_error("Interrupted by the user; no output was written.", jsonl, "cancelled")
        return EXIT_CANCELLED
    except LDSegError as error:
        _report_error(str(error), jsonl, "error")
        return EXIT_ERROR
    except Exception as error:  # the last resort: one line, the traceback only on request
        if args.debug:
            raise
        _report_error(unexpected_error_message(error), jsonl, "error")
        return EXIT_ERROR


def unexpected_error_message(error: BaseException) -> str:
    """One line for a failure no check foresaw: what happened, and how to see more."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" while writing {error.filename}" if error.filename else ""
        return f"The disk is full{where}; nothing was written. Free some space and run again."
    if isinstance(error, MemoryError):
        return "Out of memory; nothing was written. Close other programs or use a smaller image, then run again."
    text = " ".join(str(error).split()) or "no message"
    if isinstance(error, RuntimeError) and "No space left on device" in text:
        return "The disk is full; nothing was written. Free some space and run again."
    return (f"Unexpected error ({type(error).__name__}: {text[:300]}). "
            "Rerun with 'ldseg --debug ...' for the traceback and report it.")


def run_segment(args: argparse.Namespace) -> int:
    from .imageio import output_directory

    if args.series_uid and args.input and not Path(args.input).is_dir():
        raise LDSegError("--series-uid picks a series in a DICOM folder; the input is a file, not a folder.")
    with output_directory(args.output) as output:
        return _segment(args, output)


def _segment(args: argparse.Namespace, output: Path) -> int:
    import SimpleITK as sitk

    from .imageio import case_name, read_image
    from .inference import Segmenter, select_device
    from .outputs import write_outputs
    from .package import load_package
    from .sample_data import sample_case
    from .store import resolve_model

    input_path = sample_case() if args.sample else Path(args.input)
    name = case_name(input_path)
    dicom_series = None
    if input_path.is_dir():
        from .dicom_input import read_dicom_series

        dicom_series = read_dicom_series(input_path, args.series_uid)
        if args.dicom_seg or args.dicom_probability or args.dicom_uncertainty:
            from .dicom_seg import check_source

            check_source(dicom_series)  # refuse now, not after minutes of sampling
        image = sitk.Cast(dicom_series.image, sitk.sitkFloat32)
    else:
        if args.dicom_seg or args.dicom_probability or args.dicom_uncertainty:
            raise LDSegError("DICOM SEG export needs a DICOM series as input (a folder), not an image file.")
        image = read_image(input_path)

    device = select_device(args.device)
    package = load_package(resolve_model(args.model), device)
    settings = segment_settings(args)
    progress = _JsonlProgress() if args.progress == "jsonl" else _BarProgress() if args.progress == "bar" else None
    started = time.perf_counter()
    try:
        with STOP.polled():
            result = Segmenter(package, device).segment(image, settings, progress, STOP, name=input_path.name)
    finally:
        if isinstance(progress, _BarProgress):
            progress.close()
    _emit(progress, "Writing results", 1.0)
    dicom_files = _dicom_writers(args, result, dicom_series, name) if dicom_series is not None else {}
    files = write_outputs(result, image, output, name, str(input_path), dicom_files)
    seconds = time.perf_counter() - started
    summary_path = output / files["summary"]
    if args.progress == "jsonl":
        print(json.dumps({"event": "done", "summary": str(summary_path), "seconds": round(seconds, 2)}), flush=True)
    elif args.progress == "bar":
        _print_result(result, output, files, seconds)
    return 0


def segment_settings(args: argparse.Namespace) -> SegmentSettings:
    """The settings that `ldseg segment`'s options say, checked (the message names the option); unset
    --samples/--steps stay unset (the card's)."""
    settings = SegmentSettings(
        samples=args.samples, steps=args.steps, fusion=args.fusion, uncertainty=args.uncertainty, seed=args.seed,
        chunk_size=args.chunk_size, keep_samples=args.save_samples, largest_component=not args.all_components,
    )
    return _checked(settings)


def _checked(settings: SegmentSettings) -> SegmentSettings:
    try:
        settings.validate()
    except SettingError as error:
        raise LDSegError(f"--{error.field.replace('_', '-')}: {error}") from None
    return settings


def _dicom_writers(args, result, series, name: str) -> dict:
    """DICOM outputs asked for on the command line, as (file name, writer) for write_outputs."""
    from . import dicom_seg
    from .outputs import case_file_names

    names = case_file_names(name)
    writers = {}
    if args.dicom_seg:
        writers["dicom_seg"] = (
            names["dicom_seg"], lambda path: dicom_seg.write_dicom_seg(result.labels, series, result.card, path)
        )
    if args.dicom_probability:
        writers["dicom_probability"] = (
            names["dicom_probability"],
            lambda path: dicom_seg.write_probability_seg(result.mean_probability, series, result.card, path),
        )
    if args.dicom_uncertainty:
        writers["dicom_uncertainty"] = (
            names["dicom_uncertainty"],
            lambda path: dicom_seg.write_uncertainty_parametric_map(
                result.uncertainty, series, result.card, result.settings.uncertainty, path
            ),
        )
    return writers


def run_models(args: argparse.Namespace) -> int:
    from .store import import_model, list_models

    if args.models_command == "list":
        for model in list_models():
            print(f"{model.name}\t{model.version}\t{model.source}\t{model.directory}")
    else:
        model = import_model(args.source, args.sha256)
        print(f"Imported {model.name} {model.version} into {model.directory}")
    return 0


def _print_result(result, output: Path, files: dict[str, str], seconds: float) -> None:
    print(f"LDSeg {result.card.name} {result.card.version} on {result.device}: "
          f"{result.settings.samples} samples, {result.settings.steps} DDIM steps, {seconds:.1f} s")
    for structure, figures in result.structures.items():
        print(f"  {structure}: {figures.volume_ml:.1f} mL, mean {result.settings.uncertainty} "
              f"{figures.mean_uncertainty:.3f}, sample agreement (mean pairwise Dice) {figures.mean_pairwise_dice:.3f}")
    for kind, file in files.items():
        print(f"  {kind}: {output / file}")


class _JsonlProgress:
    def __call__(self, stage: str, fraction: float) -> None:
        print(json.dumps({"event": "progress", "stage": stage, "fraction": round(fraction, 4)}), flush=True)


class _BarProgress:
    """A terminal progress bar with the current stage, on stderr."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=100, unit="%", file=sys.stderr, bar_format="{desc:<22}|{bar}| {n:.0f}% [{elapsed}]")

    def __call__(self, stage: str, fraction: float) -> None:
        self.bar.set_description_str(stage)
        self.bar.n = fraction * 100
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _emit(progress, stage: str, fraction: float) -> None:
    if isinstance(progress, _JsonlProgress):
        progress(stage, fraction)


def _report_error(message: str, jsonl: bool, event: str) -> None:
    message = printable(message)
    if jsonl:
        print(json.dumps({"event": event, "message": message}), flush=True)
    print(f"ldseg: {message}", file=sys.stderr)


def printable(text: str) -> str:
    """Text from files (names, DICOM headers) escaped so that it cannot drive the terminal."""
    return "".join(c if c == "\n" or c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def run() -> None:
    """The `ldseg` program: main(), then its exit status.

    A cancelled run leaves through os._exit: when the signal landed inside a module import, CPython
    would otherwise end the process by SIGINT at exit, even though main() handled it and said so.
    """
    with _native_diagnostics_hidden("--debug" not in sys.argv[1:]):
        code = main()
    if code == EXIT_CANCELLED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


@contextlib.contextmanager
def _native_diagnostics_hidden(hide: bool):
    """Libraries written in C++ (ITK, MetaIO, GDCM) print diagnostics straight to file descriptor 2,
    beside our one line; they go to the null device, unless --debug asks to see everything."""
    if not hide:
        yield
        return
    sys.stderr.flush()
    original = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    sys.stderr = open(original, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)
        os.close(original)
        sys.stderr = sys.__stderr__


if __name__ == "__main__":
    run()
