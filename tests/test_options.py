"""UpscaleOptions: validated once where it is made, frozen, and hashed into batch records as earlier versions hashed the same settings."""

import dataclasses

import pytest

from theris_cli.batch.records import settings_hash
from theris_cli.errors import UsageError
from theris_cli.engine.options import UpscaleOptions


def test_defaults_are_the_clis_and_the_object_is_frozen():
    o = UpscaleOptions()
    assert (o.weights, o.device, o.precision, o.window, o.tile, o.temporal_factor) == (None, "auto", "auto", 4, None, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.tile = 64


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"window": 1}, "--window"), ({"tile": 8}, "--tile"), ({"temporal_factor": 0}, "--temporal-factor"),
        ({"precision": "fp8"}, "--precision"), ({"device": "tpu"}, "--device"), ({"crf": -1}, "--crf"),
    ],
)
def test_bad_values_are_one_line_usage_errors(fields, message):
    with pytest.raises(UsageError, match=message):
        UpscaleOptions(**fields)
    with pytest.raises(UsageError, match=message):  # a changed copy is checked too
        UpscaleOptions.of(UpscaleOptions(), **fields)


def test_spellings_are_normalised_and_fields_override():
    o = UpscaleOptions.of(UpscaleOptions(device=" CUDA:1 ", precision="BF16"), tile=64)
    assert (o.device, o.precision, o.tile) == ("cuda:1", "bf16", 64)
    assert UpscaleOptions.of(None) == UpscaleOptions()


def test_batch_records_of_earlier_versions_still_match():
    # run_batch built this dict by hand before UpscaleOptions; the same options must hash the same
    o = UpscaleOptions(weights="theris-small", device="cuda", tile=128, crf=12)
    before = dict(weights="theris-small", precision="auto", window=4, tile=128, temporal_factor=2,
                  codec=None, crf=12, pix_fmt=None, ext="mkv")
    assert settings_hash({**o.output_fields(), "ext": "mkv"}) == settings_hash(before)
    assert "device" not in o.output_fields()  # where it runs does not change what is made
