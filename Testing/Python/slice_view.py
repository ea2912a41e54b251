"""An offscreen Slicer slice view built from slicer-core alone: slice logic, displayable managers, VTK.

What Slicer's qMRMLSliceWidget does, reduced to what a picture needs: the slice logic blends the
background and foreground volume layers into one image (drawn as the renderer's background), and
the segmentations displayable manager draws fill and outline on top. VTK picks its offscreen
backend itself (EGL through Mesa here).
"""

from __future__ import annotations

import numpy as np

DISPLAYABLE_MANAGERS = ("vtkMRMLSegmentationsDisplayableManager2D", "vtkMRMLColorLegendDisplayableManager")


class OffscreenSliceView:
    def __init__(self, app, view_name: str, size: tuple[int, int] = (480, 480)) -> None:
        import slicer
        import vtk

        self.slice_logic = _slice_logic(app.app_logic, view_name)
        self.renderer = vtk.vtkRenderer()
        self.window = vtk.vtkRenderWindow()
        self.window.SetOffScreenRendering(1)
        self.window.SetMultiSamples(0)
        self.window.SetSize(*size)
        self.window.AddRenderer(self.renderer)
        self.interactor = vtk.vtkRenderWindowInteractor()  # displayable managers expect one
        self.interactor.SetRenderWindow(self.window)
        self.interactor.Initialize()

        factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
        factory.SetMRMLApplicationLogic(app.app_logic)
        for name in DISPLAYABLE_MANAGERS:
            if not factory.IsDisplayableManagerRegistered(name):
                factory.RegisterDisplayableManager(name)
        self.managers = slicer.vtkMRMLDisplayableManagerGroup()
        self.managers.Initialize(factory, self.renderer)
        self.managers.SetMRMLDisplayableNode(self.slice_logic.GetSliceNode())

        # The blended volume layers, as an 8-bit RGBA image behind everything else.
        self.image_mapper = vtk.vtkImageMapper()
        self.image_mapper.SetColorWindow(255)
        self.image_mapper.SetColorLevel(127.5)
        image_actor = vtk.vtkActor2D()
        image_actor.SetMapper(self.image_mapper)
        image_actor.GetProperty().SetDisplayLocationToBackground()
        self.renderer.AddViewProp(image_actor)
        self.slice_logic.ResizeSliceNode(*size)

    def fit(self) -> None:
        self.slice_logic.FitSliceToBackground()
        self.slice_logic.SnapSliceOffsetToIJK()

    def render(self) -> np.ndarray:
        """The view as an (height, width, 3) uint8 array, top row first."""
        import vtk
        from vtk.util import numpy_support

        self.image_mapper.SetInputConnection(self.slice_logic.GetImageDataConnection())
        self.window.Render()
        grabber = vtk.vtkWindowToImageFilter()
        grabber.SetInput(self.window)
        grabber.ReadFrontBufferOff()
        grabber.SetInputBufferTypeToRGB()
        grabber.Update()
        image = grabber.GetOutput()
        width, height, _ = image.GetDimensions()
        pixels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, 3)
        return pixels[::-1].copy()


def _slice_logic(app_logic, view_name: str):
    logics = app_logic.GetSliceLogics()
    for index in range(logics.GetNumberOfItems()):
        logic = logics.GetItemAsObject(index)
        if logic.GetSliceNode().GetLayoutName() == view_name:
            return logic
    raise KeyError(view_name)


def save_png(pixels: np.ndarray, path) -> None:
    from PIL import Image

    Image.fromarray(pixels).save(path)
