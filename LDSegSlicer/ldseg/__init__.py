"""LDSeg engine: latent-diffusion segmentation of knee MRI, free of Slicer, VTK and Qt.

Heavy dependencies (torch, MONAI) are imported by the submodules that need them, so that importing
this package (for instance from the Slicer module file) stays cheap.
"""

__version__ = "0.1.0"
