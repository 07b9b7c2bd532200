"""Training-loop throughput: generation with many LoRA adapters on one base model, the time of
one update step against TRL's GRPOTrainer, and memory.

Run from the repository root::

    python -m benchmarks.train_throughput --model embedded --threads 1   # SmolLM2-135M, ~14 min
    python -m benchmarks.train_throughput --model tiny --quick           # tiny model, ~35 s
    python -m benchmarks.train_throughput --model both --prompt env      # ~250-token prompts
    python -m benchmarks.train_throughput --model embedded --threads 1 \
        --skip-generation --skip-memory                                  # update step only, ~8 min

Generation: the same prompts through the chat template (``--prompt short``: one-line game
states, ~56 tokens with SmolLM2; ``env``: real coop_compete observations, ~250 tokens) are
completed four ways, back to back in every row, at 1, 4 and 8 adapters:

- ``base``: a bare base model (no PEFT wrapper), one ``generate`` call;
- ``mixed``: ONE call with a mixed-adapter batch (prompt i uses adapter i mod k), what the
  trainer does (the pool's per-row LoRA path);
- ``peft-mixed``: the same call through PEFT's own mixed-batch path (``adapter_names=``);
- ``per-adapter``: one call per adapter on its share of the prompts;
- ``base-split``: the bare base model called the per-adapter way (k calls of batch/k), so
  ``base/base-split`` is what one big batch gains over k small ones on this hardware with no
  LoRA at all: the ceiling of ``mixed/per-adapter`` (on a CPU, where a batch's cost grows
  almost linearly with its rows, that ceiling is far below k).

Each cell is generated tokens/s (completion tokens up to EOS over wall time, best of
``--repeats``, after one short warm-up call). Adapters get random B matrices so that they
change the outputs. Memory: peak RSS of a fresh process that loads the model, adds k trainable
slots (AdamW each), generates once and takes one update step per slot; plus the parameter
bytes of the base and of the adapters.

Update step (seconds per step, median of ``--step-repeats`` runs, the ways interleaved in
alternating order in one process): one pool with one LoRA adapter (the same ``LORA`` config),
one fixed batch of 16 sequences (prompts of 72-96 random tokens, left-padded; completions of
16-32, right-padded; group-relative advantages of fixed rewards in groups of 4) and one AdamW
over the adapter's parameters. ``ours``: ``ModelPool.sequence_logprobs`` + ``grpo_loss``
(dapo, beta 0, on-policy) + backward + AdamW step; ``ours+ent``: the same with the entropy
trainer.py asks for; ``TRL``: a real ``trl.GRPOTrainer`` built on the pool's own PeftModel,
``_compute_loss`` + backward + the same AdamW step. Before timing, one backward of each checks
that both losses agree and prints the cosine of the two gradients (1 in float32; bf16 rounding
lowers it a little, TRL's LM head runs in float32 and ours in the model dtype).

On a 2-core machine that other processes share, ``--threads 1`` gives steadier numbers: with
two OpenMP threads a forward stalls whenever another process takes a core (measured: 2-8x
slower and erratic, where 1 thread stayed within 5%).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time

import torch

import srl_envs
from srl_trainers.algorithms.grpo import group_advantages, grpo_loss
from srl_trainers.lora import lora_parameters
from srl_trainers.models import ModelPool
from srl_trainers.testing import build_tiny_model

ADAPTER_COUNTS = (1, 4, 8)
LORA = {
    "rank": 8,
    "alpha": 16,
    "dropout": 0.0,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
}
SYSTEM = "You are a player in a multi-agent game. Answer in the format the game asks for."


def checkpoint_of(model: str) -> str:
    return str(build_tiny_model()) if model == "tiny" else "embedded:smollm2"


def observations(n: int, kind: str = "env") -> list[str]:
    """``n`` observations: ``env``, every agent's first observation of seeded coop_compete
    games (~250 prompt tokens with SmolLM2); ``short``, one-line game states (~50 tokens)."""
    if kind == "short":
        return [
            f"Round {i % 10 + 1}. Stock now: {100 - 3 * i}. Reply: HARVEST: <number>"
            for i in range(n)
        ]
    env = srl_envs.make("srl/coop_compete-v0")
    out, seed = [], 0
    while len(out) < n:
        obs, _ = env.reset(seed=seed)
        out.extend(obs.values())
        seed += 1
    return out[:n]


def make_pool(model: str, dtype: str, adapters: int) -> ModelPool:
    pool = ModelPool(checkpoint_of(model), dtype=dtype, device="cpu")
    for i in range(adapters):
        name = f"slot_{i}"
        pool.add_adapter(name, seed=i, **LORA)
        g = torch.Generator().manual_seed(1000 + i)
        with torch.no_grad():
            for key, p in lora_parameters(pool.model, name).items():
                if "lora_B" in key:
                    p.copy_(torch.randn(p.shape, generator=g).to(p.dtype) * 0.01)
    return pool


def timed(fn, repeats: int) -> tuple[float, int]:
    """Best wall time of ``repeats`` runs, and the tokens ``fn`` generated."""
    best, tokens = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        tokens = fn()
        best = min(best, time.perf_counter() - start)
    return best, tokens


# ---------------------------------------------------------------------- generation
def generation_rows(
    model: str, dtype: str, batch: int, new_tokens: int, repeats: int, prompt: str
) -> list[dict]:
    """One row per adapter count; the five ways are timed back to back in every row."""
    base = make_pool(model, dtype, 0)
    pool = make_pool(model, dtype, max(ADAPTER_COUNTS))
    prompts = pool.format_prompts(observations(batch, prompt), SYSTEM, max_new_tokens=new_tokens)
    kw = {"max_new_tokens": new_tokens, "temperature": 1.0, "generator_seed": 0}

    def run(p: ModelPool, ids: list[list[int]], adapters: list) -> int:
        return sum(len(g.completion_ids) for g in p.generate(ids, adapters, **kw))

    for p, a in ((base, None), (pool, "slot_0"), (pool, None)):  # warm-up, one short call each
        p.generate(prompts[:2], [a, a], max_new_tokens=2)
    prompt_tokens = sum(len(p) for p in prompts) / len(prompts)
    rows = []
    for k in ADAPTER_COUNTS:
        adapters = [f"slot_{i % k}" for i in range(batch)]
        groups = {a: [i for i in range(batch) if adapters[i] == a] for a in dict.fromkeys(adapters)}
        base_s, base_tok = timed(lambda: run(base, prompts, [None] * batch), repeats)
        mixed_s, mixed_tok = timed(lambda a=adapters: run(pool, prompts, a), repeats)
        pool.peft_mixed_batch = True
        peft_s, peft_tok = timed(lambda a=adapters: run(pool, prompts, a), repeats)
        pool.peft_mixed_batch = False
        per_s, per_tok = timed(
            lambda g=groups: sum(
                run(pool, [prompts[i] for i in idx], [a] * len(idx)) for a, idx in g.items()
            ),
            repeats,
        )
        split_s, split_tok = timed(
            lambda g=groups: sum(
                run(base, [prompts[i] for i in idx], [None] * len(idx)) for idx in g.values()
            ),
            repeats,
        )
        rows.append(
            {
                "model": model,
                "adapters": k,
                "batch": batch,
                "prompt": prompt_tokens,
                "base": base_tok / base_s,
                "mixed": mixed_tok / mixed_s,
                "peft_mixed": peft_tok / peft_s,
                "per_adapter": per_tok / per_s,
                "base_split": split_tok / split_s,
            }
        )
        print_row(rows[-1], header=len(rows) == 1)
    return rows


COLUMNS = (  # header, width, value
    ("model", 9, lambda r: r["model"]),
    ("adapters", 9, lambda r: r["adapters"]),
    ("batch", 6, lambda r: r["batch"]),
    ("prompt tok", 11, lambda r: f"{r['prompt']:.0f}"),
    ("base", 8, lambda r: f"{r['base']:.1f}"),
    ("mixed", 8, lambda r: f"{r['mixed']:.1f}"),
    ("peft-mixed", 11, lambda r: f"{r['peft_mixed']:.1f}"),
    ("per-adapter", 12, lambda r: f"{r['per_adapter']:.1f}"),
    ("mixed/base", 11, lambda r: f"{r['mixed'] / r['base']:.2f}"),
    ("mixed/peft", 11, lambda r: f"{r['mixed'] / r['peft_mixed']:.2f}"),
    ("mixed/per-adapter", 18, lambda r: f"{r['mixed'] / r['per_adapter']:.2f}"),
    ("base/base-split", 16, lambda r: f"{r['base'] / r['base_split']:.2f}"),
)


def print_row(r: dict, header: bool) -> None:
    """Generated tokens/s of each way, and the ratios."""
    if header:
        print("".join(f"{h:>{w}}" for h, w, _ in COLUMNS) + "   (tokens/s)")
    print("".join(f"{v(r)!s:>{w}}" for _, w, v in COLUMNS), flush=True)


# ---------------------------------------------------------------------- memory
def _memory_probe(
    model: str, dtype: str, slots: int, batch: int, new_tokens: int, prompt: str, threads: int
) -> dict:
    """In a fresh process: load, add slots, generate, one AdamW step per slot; peak RSS."""
    torch.set_num_threads(threads)
    pool = make_pool(model, dtype, slots)
    optimizers = {
        a: torch.optim.AdamW(pool.trainable_parameters(a), lr=1e-4) for a in pool.adapter_names
    }
    prompts = pool.format_prompts(observations(batch, prompt), SYSTEM, max_new_tokens=new_tokens)
    adapters = [pool.adapter_names[i % slots] for i in range(batch)]
    gens = pool.generate(prompts, adapters, max_new_tokens=new_tokens, generator_seed=0)
    for a, opt in optimizers.items():
        idx = [i for i in range(batch) if adapters[i] == a]
        out = pool.sequence_logprobs(
            a, [prompts[i] for i in idx], [gens[i].completion_ids for i in idx]
        )
        (-(out.logprobs * out.mask).sum() / out.mask.sum()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return {
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "base_bytes": sum(
            p.numel() * p.element_size() for p in pool.model.parameters() if not p.requires_grad
        ),
        "adapter_bytes": sum(
            p.numel() * p.element_size()
            for a in pool.adapter_names
            for p in pool.trainable_parameters(a)
        ),
    }


def memory_rows(model: str, dtype: str, batch: int, new_tokens: int, prompt: str) -> list[dict]:
    ctx = multiprocessing.get_context("spawn")
    rows = []
    print(
        f"\n{'model':<9}{'slots':>6}{'peak RSS MB':>13}{'base params MB':>16}{'adapter params MB':>19}"
    )
    for k in ADAPTER_COUNTS:
        with ctx.Pool(1) as proc:
            r = proc.apply(
                _memory_probe, (model, dtype, k, batch, new_tokens, prompt, torch.get_num_threads())
            )
        rows.append({"model": model, "slots": k, **r})
        print(
            f"{model:<9}{k:>6}{r['peak_rss'] / 2**20:>13.0f}{r['base_bytes'] / 2**20:>16.1f}"
            f"{r['adapter_bytes'] / 2**20:>19.2f}",
            flush=True,
        )
    return rows


# ---------------------------------------------------------------------- update step
STEP_SEQUENCES, STEP_PROMPT, STEP_COMPLETION, STEP_GROUP = 16, 96, 32, 4
STEP_ADAPTER = "policy"
STEP_LR = 1e-5
STEP_EPSILON = 0.2


def step_batch(
    pool: ModelPool, sequences: int, prompt_len: int, completion_len: int, seed: int = 0
) -> dict:
    """A fixed GRPO batch in both layouts: the lists :meth:`ModelPool.sequence_logprobs` takes,
    and the padded tensors TRL's ``_compute_loss`` takes (prompts left-padded, completions
    right-padded, exactly as TRL builds them).

    Random non-special token ids; prompt lengths from 3/4 of ``prompt_len`` up to it and
    completion lengths from half of ``completion_len`` up to it (row 0 has both maxima, so the
    padded shape is always ``prompt_len + completion_len``); advantages are the group-relative
    advantages of fixed random rewards in groups of ``STEP_GROUP``.
    """
    gen = torch.Generator().manual_seed(seed)
    special = set(pool.tokenizer.all_special_ids)
    vocab = torch.tensor([i for i in range(int(pool.model.config.vocab_size)) if i not in special])

    def tokens(n: int) -> list[int]:
        return vocab[torch.randint(len(vocab), (n,), generator=gen)].tolist()

    def length(i: int, top: int, low: int) -> int:
        return top if i == 0 else int(torch.randint(low, top + 1, (1,), generator=gen))

    prompts = [tokens(length(i, prompt_len, 3 * prompt_len // 4)) for i in range(sequences)]
    completions = [
        tokens(length(i, completion_len, max(1, completion_len // 2))) for i in range(sequences)
    ]
    rewards = torch.randn(sequences, generator=gen)
    groups = torch.arange(sequences) // STEP_GROUP
    advantages = group_advantages(rewards, groups)

    pad = pool.tokenizer.pad_token_id
    P, T = max(map(len, prompts)), max(map(len, completions))
    prompt_ids = torch.full((sequences, P), pad, dtype=torch.long)
    prompt_mask = torch.zeros((sequences, P), dtype=torch.long)
    completion_ids = torch.full((sequences, T), pad, dtype=torch.long)
    completion_mask = torch.zeros((sequences, T), dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        prompt_ids[i, P - len(p) :] = torch.tensor(p)
        prompt_mask[i, P - len(p) :] = 1
        completion_ids[i, : len(c)] = torch.tensor(c)
        completion_mask[i, : len(c)] = 1
    trl_inputs = {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": advantages,
        "num_items_in_batch": completion_mask.sum(),
    }
    return {
        "prompts": prompts,
        "completions": completions,
        "advantages": advantages,
        "trl": {k: v.to(pool.device) for k, v in trl_inputs.items()},
        "tokens": int(prompt_mask.sum() + completion_mask.sum()),
        "padded": (sequences, P + T),
    }


def trl_trainer(pool: ModelPool, sequences: int, completion_len: int, output_dir: str):
    """A real ``trl.GRPOTrainer`` on the pool's own PeftModel (adapter ``STEP_ADAPTER``
    active), set up like tests/trainers/test_grpo.py: on-policy dapo, beta 0, no activation
    checkpointing (TRL's default turns it on in ``train()``, which is never called here)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    threads = torch.get_num_threads()
    args = GRPOConfig(
        output_dir=output_dir,
        use_cpu=pool.device.type == "cpu",
        bf16=False,  # no autocast: TRL runs in the model's dtype, as the pool does
        report_to="none",
        per_device_train_batch_size=sequences,
        gradient_accumulation_steps=1,
        num_generations=STEP_GROUP,
        max_completion_length=completion_len,
        temperature=1.0,
        beta=0.0,
        loss_type="dapo",
        epsilon=STEP_EPSILON,
        activation_checkpointing=False,
        seed=0,
    )
    trainer = GRPOTrainer(
        model=pool.model,
        reward_funcs=lambda completions, **kwargs: [0.0] * len(completions),
        args=args,
        train_dataset=Dataset.from_dict({"prompt": ["a"] * STEP_GROUP}),
        processing_class=pool.tokenizer,
    )
    if trainer.model is not pool.model:
        raise RuntimeError("GRPOTrainer did not keep the PeftModel it was given")
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's training loop
    torch.set_num_threads(threads)
    return trainer


def step_row(model: str, dtype: str, repeats: int, header: bool = True) -> dict:
    """Seconds per update step, ours and TRL's, timed interleaved on one model and batch.

    One pool, one LoRA adapter (the ``LORA`` config, random B so the gradients are generic),
    one AdamW over its parameters. Every repeat times each way once, in alternating order:
    ``ours`` (``sequence_logprobs`` + ``grpo_loss`` dapo, beta 0 + backward + AdamW step),
    ``ours+ent`` (the same with ``return_entropy=True``, what trainer.py's ``_backward`` asks
    for, and what TRL always computes) and ``TRL`` (``GRPOTrainer._compute_loss`` + backward +
    AdamW step).

    TRL patches its fused LM head onto the shared base model (our forward passes through that
    wrapper unchanged). Off CUDA/XPU (no Triton) the fused head projects every position, prompt
    included, in float32; on GPU it projects the completion tokens only, so CPU ratios do not
    carry over to GPU. Ours keeps the completion logits only (``logits_to_keep``).
    """
    import tempfile

    pool = make_pool(model, dtype, 0)
    pool.add_adapter(STEP_ADAPTER, seed=0, **LORA)
    g = torch.Generator().manual_seed(1000)
    with torch.no_grad():
        for key, p in lora_parameters(pool.model, STEP_ADAPTER).items():
            if "lora_B" in key:
                p.copy_(torch.randn(p.shape, generator=g).to(p.dtype) * 0.01)
    sequences, completion_len = STEP_SEQUENCES, STEP_COMPLETION
    batch = step_batch(pool, sequences, STEP_PROMPT, completion_len)
    params = pool.trainable_parameters(STEP_ADAPTER)
    optimizer = torch.optim.AdamW(params, lr=STEP_LR)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = trl_trainer(pool, sequences, completion_len, tmp)

    def optimizer_step() -> None:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def ours(entropy: bool = False) -> torch.Tensor:
        out = pool.sequence_logprobs(
            STEP_ADAPTER,
            batch["prompts"],
            batch["completions"],
            requires_grad=True,
            return_entropy=entropy,
        )
        loss, _ = grpo_loss(
            out.logprobs,
            None,
            None,
            batch["advantages"].to(pool.device),
            out.mask,
            beta=0.0,
            epsilon_low=STEP_EPSILON,
            epsilon_high=STEP_EPSILON,
            loss_type="dapo",
        )
        loss.backward()
        return loss.detach()

    def trl() -> torch.Tensor:
        pool.model.train()  # TRL's training loop runs in train mode; the pool's forward sets it
        loss = trainer._compute_loss(pool.model, batch["trl"])
        loss.backward()
        pool.model.eval()
        return loss.detach()

    # Same maths? One backward each, no optimizer step: losses and gradient cosine.
    loss_ours = ours()
    grad_ours = torch.cat([p.grad.float().flatten() for p in params])
    optimizer.zero_grad(set_to_none=True)
    loss_trl = trl()
    grad_trl = torch.cat([p.grad.float().flatten() for p in params])
    optimizer.zero_grad(set_to_none=True)
    cosine = float(torch.nn.functional.cosine_similarity(grad_ours, grad_trl, dim=0))

    ways = {
        "ours": lambda: ours(),
        "ours_ent": lambda: ours(entropy=True),
        "trl": trl,
    }
    for fn in ways.values():  # warm-up: one full step each
        fn()
        optimizer_step()
    times: dict[str, list[float]] = {k: [] for k in ways}
    names = list(ways)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            ways[name]()
            optimizer_step()
            times[name].append(time.perf_counter() - start)
    row = {
        "model": model,
        "sequences": sequences,
        "tokens": batch["tokens"],
        "padded": batch["padded"],
        "repeats": repeats,
        "loss_ours": float(loss_ours),
        "loss_trl": float(loss_trl),
        "grad_cosine": cosine,
        **{k: statistics.median(v) for k, v in times.items()},
        **{f"{k}_all": v for k, v in times.items()},
    }
    print_step_row(row, header)
    return row


STEP_COLUMNS = (  # header, width, value
    ("model", 9, lambda r: r["model"]),
    ("sequences", 10, lambda r: r["sequences"]),
    ("tokens", 8, lambda r: r["tokens"]),
    ("padded", 9, lambda r: "x".join(map(str, r["padded"]))),
    ("ours s/step", 12, lambda r: f"{r['ours']:.3f}"),
    ("ours+ent s/step", 16, lambda r: f"{r['ours_ent']:.3f}"),
    ("TRL s/step", 11, lambda r: f"{r['trl']:.3f}"),
    ("ours/TRL", 9, lambda r: f"{r['ours'] / r['trl']:.2f}"),
    ("ours+ent/TRL", 13, lambda r: f"{r['ours_ent'] / r['trl']:.2f}"),
)


def print_step_row(r: dict, header: bool) -> None:
    """Median seconds per update step of each way, and the ratios; then the spread."""
    if header:
        print("\n" + "".join(f"{h:>{w}}" for h, w, _ in STEP_COLUMNS) + "   (median)")
    print("".join(f"{v(r)!s:>{w}}" for _, w, v in STEP_COLUMNS), flush=True)
    spread = ", ".join(
        f"{k} {min(r[f'{k}_all']):.3f}-{max(r[f'{k}_all']):.3f}"
        for k in ("ours", "ours_ent", "trl")
    )
    print(
        f"{'':>9}  {r['repeats']} interleaved repeats, min-max s: {spread}; loss ours "
        f"{r['loss_ours']:.6f} / TRL {r['loss_trl']:.6f}, gradient cosine {r['grad_cosine']:.4f}",
        flush=True,
    )


# ---------------------------------------------------------------------- the preset's step
def matmul_peak(dtype: str, size: int = 1024, repeats: int = 5) -> float:
    """GFLOP/s of a square ``dtype`` matmul on this machine (best of ``repeats``): the peak an
    update's achieved rate is compared with."""
    a = torch.randn(size, size).to(getattr(torch, dtype))
    b = torch.randn(size, size).to(getattr(torch, dtype))
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def _layer_parameters(pool: ModelPool) -> int:
    """Parameters of the transformer layers (no embedding, no LM head): the matmul FLOPs per
    token of a forward are about twice this."""
    base = pool.model.get_base_model() if hasattr(pool.model, "get_base_model") else pool.model
    return sum(p.numel() for p in base.model.layers.parameters())


def preset_rows(model: str, steps: int, quick: bool) -> list[dict]:
    """The team battle preset's training step (``benchmarks.learning_team_battle.CONFIG``),
    with and without ``share_prefix``, side by side: two trainers from the same config and
    seed, their episodes interleaved (the order alternating), each timed as rollout (every
    copy played, the counterfactual replays included), update (reference and old log-probs,
    loss, backward, optimizer steps) and the whole step. One warm-up episode each first.

    Tokens: padded tokens through the backbone per update (``ModelPool.token_counts``:
    ``score`` without gradients, ``train`` with). Achieved GFLOP/s of an update: (2 x score
    tokens + 6 x train tokens) x layer parameters / update seconds, the usual dense estimate
    (a LoRA backward skips the base weights' gradients, so 6 overstates it a little); the
    peak is a bf16 matmul's, measured here.
    """
    import asyncio
    import tempfile

    from benchmarks.learning_team_battle import CONFIG, QUICK
    from srl_trainers import MultiModelConfig, MultiModelTrainer

    fields = dict(CONFIG)
    if model == "tiny":
        fields.update(
            QUICK if quick else {},
            model_types=["tiny"],
            model_names={"tiny": checkpoint_of("tiny")},
            dtype="float32",
            kv_cache_size=200,
            system_prompt="Play.",
        )
    else:
        fields.update(model_types=["smollm2"], dtype="bfloat16")
    loop = asyncio.new_event_loop()
    rows = []
    with tempfile.TemporaryDirectory(prefix="srl_preset_step_") as tmp:
        trainers = {}
        for share in (True, False):
            cfg = MultiModelConfig(
                **{
                    **fields,
                    "max_episodes": steps + 1,
                    "seed": 0,
                    "share_prefix": share,
                    "checkpoint_dir": f"{tmp}/{share}/ckpt",
                    "log_dir": f"{tmp}/{share}/runs",
                    "enable_monitoring": False,
                    "save_interval": 10**6,
                }
            )
            trainer = MultiModelTrainer(cfg)
            trainer.setup()
            trainers[share] = trainer
        times = {share: {"rollout": [], "update": [], "step": []} for share in trainers}
        tokens = {share: {"score": [], "train": [], "generate": []} for share in trainers}

        def episode(share: bool, k: int, record: bool) -> None:
            trainer = trainers[share]
            pools = list(trainer.pools.values())
            before = [dict(pool.token_counts) for pool in pools]
            play, update = trainer.rollout.play, trainer._update_policies
            clock: dict[str, float] = {}

            async def timed_play(*a, **kw):
                start = time.perf_counter()
                try:
                    return await play(*a, **kw)
                finally:
                    clock["rollout"] = time.perf_counter() - start

            def timed_update(*a, **kw):
                start = time.perf_counter()
                try:
                    return update(*a, **kw)
                finally:
                    clock["update"] = time.perf_counter() - start

            trainer.rollout.play, trainer._update_policies = timed_play, timed_update
            start = time.perf_counter()
            try:
                loop.run_until_complete(trainer.train_multi_model_episode(k))
            finally:
                del trainer.rollout.play, trainer._update_policies
            clock["step"] = time.perf_counter() - start
            if record:
                for key in times[share]:
                    times[share][key].append(clock[key])
                for key in tokens[share]:
                    tokens[share][key].append(
                        sum(p.token_counts[key] - b.get(key, 0) for p, b in zip(pools, before))
                    )

        for k in range(steps + 1):
            for share in (True, False) if k % 2 == 0 else (False, True):
                episode(share, k, record=k > 0)
        pool = next(iter(trainers[True].pools.values()))
        layer_params = _layer_parameters(pool)
        peak = matmul_peak(fields["dtype"])
        for share in (True, False):
            t = {key: statistics.median(v) for key, v in times[share].items()}
            n = {key: statistics.median(v) for key, v in tokens[share].items()}
            flops = (2 * n["score"] + 6 * n["train"]) * layer_params
            rows.append(
                {
                    "model": model,
                    "share_prefix": share,
                    "steps": steps,
                    **{f"{key}_s": v for key, v in t.items()},
                    **{f"{key}_all": v for key, v in times[share].items()},
                    **{f"{key}_tokens": v for key, v in n.items()},
                    "update_gflops": flops / t["update"] / 1e9,
                    "matmul_peak_gflops": peak,
                }
            )
    loop.close()
    print_preset_rows(rows)
    return rows


def print_preset_rows(rows: list[dict]) -> None:
    shared, plain = rows
    print(
        f"\nteam battle preset step ({shared['model']}, median of {shared['steps']} interleaved "
        "episodes each)"
    )
    head = ("", "rollout s", "update s", "step s", "gen tokens", "update tokens", "GFLOP/s")
    print("".join(f"{h:>14}" for h in head))
    for r in rows:
        label = "shared" if r["share_prefix"] else "plain"
        cells = (
            label,
            f"{r['rollout_s']:.2f}",
            f"{r['update_s']:.2f}",
            f"{r['step_s']:.2f}",
            f"{r['generate_tokens']:.0f}",
            f"{r['score_tokens'] + r['train_tokens']:.0f}",
            f"{r['update_gflops']:.1f}",
        )
        print("".join(f"{c:>14}" for c in cells))
    ratios = (
        "plain/shared",
        f"{plain['rollout_s'] / shared['rollout_s']:.2f}x",
        f"{plain['update_s'] / shared['update_s']:.2f}x",
        f"{plain['step_s'] / shared['step_s']:.2f}x",
    )
    print("".join(f"{c:>14}" for c in ratios))
    print(
        f"  {shared['matmul_peak_gflops']:.1f} GFLOP/s: this machine's {1024}^3 matmul peak in "
        "the model's dtype; an update reaches "
        f"{shared['update_gflops'] / shared['matmul_peak_gflops']:.0%} (shared) and "
        f"{plain['update_gflops'] / plain['matmul_peak_gflops']:.0%} (plain) of it",
        flush=True,
    )


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["tiny", "embedded", "both"], default="both")
    parser.add_argument(
        "--quick", action="store_true", help="batch 8, 8 new tokens, 3 update-step repeats"
    )
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument(
        "--prompt",
        choices=["short", "env"],
        default="short",
        help="short: ~50-token prompts; env: coop_compete observations (~250)",
    )
    parser.add_argument(
        "--batch", type=int, default=None, help="prompts per call (default 32; quick 8)"
    )
    parser.add_argument("--new-tokens", type=int, default=None, help="default 32; quick 8")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per cell (best is kept)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's). On a shared 2-core machine 1 is steadier: two "
        "OpenMP threads stall whenever another process takes a core",
    )
    parser.add_argument(
        "--step-repeats",
        type=int,
        default=None,
        help="interleaved timed update steps per way (median is kept; default 7, quick 3)",
    )
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument("--skip-step", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-preset", action="store_true")
    parser.add_argument(
        "--preset-steps",
        type=int,
        default=None,
        help="timed episodes per way of the team battle preset (default 4, quick 2)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = args.batch or (8 if args.quick else 32)
    new_tokens = args.new_tokens or (8 if args.quick else 32)
    models = ["tiny", "embedded"] if args.model == "both" else [args.model]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, dtype {args.dtype}, "
        f"{new_tokens} new tokens, {args.prompt} prompts, sampling at temperature 1\n"
    )
    rows: dict[str, list[dict]] = {"generation": [], "step": [], "memory": [], "preset": []}
    for m in models:
        if not args.skip_generation:
            rows["generation"] += generation_rows(
                m, args.dtype, batch, new_tokens, args.repeats, args.prompt
            )
    step_repeats = args.step_repeats or (3 if args.quick else 7)
    for i, m in enumerate(models):
        if not args.skip_step:
            rows["step"].append(step_row(m, args.dtype, step_repeats, header=i == 0))
    for m in models:
        if not args.skip_memory:
            rows["memory"] += memory_rows(m, args.dtype, min(batch, 16), new_tokens, args.prompt)
    preset_steps = args.preset_steps or (2 if args.quick else 4)
    for m in models:
        if not args.skip_preset:
            rows["preset"] += preset_rows(m, preset_steps, args.quick)
    return rows


if __name__ == "__main__":
    main()
