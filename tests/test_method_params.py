"""Method parameters are frozen dataclasses that check themselves; recipes store plain dicts, cards their schema."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from asrcompress.compression.methods import DistillationParams, StructuredParams, TargetParams
from asrcompress.compression.registry import METHODS, NoParams, Params, ParamError, Variant, get, variants_from_config
from asrcompress.compression.store import CARD, compress, load_variant
from asrcompress.errors import ConfigError, PipelineError


def all_methods():
    get("none")  # loads the catalogue
    return sorted(METHODS.values(), key=lambda method: method.name)


@pytest.mark.parametrize("method", all_methods(), ids=lambda method: method.name)
def test_every_method_has_checked_defaults_that_round_trip_through_a_recipe(method):
    defaults = method.params
    assert isinstance(defaults, Params) and dataclasses.is_dataclass(defaults)
    recipe = json.loads(json.dumps(defaults.to_json()))  # what a card stores
    assert method.resolve_params(recipe, "x") == defaults
    with pytest.raises(dataclasses.FrozenInstanceError):  # a step cannot change the method's defaults
        setattr(defaults, (defaults.names() or ("any",))[0], None)


def test_lists_from_yaml_become_tuples_and_steps_hash():
    params = get("nm_sparsity").resolve_params({"exclude": ["lm_head", "feature_projection"]}, "k")
    assert params == TargetParams(exclude=("lm_head", "feature_projection"))
    assert params.to_json() == {"include_conv": False, "exclude": ["lm_head", "feature_projection"]}
    (variant,) = variants_from_config([{"method": "nm_sparsity", "levels": ["2:4"],
                                        "params": {"exclude": ["lm_head", "feature_projection"]}}])
    assert hash(variant) == hash(Variant.from_json(variant.to_json()))
    assert variant.steps[0].typed_params == params


@pytest.mark.parametrize(("method", "given", "key"), [
    ("magnitude", {"include_conv": "yes"}, "include_conv"),
    ("static_int8", {"calibration_utterances": 0}, "calibration_utterances"),
    ("structured_l0", {"target_ramp": 1.0}, "target_ramp"),
    ("structured", {"prune": ["head", "head"]}, "prune"),
    ("distillation", {"hidden_size": 30, "heads": 4}, "heads"),
    ("distillation", {"targets": [1, -1]}, "targets"),
    ("downsampling", {"kind": "fft"}, "kind"),
])
def test_a_bad_value_names_the_config_key_of_its_field(method, given, key):
    with pytest.raises(ConfigError, match=rf"'compression\[0\]\.params\.{key}'"):
        get(method).resolve_params(given, "compression[0].params")


def test_the_dataclass_checks_itself_without_the_registry():
    with pytest.raises(ParamError) as error:
        StructuredParams(prune=("layer",))
    assert error.value.field == "prune" and "unknown structure kind 'layer'" in str(error.value)
    assert DistillationParams(targets=[4, 8]).targets == (4, 8)


def test_an_unknown_parameter_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"params\.level'.*parameters: budget, importance, prune"):
        get("structured").resolve_params({"level": 3}, "compression[0].params")
    with pytest.raises(ConfigError, match=r"parameters: none"):
        get("layerdrop").resolve_params({"p": 0.1}, "compression[0].params")
    assert isinstance(get("layerdrop").params, NoParams)


def test_the_card_records_each_steps_parameter_schema_and_old_cards_still_load(baseline, tmp_path):
    variant = Variant.of("magnitude", 0.3, params={"exclude": ["lm_head"]})
    card = compress(baseline, variant, tmp_path / "v")
    assert card["param_schemas"] == [{"type": "TargetParams", "version": TargetParams.VERSION}]
    path = tmp_path / "v" / CARD
    old = json.loads(path.read_text())
    del old["param_schemas"]  # a card written before the parameter dataclasses
    path.write_text(json.dumps(old))
    model, _, loaded = load_variant(tmp_path / "v")
    assert Variant.from_json(loaded["recipe"]).steps[0].typed_params == TargetParams(exclude=("lm_head",))
    old["recipe"]["steps"][0]["params"]["retired"] = 1  # a parameter this version no longer knows
    path.write_text(json.dumps(old))
    with pytest.raises(PipelineError, match=rf"{CARD}.*params\.retired"):
        load_variant(tmp_path / "v")


def test_a_bad_list_is_echoed_as_the_config_wrote_it():
    with pytest.raises(ConfigError, match=re.escape("got ['lm_head', '']")):
        get("qat").resolve_params({"exclude": ["lm_head", ""]}, "compression[0].params")
