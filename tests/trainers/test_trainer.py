"""MultiModelTrainer on the tiny random model: what trains, what stays frozen, determinism,
resume equivalence, the custom reward hook and bad configs."""

from __future__ import annotations

import asyncio
import math
from copy import deepcopy

import pytest
import torch

import srl_envs
from srl_trainers import ConfigError, MultiModelConfig, MultiModelTrainer
from srl_trainers.lora import lora_parameters
from srl_trainers.models import Generation
from srl_trainers.testing import tiny_trainer_config
from srl_trainers.trainer import Turn, counterfactual_baseline


def tiny_config(tiny_model_path, tmp_path, **overrides) -> MultiModelConfig:
    return tiny_trainer_config(tiny_model_path, tmp_path, **overrides)


def snapshot(trainer: MultiModelTrainer) -> dict[str, dict[str, torch.Tensor]]:
    pool = next(iter(trainer.pools.values()))
    out = {
        slot: {k: p.detach().clone() for k, p in lora_parameters(pool.model, slot).items()}
        for slot in trainer.slots
    }
    out["__base__"] = {
        n: p.detach().clone() for n, p in pool.model.named_parameters() if "lora_" not in n
    }
    return out


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_trainable_adapters_change_base_and_bots_do_not(tiny_model_path, tmp_path, algorithm):
    # 2v2 team battle: the 2 LLM slots play red, the scripted heuristic plays blue
    cfg = tiny_config(
        tiny_model_path,
        tmp_path,
        algorithm=algorithm,
        env="team_battle",
        env_kwargs={"team_size": 2},
        max_episodes=2,
    )
    trainer = MultiModelTrainer(cfg)
    trainer.setup()
    before = snapshot(trainer)
    results = trainer.train_sync()
    after = snapshot(trainer)
    for slot in trainer.slots:
        assert changed(before[slot], after[slot]), f"{slot} did not move"
    assert not changed(before["__base__"], after["__base__"]), "the frozen base moved"
    summary = results["final_model_states"]
    assert summary["bot_heuristic"]["update_count"] == 0
    assert summary["bot_heuristic"]["agents"] == ["blue_0", "blue_1"]
    assert all(summary[s]["update_count"] == 2 for s in trainer.slots)
    losses = [v for k, v in results["training_metrics"].items() if k.endswith("/loss")]
    assert losses and all(math.isfinite(v) for v in losses)
    assert results["total_episodes"] == 2 and results["training_completed"]


def test_same_seed_same_metrics(tiny_model_path, tmp_path):
    runs = []
    for i in range(2):
        trainer = MultiModelTrainer(tiny_config(tiny_model_path, tmp_path / str(i), seed=3))
        runs.append(trainer.train_sync()["training_metrics"])
    assert runs[0].keys() == runs[1].keys()
    for key in runs[0]:
        if not key.startswith("perf/"):
            assert runs[0][key] == pytest.approx(runs[1][key], abs=1e-6), key


def test_resume_matches_uninterrupted_run(tiny_model_path, tmp_path):
    full = MultiModelTrainer(tiny_config(tiny_model_path, tmp_path / "full", max_episodes=4))
    full_metrics = [_episode(full, episode) for episode in range(4)]

    first = MultiModelTrainer(tiny_config(tiny_model_path, tmp_path / "part", max_episodes=2))
    first.train_sync()  # saves checkpoint_000002 at the end
    resumed = MultiModelTrainer(tiny_config(tiny_model_path, tmp_path / "part", max_episodes=4))
    assert resumed.load_checkpoint("latest")
    assert resumed.current_episode == 2
    resumed_metrics = [_episode(resumed, e) for e in (2, 3)]
    for want, got in zip(full_metrics[2:], resumed_metrics):
        for key in want:
            if not key.startswith("perf/"):
                assert got[key] == pytest.approx(want[key], abs=1e-5), key


def _episode(trainer: MultiModelTrainer, episode: int) -> dict[str, float]:
    import asyncio

    return asyncio.run(trainer.train_multi_model_episode(episode))["metrics"]


def test_synchronized_adapters_stay_identical(tiny_model_path, tmp_path):
    cfg = tiny_config(
        tiny_model_path, tmp_path, weight_update_strategy="synchronized", num_models=3
    )
    trainer = MultiModelTrainer(cfg)
    trainer.train_sync()
    pool = next(iter(trainer.pools.values()))
    params = [lora_parameters(pool.model, s) for s in trainer.slots]
    for key in params[0]:
        for other in params[1:]:
            assert torch.equal(params[0][key], other[key]), key


