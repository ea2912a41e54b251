"""One settings object for a run: unset fields come from the model card, errors speak of settings, not flags."""

import dataclasses

import pytest

from ldseg.card import Diffusion, ModelCard
from ldseg.errors import LDSegError
from ldseg.settings import RunSettings, SegmentSettings
from synthetic_cases import knee_labels

CARD = ModelCard(name="card-defaults", version="1.0.0", description="test", labels=knee_labels(),
                 model_grid=(32, 32, 32), diffusion=Diffusion(default_samples=5, default_steps=3))


def test_unset_samples_and_steps_come_from_the_card_and_set_ones_win():
    assert (SegmentSettings().for_card(CARD).samples, SegmentSettings().for_card(CARD).steps) == (5, 3)
    chosen = SegmentSettings(samples=2, steps=1, fusion="staple").for_card(CARD)
    assert dataclasses.astuple(chosen) == dataclasses.astuple(SegmentSettings(samples=2, steps=1, fusion="staple"))


@pytest.mark.parametrize("settings", [
    SegmentSettings(samples=0), SegmentSettings(steps=5000), SegmentSettings(fusion="average"),
    SegmentSettings(uncertainty="confidence"), SegmentSettings(chunk_size=0),
])
def test_bad_settings_are_refused_without_naming_command_line_flags(settings):
    with pytest.raises(LDSegError) as refused:
        settings.for_card(CARD)
    assert "--" not in str(refused.value)


def test_run_settings_leave_unset_fields_off_the_command_line():
    options = RunSettings().cli_options()
    assert options["samples"] is None and options["steps"] is None and options["model"] is None
