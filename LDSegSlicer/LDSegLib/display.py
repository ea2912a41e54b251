"""How results look in the slice views: uncertainty heatmap over the input, segmentation outlines.

Everything here changes MRML display and slice composite nodes only, so it works the same in the
Slicer application and on a bare scene in tests.
"""

from __future__ import annotations

from .heatmap import heatmap_color_table


def style_uncertainty(volume, display_range: tuple[float, float], threshold: float) -> None:
    """Inferno colors, a fixed window over the measure's range, and voxels below threshold hidden.

    A fixed window (not auto window/level) keeps the colors comparable between cases and runs.
    """
    import slicer

    scene = volume.GetScene()
    display = volume.GetDisplayNode()
    if display is None:
        volume.CreateDefaultDisplayNodes()
        display = volume.GetDisplayNode()
    low, high = display_range
    with slicer.util.NodeModify(display):
        display.SetAndObserveColorNodeID(heatmap_color_table(scene).GetID())
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(low, high)
        display.SetInterpolate(0)
        set_uncertainty_threshold(volume, threshold, high)
    legend = slicer.vtkSlicerColorLogic.AddDefaultColorLegendDisplayNode(display)
    if legend is not None:
        legend.SetTitleText(volume.GetAttribute("LDSeg.UncertaintyMeasure") or "Uncertainty")
        legend.SetLabelFormat("%.2f")
        legend.SetVisibility(True)


def set_uncertainty_threshold(volume, threshold: float, upper: float | None = None) -> None:
    """Hides (makes transparent) voxels whose uncertainty is below threshold."""
    display = volume.GetDisplayNode()
    if upper is None:
        upper = display.GetWindowLevelMax()
    display.SetApplyThreshold(1)
    display.SetThreshold(threshold, max(upper, threshold) + 1e6)


def show_over_input(scene, input_volume, uncertainty_volume, opacity: float) -> None:
    """Input as background and uncertainty as foreground in every slice view."""
    for composite in _slice_composite_nodes(scene):
        composite.SetBackgroundVolumeID(input_volume.GetID())
        composite.SetForegroundVolumeID(uncertainty_volume.GetID() if uncertainty_volume else None)
        composite.SetForegroundOpacity(opacity)


def set_overlay_opacity(scene, opacity: float) -> None:
    for composite in _slice_composite_nodes(scene):
        composite.SetForegroundOpacity(opacity)


def style_segmentation(segmentation_node) -> None:
    """Filled and outlined in 2D, so the structure and its border both read over the heatmap."""
    segmentation_node.CreateDefaultDisplayNodes()
    display = segmentation_node.GetDisplayNode()
    display.SetVisibility2DFill(True)
    display.SetVisibility2DOutline(True)
    display.SetOpacity2DFill(0.35)
    display.SetOpacity2DOutline(1.0)
    display.SetSliceIntersectionThickness(2)


def show_in_3d(segmentation_node) -> None:
    """Surfaces in the 3D view, made from the labelmap (Slicer keeps them updated after edits)."""
    segmentation_node.CreateClosedSurfaceRepresentation()
    display = segmentation_node.GetDisplayNode()
    if display is None:
        segmentation_node.CreateDefaultDisplayNodes()
        display = segmentation_node.GetDisplayNode()
    display.SetVisibility3D(True)


def center_slice_views(scene, position_ras) -> None:
    """Moves every slice view so that it shows position_ras in its centre."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
        scene.GetNthNodeByClass(index, "vtkMRMLSliceNode").JumpSliceByCentering(*position_ras)


def _slice_composite_nodes(scene):
    return [
        scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))
    ]


def set_threshold_fraction(volume, fraction: float) -> None:
    """Threshold as a fraction of the fixed display window (the panel's "Hide below" slider)."""
    display = volume.GetDisplayNode()
    low, high = display.GetWindowLevelMin(), display.GetWindowLevelMax()
    set_uncertainty_threshold(volume, low + fraction * (high - low), high)