def test_custom_reward_function_replaces_rewards(tiny_model_path, tmp_path):
    trainer = MultiModelTrainer(tiny_config(tiny_model_path, tmp_path, max_episodes=1))
    seen = []

    def reward(model_output: str, context: dict) -> float:
        seen.append(context["agent"])
        return 0.25

    trainer.environment.reward_function = reward
    trainer.environment.reward_function_mode = "replace"
    results = trainer.train_sync()
    assert seen
    for slot in trainer.slots:
        # every turn of the episode earned 0.25: the return per env episode is 0.25 x rounds
        assert results["final_model_states"][slot]["avg_reward"] == pytest.approx(0.25 * 2)


def test_config_stays_mutable_before_train(tiny_model_path, tmp_path):
    trainer = MultiModelTrainer(tiny_config(tiny_model_path, tmp_path))
    trainer.config.max_episodes = 1
    trainer.config.weight_update_strategy = "selective"
    results = trainer.train_sync()
    assert results["total_episodes"] == 1
    assert trainer.get_training_status()["progress"] == 1.0


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"num_models": 9, "env": "team_battle"}, "num_models=9"),
        ({"policy_mapping": {"nobody": "model_0_tiny"}}, "policy_mapping names unknown agents"),
        ({"policy_mapping": {"player_0": "model_0_tiny"}}, "leaves slots"),
        ({"opponent_policy": "nonsense", "num_models": 1}, "opponent_policy='nonsense'"),
    ],
)
def test_bad_population_configs_name_the_field(tiny_model_path, tmp_path, overrides, needle):
    with pytest.raises(ConfigError, match=needle):  # the config, or the trainer's setup
        MultiModelTrainer(tiny_config(tiny_model_path, tmp_path, **overrides)).setup()


def test_hub_model_type_says_how_to_provide_weights(tmp_path):
    from srl_trainers.models import ModelUnavailableError

    trainer = MultiModelTrainer(
        MultiModelConfig(model_types=["qwen3"], num_models=1, checkpoint_dir=str(tmp_path))
    )
    with pytest.raises(ModelUnavailableError, match="model_names"):
        trainer.setup()


def test_frozen_base_opponent_plays_but_never_trains(tiny_model_path, tmp_path):
    cfg = tiny_config(
        tiny_model_path,
        tmp_path,
        env="team_battle",
        env_kwargs={"team_size": 1},
        num_models=1,
        opponent_policy="base",
        max_episodes=1,
    )
    trainer = MultiModelTrainer(cfg)
    results = trainer.train_sync()
    frozen = results["final_model_states"]["frozen_base"]
    assert frozen["agents"] == ["blue_0"] and not frozen["trainable"]
    assert frozen["update_count"] == 0 and frozen["total_episodes"] == 1
    assert trainer.slots == ["model_0_tiny"]


def _bot_answers(trainer, *, evaluation=False) -> dict[int, list[str]]:
    """What the random bot answers in each env copy over one rollout."""
    bot = trainer.rollout.policies["bot_random"]
    answers: dict[int, list[str]] = {c: [] for c in range(len(bot.bots))}
    for copy, scripted in enumerate(bot.bots):

        def act(observation, copy=copy, inner=scripted.act):
            answers[copy].append(inner(observation))
            return answers[copy][-1]

        scripted.act = act
    try:
        asyncio.run(trainer.rollout.play(0, *trainer.modes.balance(), evaluation=evaluation))
    finally:
        for scripted in bot.bots:
            del scripted.act  # the class's own again
    return answers


def test_bot_seeds_copy_gives_each_copy_of_a_group_its_own_draws(tiny_model_path, tmp_path):
    answers = {}
    for mode in ("group", "copy"):
        cfg = tiny_config(
            tiny_model_path,
            tmp_path / mode,
            env="team_battle",
            env_kwargs={"team_size": 1},
            num_models=1,
            opponent_policy="random",
            batch_size=8,  # 4 copies: two GRPO groups of 2
            group_size=2,
            bot_seeds=mode,
        )
        trainer = MultiModelTrainer(cfg)
        trainer.setup()
        answers[mode] = (_bot_answers(trainer), _bot_answers(trainer, evaluation=True))
    (group, group_eval), (copy, copy_eval) = answers["group"], answers["copy"]
    assert len(group) == 4
    for first in (0, 2):
        assert group[first] == group[first + 1]  # one draw for the whole group
        assert copy[first] != copy[first + 1]  # a draw per copy
        assert copy[first] == group[first]  # the group's first copy draws as before
    assert group[0] != group[2]  # the groups' own seeds differ in both modes
    assert copy_eval == group_eval  # evaluation seeds every copy apart either way


def test_vllm_backend_without_vllm_names_the_extra(tiny_model_path, tmp_path):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vLLM is installed here")
    with pytest.raises(ConfigError, match=r"generation_backend='vllm'.*srl\[vllm\]"):
        tiny_config(tiny_model_path, tmp_path, generation_backend="vllm")  # before models load


