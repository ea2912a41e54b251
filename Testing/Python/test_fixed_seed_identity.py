"""The bundled model's fixed-seed outputs are bit-identical to the recorded reference.

Refactorings must not move a voxel: every fusion rule and uncertainty measure, saved samples and
both component modes are run through `ldseg segment` on knee1 and fingerprinted (fixed_seed.py).
A deliberate change of the numerics or of the bundled model re-records the reference with
`python Testing/Python/fixed_seed.py --write`, in the same commit.
"""

import json

import pytest

from fixed_seed import REFERENCE, RUNS, fingerprints


@pytest.mark.parametrize("run", sorted(RUNS))
def test_fixed_seed_outputs_match_the_reference(run, data_dir, tmp_path):
    expected = json.loads(REFERENCE.read_text())[run]
    assert fingerprints(data_dir / "images" / "knee1.nii.gz", tmp_path, RUNS[run]) == expected
