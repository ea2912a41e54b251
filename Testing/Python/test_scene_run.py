"""A whole run in a background process (a stand-in engine with the real command line's protocol):
progress events, import on success, clear errors, and a cancel that kills the process tree and
leaves the scene as it was."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from scene_fixtures import make_slicer_scene, write_input_image

slicer = pytest.importorskip("slicer")

from LDSegLib import process  # noqa: E402
from LDSegLib.run import RunError, RunSlot, SegmentationRun  # noqa: E402
from ldseg import cli  # noqa: E402
from ldseg.settings import RunSettings, SegmentSettings  # noqa: E402
from ldseg.store import DEFAULT_MODEL  # noqa: E402

TESTING_DIRECTORY = Path(__file__).resolve().parent


def fake_engine_environment(mode, **extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTING_DIRECTORY), env.get("PYTHONPATH", "")])
    env["FAKE_LDSEG_MODE"] = mode
    env.update(extra)
    return env


def make_run(app, volume, mode, save_samples=False, **extra):
    return SegmentationRun(
        app.scene,
        volume,
        RunSettings(segment=SegmentSettings(samples=3, keep_samples=save_samples)),
        sequences_logic=app.sequences_logic,
        engine_module="fake_ldseg_cli",
        environment=fake_engine_environment(mode, **extra),
        python=sys.executable,
    )


def scene_snapshot(scene):
    return sorted((scene.GetNthNode(i).GetID(), scene.GetNthNode(i).GetName()) for i in range(scene.GetNumberOfNodes()))


@pytest.fixture
def case(tmp_path):
    app = make_slicer_scene()
    return app, app.load_volume(write_input_image(tmp_path), "knee 1")


@pytest.mark.parametrize("settings", [
    RunSettings(model="ldseg-knee", device="cpu", segment=SegmentSettings(
        samples=4, steps=3, fusion="staple", uncertainty="variance", seed=7, chunk_size=2, keep_samples=True,
        largest_component=False)),
    RunSettings(),  # unset samples and steps: the engine takes the model card's
])
def test_the_command_line_the_panel_runs_says_exactly_its_settings(settings):
    """The engine's own parser reads back the very settings the panel asked for."""
    command = process.segment_command(Path("in.nrrd"), Path("out"), settings.cli_options(), python="py")
    assert command[:9] == ["py", "-m", "ldseg.cli", "segment", "in.nrrd", "-o", "out", "--progress", "jsonl"]
    args = cli.build_parser().parse_args(command[3:])
    assert cli.segment_settings(args) == settings.segment
    assert (args.model, args.device) == (settings.model or DEFAULT_MODEL, settings.device)


def test_a_successful_run_reports_progress_and_imports_the_result(case):
    app, volume = case
    run = make_run(app, volume, "ok", save_samples=True)
    run.start()
    state = run.wait(timeout=60)
    assert state.finished and state.error is None, state.error
    stages = [event.stage for event in state.events if isinstance(event, process.Progress)]
    assert stages == ["Loading model", "Sampling", "Writing results"]
    assert state.result.segmentation.GetSegmentation().GetNumberOfSegments() == 2
    assert state.result.samples_browser.GetMasterSequenceNode().GetNumberOfDataNodes() == 3
    assert state.seconds == pytest.approx(4.2)
    assert not run._workdir.exists()  # temporary files are removed


def test_an_engine_error_message_reaches_the_user_and_the_scene_is_unchanged(case):
    app, volume = case
    before = scene_snapshot(app.scene)
    run = make_run(app, volume, "error")
    run.start()
    state = run.wait(timeout=60)
    assert state.error == "The input is not a knee MRI."
    assert scene_snapshot(app.scene) == before


def test_a_crash_is_reported_with_the_engine_output(case):
    app, volume = case
    run = make_run(app, volume, "crash")
    run.start()
    state = run.wait(timeout=60)
    assert "exit code 3" in state.error and "CUDA out of memory" in state.error


def test_cancel_kills_the_process_tree_and_leaves_the_scene_unchanged(case, tmp_path):
    app, volume = case
    before = scene_snapshot(app.scene)
    child_pid_file = tmp_path / "child.pid"
    run = make_run(app, volume, "slow", FAKE_LDSEG_CHILD_PID_FILE=str(child_pid_file))
    run.start()
    deadline = time.monotonic() + 30
    while run.poll().stage != "Sampling":
        assert time.monotonic() < deadline, "the engine never reported progress"
        time.sleep(0.05)
    engine_pid, child_pid = run._process.pid, int(child_pid_file.read_text())
    started = time.monotonic()
    run.cancel()
    state = run.wait(timeout=30)
    assert time.monotonic() - started < 10
    assert state.finished and state.cancelled and state.error is None and state.stage == "Cancelled"
    for pid in (engine_pid, child_pid):
        assert not _alive(pid, grace=5), f"process {pid} survived the cancel"
    assert scene_snapshot(app.scene) == before


def test_closing_the_scene_during_a_run_cancels_it(case, tmp_path):
    app, volume = case
    run = make_run(app, volume, "slow", FAKE_LDSEG_CHILD_PID_FILE=str(tmp_path / "child.pid"))
    run.start()
    deadline = time.monotonic() + 30
    while run.poll().stage != "Sampling":
        assert time.monotonic() < deadline, "the engine never reported progress"
        time.sleep(0.05)
    app.scene.Clear(False)
    state = run.wait(timeout=30)
    assert state.cancelled and state.result is None
    assert app.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0
    assert not _alive(int((tmp_path / "child.pid").read_text()))


