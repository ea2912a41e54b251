"""Slicer side of LDSeg: the scene layer (MRML + VTK, no Qt) and the background run of the engine."""
