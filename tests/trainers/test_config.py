"""``MultiModelConfig`` validation: every field checked against its type and its rules.

The table of bad values is generated from the dataclass fields (their type annotations and
``metadata`` rules), so a new field is covered as soon as it is declared, and a field whose
type the generator does not know fails the collection of this module.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import sys
import types
import typing
from typing import Any, Literal

import pytest

from srl_trainers.config import PATH_PATTERN, ConfigError, MultiModelConfig, TrainingMode

HINTS = typing.get_type_hints(MultiModelConfig)
FIELDS = dataclasses.fields(MultiModelConfig)


# ---------------------------------------------------------------------- the generated table
def wrong_types(tp: Any) -> list[Any]:
    """Values that no field of type ``tp`` accepts, whatever its range."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        values = [v for a in args if a is not type(None) for v in wrong_types(a)]
        return [v for v in values if v is not None] if type(None) in args else values
    if origin is Literal:
        return ["nonsense", args[0].upper(), 5, True, None]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return ["nonsense", 5, True, None]
    if tp is bool:
        return ["maybe", "true", 5, 1, 0, None]
    if tp is int:
        return ["3", 2.5, 3.0, True, None, {"n": 3}]
    if tp is float:
        return ["0.5", True, None, math.nan, math.inf, -math.inf, {"x": 0.5}]
    if tp is str:
        return [5, True, 1.5, ["a"], {"a": "b"}, b"bytes", None]
    if origin is list:
        (item,) = args
        bare = ["q_proj", 42] if item is str else ["3"]
        inner = [[v] for v in wrong_types(item) if v is not None][:4]
        empty_text = [[""]] if item is str else []
        return [*bare, *inner, *empty_text, [None], {"a": "b"}, None]
    if origin is dict:
        key, value = args
        assert key is str, f"no rule for mapping keys of type {key}"
        bad_values = [{"a": 5}, {"a": None}, {"a": ""}] if value is str else []
        return [[1], "x", 5, None, {5: "a"}, {"": "a"}, *bad_values]
    raise TypeError(f"no rule for fields of type {tp!r}: teach wrong_types() about it")


def numeric_type(tp: Any) -> type | None:
    """int or float if a field of type ``tp`` holds numbers (alone, optional or in a list)."""
    for t in (tp, *typing.get_args(tp)):
        if t in (int, float):
            return t
        if typing.get_origin(t) is list and typing.get_args(t)[0] in (int, float):
            return typing.get_args(t)[0]
    return None


def out_of_range(tp: Any, rules: typing.Mapping[str, Any]) -> list[Any]:
    """Values of the right type that the field's ``metadata`` rules refuse."""
    values: list[Any] = []
    number = numeric_type(tp)
    if number is not None:
        below = (lambda x: x - 1) if number is int else (lambda x: math.nextafter(x, -math.inf))
        above = (lambda x: x + 1) if number is int else (lambda x: math.nextafter(x, math.inf))
        if "ge" in rules:
            values += [below(rules["ge"]), rules["ge"] - 1000]
        if "gt" in rules:
            values += [number(rules["gt"]), below(rules["gt"])]
        if "le" in rules:
            values += [above(rules["le"]), rules["le"] * 1000 + 1000]
        values = [v for v in values if v not in rules.get("also", ())]
        if typing.get_origin(tp) in (typing.Union, types.UnionType) and int in typing.get_args(
            tp
        ):  # int | list[int]: the same numbers inside a list
            values += [[v] for v in values]
    if "min_len" in rules:
        values.append("" if str in (tp, *typing.get_args(tp)) else [])
    if "pattern" in rules:
        values += (
            ["\x00", "a\x00b", ""] if rules["pattern"] == PATH_PATTERN else ["../x", "a/b c", ""]
        )
    if "choices" in rules:
        values += [v for v in (True, False) if v not in rules["choices"]]
    return values


def bad_values(f: dataclasses.Field) -> list[Any]:
    return wrong_types(HINTS[f.name]) + out_of_range(HINTS[f.name], f.metadata)


TABLE = [(f.name, v) for f in FIELDS for v in bad_values(f)]


