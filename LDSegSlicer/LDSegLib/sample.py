"""The sample knee as a Slicer Sample Data source: the same file and SHA-256 as `ldseg segment --sample`."""

from ldseg.sample_data import SAMPLE_NAME, SAMPLE_SHA256, SAMPLE_URL

from .paths import icon_file

CATEGORY = "LDSeg"
SAMPLE_TITLE = "Knee MRI (LDSeg sample)"
NODE_NAME = "LDSegKnee"


def sample_data_source() -> dict:
    """Keyword arguments for SampleData.SampleDataLogic.registerCustomSampleDataSource."""
    return {
        "category": CATEGORY,
        "sampleName": SAMPLE_TITLE,
        "uris": [SAMPLE_URL],
        "fileNames": [SAMPLE_NAME],
        "nodeNames": [NODE_NAME],
        "checksums": [f"SHA256:{SAMPLE_SHA256}"],
        "thumbnailFileName": str(icon_file()),
        "loadFileTypes": ["VolumeFile"],
    }
