"""Says, before a run, why a node cannot be segmented; the panel shows the message as is."""

from __future__ import annotations


def input_problem(volume_node) -> str | None:
    """None when the node is a non-empty 3D scalar volume, else what is wrong and what to do."""
    if volume_node is None:
        return "Select an input volume (a 3D knee MRI)."
    name = volume_node.GetName()
    if volume_node.IsA("vtkMRMLLabelMapVolumeNode"):
        return f"{name} is a label map, not an image. Select the MRI volume it was drawn on."
    if not volume_node.IsA("vtkMRMLScalarVolumeNode") or volume_node.IsA("vtkMRMLTensorVolumeNode") or volume_node.IsA(
        "vtkMRMLDiffusionWeightedVolumeNode"
    ):
        kind = volume_node.GetClassName()
        return f"{name} is a {kind} (vector, tensor or multi-frame data). Select a 3D scalar MRI volume."
    image = volume_node.GetImageData()
    if image is None or image.GetNumberOfPoints() == 0:
        return f"{name} has no voxels. Load the image again or select another volume."
    components = image.GetNumberOfScalarComponents()
    if components != 1:
        return (
            f"{name} has {components} values per voxel (4D or color data). Select a single 3D frame, "
            "for example with the Sequences module."
        )
    dims = image.GetDimensions()
    if min(dims) < 2:
        return f"{name} is {dims[0]} x {dims[1]} x {dims[2]} voxels, a 2D image. LDSeg needs a 3D volume."
    low, high = image.GetScalarRange()
    if low == high:
        return f"{name} is empty: every voxel is {low:g}. Select a volume that contains the knee."
    return None