def test_federated_keeps_lora_a_frozen_and_exactly_averages(tiny_model_path, tmp_path):
    cfg = tiny_config(
        tiny_model_path, tmp_path, weight_update_strategy="federated", federated_strength=1.0
    )
    trainer = MultiModelTrainer(cfg)
    # random-byte completions of the tiny model are all invalid: give the group some spread
    trainer.environment.reward_function = lambda text, context: float(len(text) % 3)
    trainer.setup()
    before = snapshot(trainer)
    trainer.train_sync()
    after = snapshot(trainer)
    pool = next(iter(trainer.pools.values()))
    for slot in trainer.slots:
        for name, param in lora_parameters(pool.model, slot).items():
            if ".lora_A." in name:
                assert torch.equal(before[slot][name], param), f"{slot} {name}: A must stay frozen"
                assert param.grad is None and not param.requires_grad
        assert changed(before[slot], after[slot])
    # strength 1: after averaging every slot holds the same (reward-weighted) B
    b_keys = [k for k in after[trainer.slots[0]] if ".lora_B." in k]
    for key in b_keys:
        assert torch.allclose(after[trainer.slots[0]][key], after[trainer.slots[1]][key])


@pytest.mark.parametrize(
    ("env", "env_kwargs", "prefix", "expected"),
    [
        ("team_battle", {"team_size": 2}, "auto", "ALLOCATE:"),
        ("coop_compete", {}, "auto", "HARVEST:"),
        ("staged", {"base": "coop_compete"}, "auto", "HARVEST:"),
        ("coop_compete", {}, "I take", "I take"),
        ("coop_compete", {}, None, ""),
    ],
)
def test_response_prefix_is_prefilled_and_sent_to_the_env(
    tiny_model_path, tmp_path, env, env_kwargs, prefix, expected
):
    import asyncio

    cfg = tiny_config(
        tiny_model_path,
        tmp_path,
        env=env,
        env_kwargs=env_kwargs,
        num_models=2,
        response_prefix=prefix,
    )
    trainer = MultiModelTrainer(cfg)
    trainer.setup()
    assert trainer.response_prefix == expected
    outputs = []
    trainer.environment.reward_function = lambda text, context: outputs.append(text) or 0.0
    rollout = asyncio.run(trainer.rollout.play(0, 0.5, 0.5))
    pool = next(iter(trainer.pools.values()))
    prefix_ids = pool.tokenizer.encode(expected, add_special_tokens=False) if expected else []
    assert rollout.turns and outputs
    for turn in rollout.turns:
        # the prefill ends the prompt (so it is context, not a trained completion token) ...
        assert turn.prompt_ids[len(turn.prompt_ids) - len(prefix_ids) :] == prefix_ids
        assert turn.text.startswith(expected)
    # ... and the env reads the whole answer, prefix included
    llm_outputs = [t for t in outputs if t.startswith(expected)]
    assert len(llm_outputs) >= len(rollout.turns)


def test_stop_strings_cut_what_the_agents_write(tiny_model_path, tmp_path):
    """The same seeded rollout with and without a stop string: a completion that contains it
    ends with the token that wrote it (its log-prob kept with it), the env reads the cut text,
    and the others are untouched."""
    plain = MultiModelTrainer(tiny_config(tiny_model_path, tmp_path / "plain"))
    plain.setup()
    ref = asyncio.run(plain.rollout.play(0, 1.0, 0.0)).turns
    tokenizer = plain.pools[next(iter(plain.pools))].tokenizer
    chars = [c for t in ref for c in t.text if c.isascii() and c.isprintable()]
    stop = max(set(chars), key=chars.count)  # in some completions, likely not in all
    stop_id = tokenizer.encode(stop, add_special_tokens=False)[0]
    cut = MultiModelTrainer(tiny_config(tiny_model_path, tmp_path / "cut", stop=[stop]))
    cut.setup()
    seen = []
    cut.environment.reward_function = lambda text, context: seen.append(text) or 0.0
    turns = asyncio.run(cut.rollout.play(0, 1.0, 0.0)).turns
    assert len(turns) == len(ref)
    kinds = set()
    for want, got in zip(ref, turns):
        ids = want.completion_ids
        k = ids.index(stop_id) + 1 if stop_id in ids else len(ids)
        kinds.add(k < len(ids))
        assert got.completion_ids == ids[:k]
        assert got.gen_logprobs == want.gen_logprobs[:k]
        assert got.text == cut.response_prefix + tokenizer.decode(ids[:k], skip_special_tokens=True)
    assert kinds == {True, False}
    assert sorted(seen) == sorted(t.text for t in turns)
    with pytest.raises(ConfigError, match=r"stop=\[''\].*non-empty strings"):
        tiny_config(tiny_model_path, tmp_path, stop=[""])


