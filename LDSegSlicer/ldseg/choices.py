"""The choices and limits of `ldseg segment`, in a module free of numerical imports.

The engine checks against them and the Slicer panel offers them, from this one place, so that
opening the module never imports torch into Slicer's process.
"""

FUSION_METHODS = ("mean", "majority", "staple")  # defined in ldseg/fusion.py
UNCERTAINTY_MEASURES = ("entropy", "mutual_information", "disagreement", "variance")  # = ldseg.uncertainty.MEASURES (tested)
DEVICES = ("auto", "cpu", "cuda", "mps")
MAX_SAMPLES = 64
MAX_STEPS = 1000
BAND_THRESHOLD = 0.2  # `ldseg evaluate`'s default tau of the uncertainty band (nats of entropy), ldseg/evaluation.py