@pytest.mark.parametrize(("name", "value"), TABLE, ids=[f"{n}={v!r}" for n, v in TABLE])
def test_every_field_refuses_wrong_types_and_out_of_range_values(name, value):
    with pytest.raises(ConfigError) as exc:
        MultiModelConfig(**{name: value})
    message = str(exc.value)
    assert f"MultiModelConfig.{name}=" in message and "is not allowed: expected" in message
    assert "\n" not in message


@pytest.mark.parametrize("f", FIELDS, ids=lambda f: f.name)
def test_every_field_has_help_and_a_rule(f):
    assert f.metadata.get("help"), f"{f.name} has no help text"
    assert bad_values(f), f"{f.name}: no bad value generated"
    if numeric_type(HINTS[f.name]) is not None:
        assert {"ge", "gt", "le"} & set(f.metadata), f"{f.name}: a number field with no range"


def test_the_table_covers_every_field():
    assert {name for name, _ in TABLE} == {f.name for f in FIELDS}


def test_a_field_rule_that_does_not_exist_is_a_type_error():
    from srl_trainers.config import _help

    with pytest.raises(TypeError, match="maximum"):
        _help("x", default=1, maximum=3)


# ---------------------------------------------------------------------- what the validator keeps
def test_defaults_are_valid_and_round_trip():
    config = MultiModelConfig()
    assert MultiModelConfig.from_dict(config.to_dict()) == config