def _scripted(trainer: MultiModelTrainer, texts: list[str]) -> None:
    """The trainer's LoRA slots write ``texts`` in turn (the real prompts are kept)."""
    pool = next(iter(trainer.pools.values()))
    tokenizer = pool.tokenizer
    replies = iter(texts * 1000)

    def generate(prompts, adapters, **kwargs):
        out = []
        for prompt in prompts:
            ids = tokenizer.encode(next(replies), add_special_tokens=False)
            text = tokenizer.decode(ids)
            out.append(Generation(list(prompt), ids, [0.0] * len(ids), text, False))
        return out

    pool.generate = generate


def _scripted_trainer(tiny_model_path, tmp_path, texts, **overrides) -> MultiModelTrainer:
    cfg = tiny_config(tiny_model_path, tmp_path, response_prefix="HARVEST:", **overrides)
    trainer = MultiModelTrainer(cfg)
    trainer.setup()
    _scripted(trainer, texts)
    return trainer


def _one_episode_each(tiny_model_path, tmp_path, runs, metric):
    """One episode of each named run, ``(scripted texts, config overrides)``: the first slot's
    weights after it, and whether it logged ``model/<slot>/<metric>``."""
    weights, logged = {}, {}
    for name, (script, extra) in runs.items():
        trainer = _scripted_trainer(tiny_model_path, tmp_path / name, script, **extra)
        slot = trainer.slots[0]
        logged[name] = f"model/{slot}/{metric}" in _episode(trainer, 0)
        weights[name] = snapshot(trainer)[slot]
    return weights, logged


def test_turns_know_the_tokens_their_action_was_read_from(tiny_model_path, tmp_path):
    """The commons parser reads '5' from 'HARVEST: 5 fish' (the prefill plus the
    completion): the turn's action tokens are the completion tokens that wrote it."""
    texts = [" 5 fish", " I take 13 today", " none", " 7"]
    trainer = _scripted_trainer(tiny_model_path, tmp_path, texts)
    tokenizer = next(iter(trainer.pools.values())).tokenizer
    turns = asyncio.run(trainer.rollout.play(0, 1.0, 0.0)).turns
    read = {}
    for turn in turns:
        completion = tokenizer.decode(turn.completion_ids)
        if turn.action_tokens is None:
            read[completion] = None
        else:
            a, b = turn.action_tokens
            read[completion] = tokenizer.decode(turn.completion_ids[a:b])
    assert read == {" 5 fish": "5", " I take 13 today": "13", " none": None, " 7": "7"}
    assert all(t.invalid == (t.action_tokens is None) for t in turns)


def test_entropy_scope_action_counts_only_the_action_tokens(tiny_model_path, tmp_path):
    """``action_entropy`` is the mean entropy over the action tokens; with
    ``entropy_scope='action'`` the bonus acts there only, so it trains differently from a
    completion-wide bonus, and a batch with no valid action gets no bonus at all."""
    texts = [" 5 fish", " I take 13 today", " none", " 7"]
    trainer = _scripted_trainer(tiny_model_path, tmp_path / "m", texts)
    slot = trainer.slots[0]
    trainer._buffers[slot] = asyncio.run(trainer.rollout.play(0, 1.0, 0.0)).turns
    trainer._buffers[slot] = [t for t in trainer._buffers[slot] if t.slot == slot]
    trainer._compute_returns(trainer._buffers[slot])
    batch = trainer._prepare_batch(slot)
    pool = trainer.pool_of[slot]
    with torch.no_grad():
        out = pool.sequence_logprobs(
            slot, batch["prompts"], batch["completions"], return_entropy=True
        )
    spans = [t.action_tokens for t in batch["samples"] if t.action_tokens is not None]
    want = [
        float(out.entropy[i, a:b].mean())
        for i, t in enumerate(batch["samples"])
        if t.action_tokens is not None
        for a, b in [t.action_tokens]
    ]
    assert spans and len(want) < len(batch["samples"])
    lengths = [b - a for a, b in spans]
    expected = sum(w * n for w, n in zip(want, lengths)) / sum(lengths)
    metrics = trainer._backward(slot, batch)
    # the tiny random model is near uniform (about 5.55 nats everywhere): compare closely
    assert metrics["action_entropy"] == pytest.approx(expected, abs=2e-6)
    assert abs(metrics["action_entropy"] - metrics["entropy"]) > 1e-5

    runs = {
        "plain": (texts, {}),
        "action": (texts, dict(entropy_coef=0.5, entropy_scope="action")),
        "completion": (texts, dict(entropy_coef=0.5)),
        "plain, no valid action": ([" none"], {}),
        "action, no valid action": ([" none"], dict(entropy_coef=0.5, entropy_scope="action")),
    }
    weights, logged = _one_episode_each(tiny_model_path, tmp_path, runs, "action_entropy")
    assert logged == {name: script == texts for name, (script, _) in runs.items()}
    differs = {
        (a, b): changed(weights[a], weights[b])
        for a, b in [("plain", "action"), ("plain", "completion"), ("action", "completion")]
    }
    assert all(differs.values()), differs
    for key, value in weights["plain, no valid action"].items():
        torch.testing.assert_close(weights["action, no valid action"][key], value)
    with pytest.raises(ConfigError, match=r"entropy_scope.*'completion', 'action'"):
        tiny_config(tiny_model_path, tmp_path, entropy_scope="answer")


