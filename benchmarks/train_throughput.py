"""Training-loop throughput: generation with many LoRA adapters on one base model, and memory.

Run from the repository root::

    python -m benchmarks.train_throughput --model embedded --threads 1   # SmolLM2-135M, ~6 min
    python -m benchmarks.train_throughput --model tiny --quick           # tiny model, ~20 s
    python -m benchmarks.train_throughput --model both --prompt env      # ~250-token prompts

Generation: the same prompts through the chat template (``--prompt short``: one-line game
states, ~56 tokens with SmolLM2; ``env``: real coop_compete observations, ~250 tokens) are
completed four ways, back to back in every row, at 1, 4 and 8 adapters:

- ``base``: a bare base model (no PEFT wrapper), one ``generate`` call;
- ``mixed``: ONE call with a mixed-adapter batch (prompt i uses adapter i mod k), what the
  trainer does (the pool's per-row LoRA path);
- ``peft-mixed``: the same call through PEFT's own mixed-batch path (``adapter_names=``);
- ``per-adapter``: one call per adapter on its share of the prompts.

Each cell is generated tokens/s (completion tokens up to EOS over wall time, best of
``--repeats``, after one short warm-up call). Adapters get random B matrices so that they
change the outputs. Memory: peak RSS of a fresh process that loads the model, adds k trainable
slots (AdamW each), generates once and takes one update step per slot; plus the parameter
bytes of the base and of the adapters.

On a 2-core machine that other processes share, ``--threads 1`` gives steadier numbers: with
two OpenMP threads a forward stalls whenever another process takes a core (measured: 2-8x
slower and erratic, where 1 thread stayed within 5%).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time

import torch

import srl_envs
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
    """One row per adapter count; the three ways are timed back to back in every row."""
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
# Time per update step vs TRL's GRPOTrainer: added with the trainer's loss (see trainer.py).


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["tiny", "embedded", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="batch 8, 8 new tokens")
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
    parser.add_argument("--skip-memory", action="store_true")
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
    for m in models:
        generation_rows(m, args.dtype, batch, new_tokens, args.repeats, args.prompt)
    for m in models:
        if not args.skip_memory:
            memory_rows(m, args.dtype, min(batch, 16), new_tokens, args.prompt)


if __name__ == "__main__":
    main()
