"""The perceptual color table for the uncertainty heatmap, built in the scene.

Slicer's file-based Inferno table is not in a bare MRML scene (and so not in tests), so the module
creates its own copy from matplotlib's inferno control points; it is saved with the scene.
"""

from __future__ import annotations

COLOR_TABLE_NAME = "LDSeg Inferno"

# matplotlib's "inferno" sampled at 17 evenly spaced points (RGB in [0, 1]).
_INFERNO = (
    (0.001, 0.000, 0.014), (0.042, 0.028, 0.141), (0.129, 0.047, 0.291), (0.238, 0.037, 0.396),
    (0.342, 0.062, 0.429), (0.441, 0.099, 0.432), (0.541, 0.135, 0.415), (0.640, 0.171, 0.381),
    (0.736, 0.216, 0.330), (0.822, 0.275, 0.266), (0.894, 0.353, 0.194), (0.947, 0.449, 0.115),
    (0.978, 0.558, 0.035), (0.988, 0.675, 0.065), (0.975, 0.798, 0.206), (0.948, 0.917, 0.411),
    (0.988, 0.998, 0.645),
)


def inferno(fraction: float) -> tuple[float, float, float]:
    """Linear interpolation between the control points; fraction in [0, 1]."""
    position = min(max(fraction, 0.0), 1.0) * (len(_INFERNO) - 1)
    index = min(int(position), len(_INFERNO) - 2)
    weight = position - index
    low, high = _INFERNO[index], _INFERNO[index + 1]
    return tuple(a + (b - a) * weight for a, b in zip(low, high, strict=True))  # type: ignore[return-value]


def heatmap_color_table(scene, entries: int = 256):
    """The scene's LDSeg Inferno color table node, created on first use."""
    import slicer

    existing = scene.GetFirstNodeByName(COLOR_TABLE_NAME)
    if existing is not None and existing.IsA("vtkMRMLColorTableNode"):
        return existing
    table = slicer.vtkMRMLColorTableNode()
    table.SetName(COLOR_TABLE_NAME)
    table.SetTypeToUser()
    table.SetNumberOfColors(entries)
    for index in range(entries):
        red, green, blue = inferno(index / (entries - 1))
        table.SetColor(index, f"{index}", red, green, blue, 1.0)
    table.SetDescription("Perceptually uniform heatmap for LDSeg uncertainty (matplotlib inferno).")
    scene.AddNode(table)
    return table