def _alive(pid, grace=0.0):
    """True while the process exists and is not a zombie, `grace` seconds on (an orphan's exit is
    reaped by init a moment after its parent's)."""
    deadline = time.monotonic() + grace
    while True:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return False
        if "State:\tZ" in status:
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.05)


def test_invalid_input_is_refused_before_anything_starts(case):
    app, _ = case
    labelmap = app.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    run = make_run(app, labelmap, "ok")
    with pytest.raises(RunError, match="label map"):
        run.start()
    assert run._process is None


def test_a_second_run_is_refused_while_one_is_in_progress(case, tmp_path):
    app, volume = case
    slot = RunSlot()
    first = make_run(app, volume, "slow", FAKE_LDSEG_CHILD_PID_FILE=str(tmp_path / "child.pid"))
    slot.start(first)
    with pytest.raises(RunError, match="already running"):
        slot.start(make_run(app, volume, "ok"))
    first.cancel()
    first.wait(timeout=30)
    second = make_run(app, volume, "ok")
    slot.start(second)
    assert second.wait(timeout=60).error is None


def test_closing_the_module_stops_the_engine_and_removes_the_patient_copy_before_returning(case, tmp_path):
    """cleanup() at module or application close: synchronous, so nothing outlives Slicer."""
    app, volume = case
    before = scene_snapshot(app.scene)
    slot = RunSlot()
    run = make_run(app, volume, "slow", FAKE_LDSEG_CHILD_PID_FILE=str(tmp_path / "child.pid"))
    slot.start(run)
    deadline = time.monotonic() + 30
    while run.poll().stage != "Sampling":
        assert time.monotonic() < deadline, "the engine never reported progress"
        time.sleep(0.05)
    engine_pid, child_pid = run._process.pid, int((tmp_path / "child.pid").read_text())
    workdir = run._workdir
    assert any(workdir.glob("input/*.nrrd"))  # the copy of the patient's image
    slot.close()  # no wait(), no poll(): gone when close() returns
    assert not _alive(engine_pid) and not _alive(child_pid)
    assert not workdir.exists()
    assert run.state.cancelled and scene_snapshot(app.scene) == before


def test_a_work_folder_left_by_a_killed_slicer_is_removed_by_the_next_run(case, tmp_path):
    from LDSegLib import workdirs

    app, volume = case
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = Path(tempfile.gettempdir()) / f"{workdirs.WORK_FOLDER_PREFIX}{dead.pid}-left"
    (left / "input").mkdir(parents=True)
    (left / "input" / "patient.nrrd").write_bytes(b"image")
    mine = Path(tempfile.gettempdir()) / f"{workdirs.WORK_FOLDER_PREFIX}{os.getpid()}-other"
    mine.mkdir()
    try:
        run = make_run(app, volume, "ok")
        run.start()
        run.wait(timeout=60)
        assert not left.exists()
        assert mine.exists()  # a live process's folder is left alone
    finally:
        shutil.rmtree(left, ignore_errors=True)
        shutil.rmtree(mine, ignore_errors=True)


def test_the_input_volume_is_refused_as_an_output(case):
    from LDSegLib.scene import ImportTargets

    app, volume = case
    run = make_run(app, volume, "ok")
    run.targets = ImportTargets(uncertainty=volume)
    with pytest.raises(RunError, match="cannot also be an output"):
        run.start()
    assert run._process is None


SLICER_STAND_IN = """
import sys, time
from pathlib import Path
from LDSegLib import process
input_path, output, environment = Path(sys.argv[1]), Path(sys.argv[2]), dict(eval(sys.argv[3]))
command = process.segment_command(input_path, output, {}, sys.executable, "fake_ldseg_cli")
engine = process.EngineProcess(command, environment)
print(engine.pid, flush=True)
time.sleep(300)
"""


def test_the_engine_ends_when_slicer_is_killed(tmp_path):
    """Killed, Slicer runs no clean-up: the engine's guard (LDSegLib/guard.py) sees its parent gone."""
    input_path = tmp_path / "knee.nrrd"
    input_path.write_bytes(b"stand-in")
    child_pid_file = tmp_path / "child.pid"
    environment = fake_engine_environment("slow", FAKE_LDSEG_CHILD_PID_FILE=str(child_pid_file))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(process.module_directory()), str(TESTING_DIRECTORY)])}
    slicer_stand_in = subprocess.Popen(
        [sys.executable, "-c", SLICER_STAND_IN, str(input_path), str(tmp_path / "out"), repr(environment)],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    engine_pid = int(slicer_stand_in.stdout.readline())
    deadline = time.monotonic() + 60
    while not child_pid_file.is_file():
        assert time.monotonic() < deadline, "the engine never started its child"
        time.sleep(0.05)
    child_pid = int(child_pid_file.read_text())
    assert _alive(engine_pid) and _alive(child_pid)
    slicer_stand_in.kill()
    slicer_stand_in.wait()
    for pid in (engine_pid, child_pid):
        assert not _alive(pid, grace=20), f"process {pid} outlived the killed Slicer"
