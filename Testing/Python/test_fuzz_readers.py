"""A bounded property-based fuzz of the readers of untrusted files (hypothesis): every generated
input gives a result or one LDSegError, never another exception. benchmarks/fuzz_readers.py runs
the same targets far longer and prints how many inputs it tried.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_targets as targets

BOUNDED = settings(max_examples=40, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(autouse=True)
def fuzz_limits(monkeypatch):
    monkeypatch.setenv("LDSEG_LIMITS", targets.FUZZ_LIMITS)


@pytest.mark.parametrize("suffix", sorted(targets.SEEDS))
def test_image_reader(suffix):
    @BOUNDED
    @given(targets.mutated(targets.SEEDS[suffix]))
    def run(data):
        targets.image_file(suffix, data)

    run()


@BOUNDED
@given(targets.mutated(targets.DICOM_SEED, header=1200))
def test_dicom_series_reader(data):
    targets.dicom_folder(data)


@BOUNDED
@given(st.one_of(targets.mutated_card(), targets.json_values, st.text(max_size=300)))
def test_model_card_reader(card):
    targets.model_card(card)


@BOUNDED
@given(targets.mutated(targets.ZIP_SEED, header=4096))
def test_model_zip_import(data):
    targets.model_zip(data)


@BOUNDED
@given(targets.config_text)
def test_training_config_reader(text):
    targets.training_config(text)