def test_entropy_scope_numbers_counts_the_number_distribution_at_the_action_numbers(
    tiny_model_path, tmp_path, monkeypatch
):
    """``number_entropy`` is the mean, over the digit tokens inside each action's span, of the
    entropy among number tokens alone: the '2' of ' 5 fish, 2 boats' is outside the span and
    the spaces are not numbers. The 'numbers' bonus trains differently from the 'action' one,
    and without a valid action it is no bonus at all."""
    texts = [" 5 fish, 2 boats", " I take 13 today", " none", " 7"]
    trainer = _scripted_trainer(tiny_model_path, tmp_path / "m", texts, entropy_scope="numbers")
    slot = trainer.slots[0]
    pool = trainer.pool_of[slot]
    turns = asyncio.run(trainer.rollout.play(0, 1.0, 0.0)).turns
    trainer._buffers[slot] = [t for t in turns if t.slot == slot]
    trainer._compute_returns(trainer._buffers[slot])
    batch = trainer._prepare_batch(slot)
    with torch.no_grad():
        out = pool.sequence_logprobs(
            slot, batch["prompts"], batch["completions"], entropy_vocab=pool.number_token_ids
        )
    read, want = [], []
    for i, turn in enumerate(batch["samples"]):
        if turn.action_tokens is None:
            continue
        for t in range(*turn.action_tokens):
            if turn.completion_ids[t] in pool.number_token_ids:
                read.append(pool.tokenizer.decode([turn.completion_ids[t]]))
                want.append(float(out.vocab_entropy[i, t]))
    assert set(read) <= {"5", "1", "3", "7"} and "2" not in read and read
    metrics = trainer._backward(slot, batch)
    assert metrics["number_entropy"] == pytest.approx(sum(want) / len(want), abs=2e-6)
    assert metrics["number_entropy"] < math.log(10) + 1e-6  # ten numbers at most

    runs = {
        "plain": (texts, {}),
        "action": (texts, dict(entropy_coef=0.5, entropy_scope="action")),
        "numbers": (texts, dict(entropy_coef=0.5, entropy_scope="numbers")),
        "plain, no valid action": ([" none"], {}),
        "numbers, no valid action": ([" none"], dict(entropy_coef=0.5, entropy_scope="numbers")),
    }
    weights, logged = _one_episode_each(tiny_model_path, tmp_path, runs, "number_entropy")
    assert logged == {name: name == "numbers" for name in runs}
    assert changed(weights["plain"], weights["numbers"])
    assert changed(weights["action"], weights["numbers"])
    for key, value in weights["plain, no valid action"].items():
        torch.testing.assert_close(weights["numbers, no valid action"][key], value)

    with pytest.raises(ConfigError, match=r"entropy_scope.*'completion', 'action', 'numbers'"):
        tiny_config(tiny_model_path, tmp_path, entropy_scope="digits")
    from srl_trainers.models import ModelPool

    monkeypatch.setattr(ModelPool, "number_token_ids", property(lambda self: []))
    with pytest.raises(
        ConfigError, match=r"entropy_scope='numbers'.*no token whose text is digits"
    ):
        MultiModelTrainer(tiny_config(tiny_model_path, tmp_path, entropy_scope="numbers")).setup()


