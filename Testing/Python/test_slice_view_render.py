"""Slice views rendered offscreen with slicer-core's slice logic and displayable managers: the
imported segmentation (fill and outline) and the uncertainty heatmap are visible in the pixels.

The README screenshot (Resources/Screenshots/slice-view.png) comes from the same code on the bundled
model's result for knee4; set LDSEG_UPDATE_SCREENSHOTS=1 to refresh it.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from scene_fixtures import (
    FEMUR_COLOR,
    TIBIA_COLOR,
    make_slicer_scene,
    write_engine_outputs,
    write_input_image,
)

slicer = pytest.importorskip("slicer")

from LDSegLib import scene as scene_layer  # noqa: E402
from LDSegLib.display import set_overlay_opacity  # noqa: E402
from LDSegLib.paths import resources_directory  # noqa: E402
from LDSegLib.summary import read_summary  # noqa: E402
from slice_view import OffscreenSliceView, save_png  # noqa: E402

SCREENSHOT = resources_directory() / "Screenshots" / "slice-view.png"


def near(pixels, color, tolerance=14):
    """Mask of pixels within tolerance (per channel) of an RGB color given in [0, 1]."""
    target = np.array([round(255 * c) for c in color])
    return np.all(np.abs(pixels.astype(int) - target) <= tolerance, axis=-1)


def warm(pixels):
    """Inferno's upper half (red, orange, yellow): red clearly above blue."""
    red, blue = pixels[..., 0].astype(int), pixels[..., 2].astype(int)
    return (red > 120) & (red - blue > 60)


@pytest.fixture
def synthetic_view(tmp_path):
    app = make_slicer_scene()
    volume = app.load_volume(write_input_image(tmp_path))
    result = read_summary(write_engine_outputs(tmp_path / "out", samples=0))
    imported = scene_layer.import_result(
        app.scene, volume, result, settings=scene_layer.DisplaySettings(opacity=0.6, threshold_fraction=0.2)
    )
    view = OffscreenSliceView(app, "Green", (320, 320))  # coronal: femur, joint band and tibia
    view.fit()
    return app, imported, view


def test_segmentation_fill_and_outline_are_drawn_in_the_model_colors(synthetic_view):
    app, imported, view = synthetic_view
    set_overlay_opacity(app.scene, 0.0)
    shown = view.render()
    imported.segmentation.GetDisplayNode().SetVisibility(False)
    hidden = view.render()
    changed = np.any(shown != hidden, axis=-1)
    assert changed.sum() > 500, "the segmentation did not change the picture"
    outline_femur, outline_tibia = near(shown, FEMUR_COLOR), near(shown, TIBIA_COLOR)
    assert outline_femur.sum() > 50 and outline_tibia.sum() > 50
    assert not near(hidden, FEMUR_COLOR).any() and not near(hidden, TIBIA_COLOR).any()
    # The femur lies above the tibia in a coronal view (superior is up).
    assert np.nonzero(outline_femur)[0].mean() < np.nonzero(outline_tibia)[0].mean()


def test_uncertainty_heatmap_is_visible_over_the_input_and_follows_the_opacity(synthetic_view):
    app, imported, view = synthetic_view
    imported.segmentation.GetDisplayNode().SetVisibility(False)
    with_heatmap = view.render()
    set_overlay_opacity(app.scene, 0.0)
    without = view.render()
    heat = warm(with_heatmap) & ~warm(without)
    assert heat.sum() > 300, "no heatmap pixels"
    gray = without[~np.all(without == 0, axis=-1)]
    assert gray.size and np.abs(gray[:, 0].astype(int) - gray[:, 2]).max() <= 2, "input should be grayscale"
    # The band (k 11..14, between femur and tibia) is one wide horizontal strip; the small blob
    # inside the tibia adds a few narrow rows below it.
    per_row = heat.sum(axis=1)
    band_rows = np.nonzero(per_row > 0.5 * per_row.max())[0]
    assert band_rows.max() - band_rows.min() < with_heatmap.shape[0] / 6
    assert per_row.max() > 0.3 * with_heatmap.shape[1]
    # Below the threshold nothing is drawn: above the band (the femur) the picture stays gray.
    assert not warm(with_heatmap[: band_rows.min() - 3]).any()


def _knee_outputs(folder, data_dir):
    """The bundled model's real result for knee4, as the panel gets it."""
    image_path = data_dir / "images" / "knee4.nii.gz"
    run = subprocess.run([sys.executable, "-m", "ldseg.cli", "segment", str(image_path), "-o", str(folder),
                          "--progress", "none"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return image_path, folder / "knee4.json"


def test_knee_screenshot_shows_bones_outlines_and_heatmap(data_dir, tmp_path):
    app = make_slicer_scene()
    image_path, summary_path = _knee_outputs(tmp_path, data_dir)
    volume = app.load_volume(image_path, "knee4")
    scene_layer.import_result(
        app.scene, volume, read_summary(summary_path), settings=scene_layer.DisplaySettings(0.55, 0.15)
    )
    panels = []
    for name in ("Red", "Yellow", "Green"):
        view = OffscreenSliceView(app, name, (400, 400))
        view.fit()
        pixels = view.render()
        assert near(pixels, FEMUR_COLOR).sum() > 30 or near(pixels, TIBIA_COLOR).sum() > 30, name
        assert warm(pixels).sum() > 100, name
        panels.append(pixels)
    picture = np.concatenate(panels, axis=1)
    path = tmp_path / "slice-view.png"
    save_png(picture, path)
    if os.environ.get("LDSEG_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOT)
