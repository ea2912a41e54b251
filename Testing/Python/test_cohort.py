"""`ldseg cohort` with the bundled model on real, downsampled knees: real subprocesses, a real local Ray
cluster (workers killed with SIGKILL, the driver interrupted with SIGINT) and the report opened in
a real headless Chromium.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pydicom
import pytest
import SimpleITK as sitk
from conftest import REPO
from dicom_factory import write_mr_series

from ldseg.cohort import Case, finished_row, find_cases, read_manifest
from ldseg.errors import LDSegError
from ldseg.settings import SegmentSettings

SETTINGS = ("--samples", "2")
SEGMENT_FILES = {"knee.seg.nrrd", "knee-uncertainty.nrrd", "knee.json", "knee-qc.png"}
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO / "Resources" / "Screenshots" / "cohort-report.png"


def ldseg(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ldseg.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, **kwargs)


def start(*args) -> subprocess.Popen:
    """A cohort in the background; killed after 5 minutes so that a hang fails the test instead of blocking it."""
    process = subprocess.Popen([sys.executable, "-m", "ldseg.cli", *map(str, args)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=REPO)
    watchdog = threading.Timer(300, process.kill)
    watchdog.daemon = True
    watchdog.start()
    return process


def events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def small_knee(data_dir: Path, case: str) -> sitk.Image:
    return sitk.Shrink(sitk.ReadImage(str(data_dir / "images" / f"{case}.nii.gz"), sitk.sitkFloat32), [3] * 3)


def knee_folder(data_dir: Path, folder: Path, cases: list[str]) -> Path:
    """One downsampled real knee per subject folder: <folder>/<case>/knee.nii.gz."""
    for case in cases:
        (folder / case).mkdir(parents=True)
        sitk.WriteImage(small_knee(data_dir, case), str(folder / case / "knee.nii.gz"))
    return folder


def leftovers(output: Path) -> list[str]:
    return [path.name for path in output.iterdir() if path.name.startswith(".")]


@pytest.fixture(scope="module")
def mixed_tree(data_dir, tmp_path_factory) -> Path:
    """Three good cases (NIfTI, NRRD, DICOM series) and three bad ones (truncated, 2D, broken series)."""
    root = tmp_path_factory.mktemp("cohort-input")
    for folder in ("s1", "s2", "s3/series", "bad"):
        (root / folder).mkdir(parents=True)
    sitk.WriteImage(small_knee(data_dir, "knee1"), str(root / "s1" / "knee.nii.gz"))
    sitk.WriteImage(small_knee(data_dir, "knee2"), str(root / "s2" / "knee.nrrd"))
    write_mr_series(small_knee(data_dir, "knee3"), root / "s3" / "series")
    data = (root / "s1" / "knee.nii.gz").read_bytes()
    (root / "bad" / "truncated.nii.gz").write_bytes(data[: len(data) // 3])
    sitk.WriteImage(sitk.Image(64, 64, sitk.sitkFloat32) + 1.0, str(root / "bad" / "slice.nii.gz"))
    broken = root / "bad" / "series"
    first = sorted(write_mr_series(small_knee(data_dir, "knee4"), broken))[0]
    dataset = pydicom.dcmread(first)
    del dataset.ImagePositionPatient
    dataset.save_as(first)
    return root


@pytest.fixture(scope="module")
def cohort_run(mixed_tree, tmp_path_factory):
    """The mixed tree segmented in-process (--workers 0), in a fresh interpreter that must not import Ray."""
    output = tmp_path_factory.mktemp("cohort-output")
    code = ("import sys; from ldseg.cli import main; code = main(sys.argv[1:]); "
            "assert 'ray' not in sys.modules, 'ray was imported'; sys.exit(code)")
    result = subprocess.run(
        [sys.executable, "-c", code, "cohort", str(mixed_tree), "-o", str(output), "--workers", "0", *SETTINGS,
         "--progress", "jsonl"], capture_output=True, text=True, cwd=REPO,
    )
    return output, result


def rows_of(output: Path) -> dict[str, dict]:
    with (output / "cohort.csv").open(newline="") as stream:
        return {row["case_id"]: row for row in csv.DictReader(stream)}


def test_bad_cases_fail_alone_with_one_line_errors_and_the_exit_status_says_so(cohort_run):
    output, result = cohort_run
    assert result.returncode == 1, result.stderr
    rows = rows_of(output)
    assert {case: row["status"] for case, row in rows.items()} == {
        "s1_knee": "done", "s2_knee": "done", "s3_series": "done",
        "bad_truncated": "failed", "bad_slice": "failed", "bad_series": "failed",
    }
    assert "truncated" in rows["bad_truncated"]["error"]
    assert "2D image" in rows["bad_slice"]["error"]
    assert "ImagePositionPatient" in rows["bad_series"]["error"]
    for case in ("bad_truncated", "bad_slice", "bad_series"):
        assert "\n" not in rows[case]["error"] and not (output / case).exists()
    assert leftovers(output) == []
    done = [e for e in events(result.stdout) if e["event"] == "case"]
    assert [e["done"] for e in done] == list(range(1, 7)) and events(result.stdout)[-1]["failed"] == 3


def test_each_case_holds_exactly_what_ldseg_segment_writes(cohort_run, mixed_tree, tmp_path):
    output, _ = cohort_run
    for case in ("s1_knee", "s2_knee"):
        assert {path.name for path in (output / case).iterdir()} == SEGMENT_FILES
    assert ldseg("segment", mixed_tree / "s1" / "knee.nii.gz", "-o", tmp_path, *SETTINGS, "--progress", "none").returncode == 0
    cohort_labels = sitk.GetArrayFromImage(sitk.ReadImage(str(output / "s1_knee" / "knee.seg.nrrd")))
    segment_labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "knee.seg.nrrd")))
    assert (cohort_labels == segment_labels).all() and cohort_labels.any()
    cohort_summary = json.loads((output / "s1_knee" / "knee.json").read_text())
    segment_summary = json.loads((tmp_path / "knee.json").read_text())
    assert cohort_summary["structures"] == segment_summary["structures"]
    assert cohort_summary["settings"] == segment_summary["settings"]


def test_csv_and_parquet_rows_carry_the_figures_of_each_summary(cohort_run):
    output, _ = cohort_run
    rows = rows_of(output)
    summary = json.loads((output / "s2_knee" / "knee.json").read_text())
    row = rows["s2_knee"]
    assert float(row["Femur_volume_ml"]) == summary["structures"]["Femur"]["volume_ml"] > 100
    assert float(row["Tibia_sample_agreement"]) == pytest.approx(summary["structures"]["Tibia"]["mean_pairwise_dice"], abs=1e-5)
    assert float(row["uncertain_volume_ml"]) == summary["cohort"]["uncertain_volume_ml"] > 0
    assert row["device"] == "cpu" and row["model_version"] == summary["model"]["version"]
    flagged = [case for case, row in rows.items() if row["review"] == "yes"]
    top = max((r for r in rows.values() if r["status"] == "done"), key=lambda r: float(r["sample_disagreement"]))
    assert float(top["sample_disagreement"]) == pytest.approx(1 - (float(top["Femur_sample_agreement"])
                                                                    + float(top["Tibia_sample_agreement"])) / 2, abs=2e-5)
    assert flagged == [top["case_id"]]  # top 10 % of three cases: the most uncertain one
    pyarrow_parquet = pytest.importorskip("pyarrow.parquet")
    table = pyarrow_parquet.read_table(output / "cohort.parquet").to_pylist()
    assert [r["case_id"] for r in table] == list(rows)
    parquet = {r["case_id"]: r for r in table}
    assert parquet["s1_knee"]["Femur_volume_ml"] == float(rows["s1_knee"]["Femur_volume_ml"])


def test_a_second_run_reuses_every_finished_case_and_retries_the_failed(cohort_run, mixed_tree):
    output, _ = cohort_run
    stamps = {path: path.stat().st_mtime_ns for path in output.glob("s*_*/*")}
    result = ldseg("cohort", mixed_tree, "-o", output, "--workers", "0", *SETTINGS, "--progress", "jsonl")
    assert result.returncode == 1
    statuses = {e["case_id"]: e["status"] for e in events(result.stdout) if e["event"] == "case"}
    assert statuses == {"s1_knee": "skipped", "s2_knee": "skipped", "s3_series": "skipped",
                        "bad_truncated": "failed", "bad_slice": "failed", "bad_series": "failed"}
    assert {path: path.stat().st_mtime_ns for path in output.glob("s*_*/*")} == stamps


def test_other_settings_or_another_model_are_not_reused(cohort_run):
    output, _ = cohort_run
    summary = json.loads((output / "s1_knee" / "knee.json").read_text())
    case = Case("s1_knee", Path(summary["input"]))
    sha = summary["model"]["weights_sha256"]
    assert finished_row(case, output, sha, SegmentSettings(samples=2, steps=2))["status"] == "skipped"
    assert finished_row(case, output, sha, SegmentSettings(samples=3, steps=2)) is None
    assert finished_row(case, output, "0" * 64, SegmentSettings(samples=2, steps=2)) is None
    assert finished_row(Case("s1_knee", Path("/elsewhere/knee.nii.gz")), output, sha, SegmentSettings(samples=2, steps=2)) is None


def test_a_killed_ray_worker_has_its_case_retried_and_completed(data_dir, tmp_path):
    source = knee_folder(data_dir, tmp_path / "in", ["knee1", "knee2"])
    output = tmp_path / "out"
    process = start("cohort", source, "-o", output, "--workers", "2", *SETTINGS, "--progress", "jsonl")
    seen, killed = [], None
    for line in process.stdout:
        seen.append(json.loads(line))
        if seen[-1]["event"] == "started" and killed is None:
            killed = seen[-1]
            os.kill(int(killed["worker"].rsplit("pid ", 1)[1]), signal.SIGKILL)
    assert process.wait(timeout=300) == 0, process.stderr.read()
    retries = [e for e in seen if e["event"] == "retry"]
    assert [e["case_id"] for e in retries] == [killed["case_id"]] and "died" in retries[0]["reason"]
    starts = [e for e in seen if e["event"] == "started" and e["case_id"] == killed["case_id"]]
    assert len(starts) == 2 and starts[1]["worker"] != killed["worker"]
    assert {e["case_id"]: e["status"] for e in seen if e["event"] == "case"} == {"knee1_knee": "done", "knee2_knee": "done"}
    assert {path.name for path in (output / killed["case_id"]).iterdir()} == SEGMENT_FILES
    assert leftovers(output) == []


def test_an_interrupted_ray_cohort_resumes_and_redoes_nothing_done(data_dir, tmp_path):
    source = knee_folder(data_dir, tmp_path / "in", ["knee1", "knee2", "knee3"])
    output = tmp_path / "out"
    # one worker: when the first case is done the second may still finish, the third has not started
    process = start("cohort", source, "-o", output, "--workers", "1", *SETTINGS, "--progress", "jsonl")
    for line in process.stdout:
        if json.loads(line)["event"] == "case":
            process.send_signal(signal.SIGINT)
            break
    assert process.wait(timeout=120) == 130
    assert "run the same command again" in process.stderr.read()
    assert leftovers(output) == []
    finished = sorted(path.name for path in output.iterdir())
    assert 1 <= len(finished) < 3
    stamps = {path: path.stat().st_mtime_ns for path in output.glob("*/*")}
    result = ldseg("cohort", source, "-o", output, "--workers", "0", *SETTINGS, "--progress", "jsonl")
    assert result.returncode == 0, result.stderr
    statuses = {e["case_id"]: e["status"] for e in events(result.stdout) if e["event"] == "case"}
    assert {case for case, status in statuses.items() if status == "skipped"} == set(finished)
    assert {case for case, status in statuses.items() if status == "done"} == {
        f"{case}_knee" for case in ("knee1", "knee2", "knee3")} - set(finished)
    assert {path: path.stat().st_mtime_ns for path in output.glob("*/*") if path in stamps} == stamps


def test_the_report_opens_from_disk_in_chromium_ranked_with_pictures_and_flags(cohort_run, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); .ci/run installs it")
    playwright = pytest.importorskip("playwright.sync_api")
    output, _ = cohort_run
    requests = []
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("request", lambda request: requests.append(request.url))
        page.goto((output / "report.html").as_uri())
        page.wait_for_load_state("load")
        cases = page.eval_on_selector_all("#cases tr[data-case]", "rows => rows.map(r => [r.dataset.case, "
                                          "+r.dataset.score, r.classList.contains('review')])")
        pictures = page.eval_on_selector_all("img", "images => images.map(i => [i.alt, i.complete && i.naturalWidth])")
        failed = page.inner_text("#failed")
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert sorted(case for case, _, _ in cases) == ["s1_knee", "s2_knee", "s3_series"]
    scores = [score for _, score, _ in cases]
    assert scores == sorted(scores, reverse=True) and [flag for _, _, flag in cases] == [True, False, False]
    assert len(pictures) == 4 and all(width > 0 for _, width in pictures), pictures  # 3 QC pictures + histograms
    assert "bad_truncated" in failed and "2D image" in failed and "ImagePositionPatient" in failed
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    if os.environ.get("LDSEG_UPDATE_SCREENSHOTS"):
        shutil.copyfile(shot, SCREENSHOT)


def test_folder_trees_give_one_case_per_volume_or_dicom_folder(mixed_tree, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.nii.gz").write_bytes(b"")
    (tmp_path / ".hidden.nii.gz").write_bytes(b"")
    (tmp_path / "a b").mkdir()
    (tmp_path / "a b" / "knee.seg.nrrd").write_bytes(b"")
    (tmp_path / "a b" / "knee 1.mha").write_bytes(b"")
    assert find_cases(tmp_path, tmp_path / "out") == [Case("a_b_knee_1", tmp_path / "a b" / "knee 1.mha")]
    cases = find_cases(mixed_tree, tmp_path)
    assert [case.case_id for case in cases][-1] == "s3_series" and cases[-1].path == mixed_tree / "s3" / "series"
    (tmp_path / "a b" / "knee 1.nii").write_bytes(b"")
    with pytest.raises(LDSegError, match="same case id 'a_b_knee_1'"):
        find_cases(tmp_path, tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LDSegError, match="No volumes found"):
        find_cases(tmp_path / "empty", tmp_path)


@pytest.mark.parametrize(("text", "message"), [
    ("case_id,path\nk1,images/k1.nii.gz\nk2,/data/k2\n", None),
    ("id,path\nk1,a.nii.gz\n", "missing: case_id"),
    ("case_id,path\n", "it has no rows"),
    ("case_id,path\n../up,a.nii.gz\n", "line 2: case id '../up' is not a safe folder name"),
    ("case_id,path\nk1,a.nii.gz\nk1,b.nii.gz\n", "same case id 'k1'"),
    ("case_id,path\nk1,\n", "line 2: case k1 has no path"),
])
def test_manifests_are_checked_row_by_row(tmp_path, text, message):
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(text)
    if message is None:
        assert read_manifest(manifest) == [Case("k1", tmp_path / "images" / "k1.nii.gz"), Case("k2", Path("/data/k2"))]
    else:
        with pytest.raises(LDSegError, match=message.replace("(", r"\(").replace(".", r"\.")):
            read_manifest(manifest)


def test_a_manifest_picks_a_dicom_series_by_uid(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,path,series_uid\nk1,dicom,1.2.3\n")
    assert read_manifest(manifest) == [Case("k1", tmp_path / "dicom", "1.2.3")]


@pytest.mark.parametrize(("option", "message"), [
    (("--workers", "-1"), "--workers must be 0"),
    (("--cpus-per-worker", "0"), "--cpus-per-worker must be at least 1"),
    (("--review-top", "150"), "--review-top is a percentage"),
])
def test_bad_cohort_options_are_one_line_errors(tmp_path, option, message):
    result = ldseg("cohort", tmp_path, "-o", tmp_path / "out", *option)
    assert result.returncode == 1 and result.stderr.startswith("ldseg: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_without_ray_the_error_says_how_to_get_it_or_run_in_process(mixed_tree, tmp_path):
    code = "import sys; sys.modules['ray'] = None; from ldseg.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run([sys.executable, "-c", code, "cohort", str(mixed_tree), "-o", str(tmp_path), "--progress",
                             "none"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1
    assert result.stderr.strip() == "ldseg: Ray is not installed: pip install 'ldseg[cohort]', or run in this process with --workers 0."