def test_number_kl_is_the_forward_kl_from_the_base_at_the_action_numbers(
    tiny_model_path, tmp_path, monkeypatch
):
    """``number_kl`` is the mean, over the digit tokens inside each action's span, of
    KL(base || policy) between the distributions renormalised over the number tokens (the base
    is the adapter disabled; no beta is needed). Descending it alone moves the policy's numbers
    back toward the base's; without a valid action it is no term at all."""
    texts = [" 5 fish, 2 boats", " I take 13 today", " none", " 7"]
    trainer = _scripted_trainer(tiny_model_path, tmp_path / "m", texts, number_kl_coef=1.0)
    slot = trainer.slots[0]
    pool = trainer.pool_of[slot]
    torch.manual_seed(0)
    with torch.no_grad():  # a fresh adapter equals the base: move it away first
        for p in pool.trainable_parameters(slot):
            p.add_(torch.randn_like(p) * 0.3)
    turns = asyncio.run(trainer.rollout.play(0, 1.0, 0.0)).turns
    trainer._buffers[slot] = [t for t in turns if t.slot == slot]
    trainer._compute_returns(trainer._buffers[slot])
    batch = trainer._prepare_batch(slot)
    numbers = pool.number_token_ids

    def expected_kl() -> float:
        kls = []
        for turn, prompt in zip(batch["samples"], batch["prompts"]):
            if turn.action_tokens is None:
                continue
            for t in range(*turn.action_tokens):
                if turn.completion_ids[t] not in numbers:
                    continue
                heads = [[*turn.completion_ids[:t], v] for v in numbers]
                logp = {}
                for adapter in (None, slot):
                    with torch.no_grad():
                        lp = pool.sequence_logprobs(
                            adapter, [prompt] * len(heads), heads, requires_grad=False
                        ).logprobs[:, t]
                    logp[adapter] = torch.log_softmax(lp, 0)
                kls.append(float((logp[None].exp() * (logp[None] - logp[slot])).sum()))
        return sum(kls) / len(kls)

    first = expected_kl()
    assert first > 1e-3
    batch["advantages"].zero_()  # the KL term alone
    optimizer = trainer.optimizers[slot]
    kls = []
    for _ in range(3):
        metrics = trainer._backward(slot, batch)
        kls.append(metrics["number_kl"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    assert kls[0] == pytest.approx(first, rel=1e-3, abs=1e-5)
    assert kls[2] < kls[1] < kls[0], kls

    runs = {
        "plain": (texts, {}),
        "number kl": (texts, dict(number_kl_coef=0.5)),
        "plain, no valid action": ([" none"], {}),
        "number kl, no valid action": ([" none"], dict(number_kl_coef=0.5)),
    }
    weights, logged = _one_episode_each(tiny_model_path, tmp_path, runs, "number_kl")
    assert logged == {name: name == "number kl" for name in runs}
    for key, value in weights["plain, no valid action"].items():
        torch.testing.assert_close(weights["number kl, no valid action"][key], value)

    with pytest.raises(ConfigError, match=r"number_kl_coef.*-0.1"):
        tiny_config(tiny_model_path, tmp_path, number_kl_coef=-0.1)
    from srl_trainers.models import ModelPool

    monkeypatch.setattr(ModelPool, "number_token_ids", property(lambda self: []))
    with pytest.raises(ConfigError, match=r"number_kl_coef > 0.*use number_kl_coef=0"):
        MultiModelTrainer(tiny_config(tiny_model_path, tmp_path, number_kl_coef=0.5)).setup()


def test_response_prefix_must_be_text(tiny_model_path, tmp_path):
    with pytest.raises(ConfigError, match="response_prefix"):
        tiny_config(tiny_model_path, tmp_path, response_prefix=5)


def test_what_the_agents_write_is_logged(tiny_model_path, tmp_path):
    import json

    cfg = tiny_config(tiny_model_path, tmp_path, enable_monitoring=True, max_episodes=2)
    trainer = MultiModelTrainer(cfg)
    results = trainer.train_sync()
    lines = (tmp_path / "runs" / "test" / "samples.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert {r["tag"] for r in records} == {f"samples/{s}" for s in trainer.slots}
    assert sorted({r["step"] for r in records}) == [1, 2]
    for r in records:
        first = r["text"].splitlines()[0]
        assert "round 1, return" in first and first.split(": ", 1)[1].startswith("'")
    assert results["log_dir"].endswith("test")


@pytest.mark.parametrize("scale", [True, False])
def test_scale_rewards_reaches_the_group_advantages(tiny_model_path, tmp_path, scale):
    """``scale_rewards=False`` keeps advantages in reward units: a won game (+1.1) outweighs
    the 0.1 format penalty; with the std a group of draws blows the penalty up to unit size."""
    trainer = MultiModelTrainer(tiny_config(tiny_model_path, tmp_path, scale_rewards=scale))

    def turn(group: int, ret: float) -> Turn:
        t = Turn("model_0", 0, 0, group, "red_0", 0, [1], [2], [0.0], "ALLOCATE: 3,3,2,1,1")
        t.ret = ret
        return t

    draws = [0.0, 0.0, 0.0, -0.1]  # a group of draws, one invalid answer
    won = [1.1, 0.0, 0.0, 0.0]  # a group with one won game
    adv = trainer._grpo_advantages([turn(0, r) for r in draws] + [turn(1, r) for r in won])
    if scale:  # both groups are scaled to about the same size (std 0.05 and 0.55, eps 1e-4)
        assert adv[3] == pytest.approx(-0.075 / (0.05 + 1e-4))
        assert adv[4] == pytest.approx(0.825 / (0.55 + 1e-4))
    else:
        assert adv[3] == pytest.approx(-0.075)
        assert adv[4] == pytest.approx(1.1 - 0.275)


def test_counterfactual_baseline_credits_the_player_whose_answer_won():
    """A 4v4 one-round battle against the equal split (8 per field): red_0 moves one troop
    from field 5 to field 3 and red wins 3 fields (+1.1); the example alone draws (0)."""
    env = srl_envs.make("team_battle", episode_length=1)
    env.reset(seed=0)
    example, deviation = "ALLOCATE: 3,3,2,1,1", "ALLOCATE: 3,3,3,1,0"
    joint = {f"red_{i}": example for i in range(4)}
    joint |= {f"blue_{i}": "ALLOCATE: 2,2,2,2,2" for i in range(4)}
    joint["red_0"] = deviation
    before = deepcopy(env)
    _, rewards, *_ = env.step(joint)
    assert rewards["red_0"] == rewards["red_1"] == pytest.approx(1.1)  # the team reward

    def keep(action, env_reward, info):
        return env_reward

    # red_0's answers in three groupmate copies: its win came from its own answer
    baseline = counterfactual_baseline(before, joint, "red_0", [example, deviation, example], keep)
    assert baseline == pytest.approx(1.1 / 3)
    # red_1's alternatives would have won as well: advantage 0 for copying the example
    assert counterfactual_baseline(before, joint, "red_1", [example, example], keep) == (
        pytest.approx(1.1)
    )
    assert math.isnan(counterfactual_baseline(before, joint, "red_1", [], keep))
    assert before.game_state.round == 0  # replays run on copies


def test_counterfactual_baseline_reaches_the_advantages(tiny_model_path, tmp_path):
    """Every turn of a one-round game gets the mean reward of its groupmates' answers (here
    scored by a text-length reward), and its advantage is its reward minus that."""
    cfg = tiny_config(
        tiny_model_path,
        tmp_path,
        env="team_battle",
        env_kwargs={"team_size": 2},
        episode_length=1,
        group_size=3,
        batch_size=6,
        baseline="counterfactual",
        scale_rewards=False,
    )
    trainer = MultiModelTrainer(cfg)
    trainer.setup()
    trainer.environment.reward_function = lambda text, context: float(len(text))
    trainer.environment.reward_function_mode = "replace"
    turns = asyncio.run(trainer.rollout.play(0, 1.0, 0.0)).turns
    trainer._compute_returns(turns)
    assert len({t.group for t in turns}) == 2 and all(t.done for t in turns)
    for t in turns:
        mates = [m for m in turns if (m.group, m.agent) == (t.group, t.agent) and m.copy != t.copy]
        assert len(mates) == 2
        assert t.baseline == pytest.approx(sum(len(m.text) for m in mates) / 2)
    advantages = trainer._grpo_advantages(turns)
    expected = torch.tensor([t.ret - t.baseline for t in turns])
    torch.testing.assert_close(advantages, expected)


def test_counterfactual_baseline_is_for_grpo(tiny_model_path, tmp_path):
    with pytest.raises(ConfigError, match=r"MultiModelConfig\.baseline='counterfactual'.*ppo"):
        tiny_config(tiny_model_path, tmp_path, algorithm="ppo", baseline="counterfactual")
    with pytest.raises(ConfigError, match=r"baseline='mean'.*\['group', 'counterfactual'\]"):
        tiny_config(tiny_model_path, tmp_path, baseline="mean")
    with pytest.raises(ConfigError, match=r"entropy_coef=0\.1.*<= entropy_coef_max \(0\.05\)"):
        tiny_config(tiny_model_path, tmp_path, entropy_target=0.5, entropy_coef=0.1)
    with pytest.raises(ConfigError, match=r"entropy_target=0.*a number > 0"):
        tiny_config(tiny_model_path, tmp_path, entropy_target=0)


def test_entropy_bonus_alone_raises_the_policy_entropy(tiny_model_path, tmp_path):
    """Every reward is 0, so every advantage is 0: the same run with and without the bonus
    differs only by the bonus's push toward higher entropy on the sampled completions."""
    entropies = {}
    for coef in (0.0, 1.0):
        cfg = tiny_config(tiny_model_path, tmp_path / str(coef), entropy_coef=coef, max_episodes=3)
        trainer = MultiModelTrainer(cfg)
        trainer.setup()
        trainer.environment.reward_function = lambda text, context: 0.0
        trainer.environment.reward_function_mode = "replace"
        slot = trainer.slots[0]
        pool = trainer.pool_of[slot]
        turns = [t for t in asyncio.run(trainer.rollout.play(0, 1.0, 0.0)).turns if t.slot == slot]
        trainer.train_sync()
        out = pool.sequence_logprobs(
            slot,
            [t.prompt_ids for t in turns],
            [t.completion_ids for t in turns],
            requires_grad=False,
            return_entropy=True,
        )
        entropies[coef] = float(out.entropy.sum() / out.mask.sum())
    assert entropies[1.0] > entropies[0.0] + 1e-3


def test_adaptive_entropy_coef_climbs_below_the_target_and_a_checkpoint_keeps_it(
    tiny_model_path, tmp_path
):
    """A target above any entropy the tiny model can reach (log of its vocabulary is a few
    nats): the coefficient steps up once per update, from entropy_coef to its cap."""
    cfg = tiny_config(
        tiny_model_path,
        tmp_path,
        entropy_target=100.0,
        entropy_coef_step=0.01,
        entropy_coef_max=0.025,
        max_episodes=4,
    )
    trainer = MultiModelTrainer(cfg)
    used = [_episode(trainer, e) for e in range(4)]
    for slot in trainer.slots:
        assert [m[f"model/{slot}/entropy_coef"] for m in used] == pytest.approx(
            [0.0, 0.01, 0.02, 0.025]
        )
    assert trainer._entropy_coef == dict.fromkeys(trainer.slots, 0.025)
    trainer.save_checkpoint()
    resumed = MultiModelTrainer(cfg)
    assert resumed.load_checkpoint("latest")
    assert resumed._entropy_coef == dict.fromkeys(trainer.slots, 0.025)


def test_proportional_entropy_control_follows_the_shortfall_of_each_update(
    tiny_model_path, tmp_path
):
    """entropy_control="proportional": each update's coefficient is entropy_coef_max times
    the previous update's shortfall from the target (a share of it), clipped at 0; no
    memory of earlier updates, unlike "step"."""
    target, cap = 2.0, 0.04
    cfg = tiny_config(
        tiny_model_path,
        tmp_path,
        entropy_target=target,
        entropy_control="proportional",
        entropy_coef_max=cap,
        entropy_coef_step=1.0,  # unused by this rule
        max_episodes=3,
    )
    trainer = MultiModelTrainer(cfg)
    used = [_episode(trainer, e) for e in range(3)]
    for slot in trainer.slots:
        for before, after in zip(used, used[1:]):
            entropy = before[f"model/{slot}/entropy"]
            want = min(max(cap * (target - entropy) / target, 0.0), cap)
            assert after[f"model/{slot}/entropy_coef"] == pytest.approx(want)
    learner = next(iter(trainer.learners.values()))
    slot = learner.slots[0]
    for entropy, want in [(0.0, cap), (1.0, cap / 2), (2.0, 0.0), (5.0, 0.0), (-1.0, cap)]:
        learner.adapt_entropy_coef(slot, entropy)
        assert learner.entropy_coef[slot] == pytest.approx(want)
    learner.adapt_entropy_coef(slot, None)  # an update with no tokens in scope
    assert learner.entropy_coef[slot] == pytest.approx(cap)


def test_adaptive_entropy_bonus_is_off_above_the_target(tiny_model_path, tmp_path):
    """Entropy above a tiny target: the bonus is not applied, so a run starting at the
    largest coefficient trains exactly as one without a bonus, while its coefficient falls."""
    weights, coefs = {}, {}
    for name, extra in {
        "plain": {},
        "adaptive": dict(entropy_coef=0.05, entropy_target=1e-4, entropy_coef_step=0.02),
    }.items():
        trainer = MultiModelTrainer(tiny_config(tiny_model_path, tmp_path / name, **extra))
        trainer.train_sync()
        weights[name] = snapshot(trainer)
        coefs[name] = trainer._entropy_coef[trainer.slots[0]]
    for slot in trainer.slots:
        for key, value in weights["plain"][slot].items():
            torch.testing.assert_close(weights["adaptive"][slot][key], value)
    assert coefs == {"plain": 0.0, "adaptive": pytest.approx(0.01)}


def test_players_play_what_the_trainer_plays(tiny_model_path, tmp_path):
    """build_players (population + pools + Rollout, no optimizers) plays a training episode
    exactly as the trainer's own rollout does: same seeds, same adapters, same texts."""
    from srl_trainers.population import build_players

    trainer = MultiModelTrainer(tiny_config(tiny_model_path, tmp_path / "a"))
    trainer.setup()
    mine = asyncio.run(trainer.rollout.play(0, 1.0, 0.0))
    players = build_players(tiny_config(tiny_model_path, tmp_path / "b"))
    theirs = asyncio.run(players.rollout.play(0, 1.0, 0.0))
    assert players.num_copies == trainer.num_copies and players.slots == trainer.slots
    assert [(t.slot, t.agent, t.text, t.reward) for t in theirs.turns] == [
        (t.slot, t.agent, t.text, t.reward) for t in mine.turns
    ]
    assert theirs.raw_totals == mine.raw_totals and mine.turns
