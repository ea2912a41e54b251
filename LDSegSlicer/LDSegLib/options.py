"""The choices the panel offers, kept equal to the engine's (a test compares them).

Duplicated rather than imported so that opening the module never imports the engine's numerical
dependencies into Slicer's process.
"""

FUSION_METHODS = ("mean", "majority", "staple")  # ldseg.fusion.FUSION_METHODS
UNCERTAINTY_MEASURES = ("entropy", "mutual_information", "disagreement", "variance")  # ldseg.uncertainty
DEVICES = ("auto", "cpu", "cuda", "mps")  # ldseg.inference.DEVICES
MAX_SAMPLES = 64  # ldseg.inference.MAX_SAMPLES
MAX_STEPS = 1000  # ldseg.inference.MAX_STEPS