def test_values_are_normalised_to_the_field_types():
    config = MultiModelConfig(
        beta=0,
        training_mode="Cooperative",
        lora_target_modules=("q_proj",),
        update_frequency=(1, 2, 1, 1),
        stop=("\n",),
    )
    assert isinstance(config.beta, float) and config.beta == 0.0
    assert config.training_mode is TrainingMode.COOPERATIVE
    assert config.lora_target_modules == ["q_proj"]
    assert config.update_frequency == [1, 2, 1, 1] and config.stop == ["\n"]


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"seed": 2**32}, r"seed=4294967296 .*\[0, 4294967295\]"),
        ({"competition_intensity": math.inf}, r"competition_intensity=inf .*a number >= 0"),
        ({"kv_cache_size": 30}, r"kv_cache_size=30 .*max_new_tokens \+ 128 \(152\)"),
        ({"run_name": "../x"}, r"run_name='\.\./x' .*no path separators"),
        ({"run_name": ".."}, r"run_name='\.\.'"),
        ({"run_name": 5}, r"run_name=5"),
        ({"checkpoint_dir": 123}, r"checkpoint_dir=123 .*a non-empty path"),
        ({"log_dir": "runs\x00"}, r"log_dir='runs\\x00' .*no NUL character"),
        ({"log_dir": ["a"]}, r"log_dir=\['a'\]"),
        ({"system_prompt": 5}, r"system_prompt=5 .*None or a string"),
        ({"model_names": {"custom": 5}}, r"model_names=\{'custom': 5\}"),
        ({"enable_monitoring": "maybe"}, r"enable_monitoring='maybe' .*True or False"),
        ({"scale_rewards": 5}, r"scale_rewards=5 .*True or False"),
        ({"lora_target_modules": "q_proj"}, r"lora_target_modules='q_proj' .*a non-empty list"),
        ({"lora_target_modules": 42}, r"lora_target_modules=42"),
        ({"lora_target_modules": [1, 2]}, r"lora_target_modules=\[1, 2\]"),
        ({"policy_mapping": {"player_0": 5}}, r"policy_mapping=\{'player_0': 5\}"),
        ({"max_checkpoints": 0}, r"max_checkpoints=0 .*an integer >= 1 or -1"),
        ({"enable_verl": True}, r"enable_verl=True .*VERL integration is not built"),
        ({"update_frequency": [1, 2]}, r"update_frequency=\[1, 2\] .*4 ints"),
        ({"selective_top_k": 5}, r"selective_top_k=5 .*<= num_models \(4\)"),
        ({"model_types": ["mystery"]}, r"model_types='mystery' .*model_names"),
        ({"algorithm": "grpo", "group_size": 1}, r"group_size=1 .*>= 2 for GRPO"),
    ],
)
def test_the_reported_bad_values_name_the_field_and_what_is_allowed(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        MultiModelConfig(**overrides)


def test_bounds_themselves_are_allowed():
    assert MultiModelConfig(seed=2**32 - 1).seed == 2**32 - 1
    assert MultiModelConfig(kv_cache_size=152).kv_cache_size == 152
    assert MultiModelConfig(max_checkpoints=-1).max_checkpoints == -1
    assert MultiModelConfig(run_name="team-battle_s3.v2").run_name == "team-battle_s3.v2"


# ---------------------------------------------------------------------- the env's arguments
@pytest.mark.parametrize(
    ("env", "env_kwargs", "needle"),
    [
        ("coop_compete", {"bogus": 1}, r"env_kwargs=\{'bogus': 1\} .*srl/coop_compete-v0.*bogus"),
        ("staged", {"bogus": 1}, r"env_kwargs=\{'bogus': 1\} .*srl/staged-v0.*bogus"),
        ("team_battle", {"team_size": 0}, r"env_kwargs=\{'team_size': 0\} .*team_size"),
        ("coop_compete", {"action_mode": "structured"}, r"action_mode.*'text'"),
    ],
)
def test_env_kwargs_are_checked_by_building_the_env(env, env_kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        MultiModelConfig(env=env, env_kwargs=env_kwargs)


def test_bots_are_checked_against_the_game_played():
    with pytest.raises(ConfigError, match=r"opponent_policy='grandmaster' .*'greedy', 'heuristic'"):
        MultiModelConfig(opponent_policy="grandmaster")
    with pytest.raises(ConfigError, match=r"policy_mapping=.*'bot:grandmaster'.*'heuristic'"):
        MultiModelConfig(num_models=1, policy_mapping={"player_1": "bot:grandmaster"})
    # the staged env plays its base game: team_battle's bots, not the commons' greedy
    staged = {"env": "staged", "env_kwargs": {"base": "team_battle"}}
    assert MultiModelConfig(**staged, opponent_policy="concentrate")
    with pytest.raises(ConfigError, match=r"opponent_policy='greedy' .*srl/team_battle-v0"):
        MultiModelConfig(**staged, opponent_policy="greedy")
    assert MultiModelConfig(opponent_policy="base").opponent_policy == "base"


# ---------------------------------------------------------------------- this machine
def test_device_cuda_needs_a_cuda_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"device='cuda' .*'cpu' or 'auto'.*no CUDA GPU"):
        MultiModelConfig(device="cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert MultiModelConfig(device="cuda").device == "cuda"


def test_generation_backend_vllm_needs_vllm(monkeypatch, no_vllm):
    with pytest.raises(ConfigError, match=r"generation_backend='vllm' .*pip install 'srl\[vllm\]'"):
        MultiModelConfig(generation_backend="vllm")
    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))  # as the fakes do
    assert MultiModelConfig(generation_backend="vllm").generation_backend == "vllm"


# ---------------------------------------------------------------------- YAML files
@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\x00\x01\x02\xff\xfe", r"is not UTF-8 text"),
        (b"\x00\x01\x02", r"is not valid YAML"),
        (b"env: [unclosed\n", r"is not valid YAML"),
        (b"- a\n- b\n", r"must hold a mapping of field: value"),
        (b"just text\n", r"must hold a mapping of field: value"),
    ],
)
def test_a_file_that_is_no_yaml_mapping_is_one_line_naming_the_file(tmp_path, content, needle):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=needle) as exc:
        MultiModelConfig.from_yaml(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("1: 2\n", r"unknown config field 1"),
        ("checkpoint_dir: 123\n", r"checkpoint_dir=123"),
        ("log_dir: [a]\n", r"log_dir=\['a'\]"),
        ("run_name: 5\n", r"run_name=5"),
        ("system_prompt: 5\n", r"system_prompt=5"),
        ("model_names: {custom: 5}\n", r"model_names=\{'custom': 5\}"),
        ("enable_monitoring: maybe\n", r"enable_monitoring='maybe'"),
    ],
)
def test_a_bad_value_in_a_yaml_file_names_the_field(tmp_path, content, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=needle):
        MultiModelConfig.from_yaml(path)
