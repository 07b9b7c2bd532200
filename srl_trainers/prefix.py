"""Shared prompt prefixes: compute each prefix that several rows of a batch share once.

A GRPO group's copies share one env seed, so an agent's prompt is the same in all of them
(team battle: 8 copies, a 182-token prompt, a completion of at most 12 tokens). The rows of a
batch that start with the same tokens (under the same adapter: LoRA on ``k_proj``/``v_proj``
changes the keys and values) form a cluster; the cluster's common prefix goes through the
model once, its keys and values are gathered to every row of the cluster
(:meth:`~transformers.Cache.batch_select_indices`, an indexing op, so gradients of every row
flow back into the one prefix forward), and each row's own tokens (the rest of its prompt and
its completion) run on top of that cache. Attention, positions and the causal mask are those
of the plain forward, so the log-probs, the loss and its gradients are the same maths (the
Prefix Grouper argument, arXiv 2506.05433); tests hold them equal to 1e-5 in float32.

:func:`plan_prefixes` chooses the clusters: rows sorted by (key, tokens), split into runs of
neighbours by dynamic programming so that the tokens saved, ``sum (rows - 1) * prefix``, are
the most. A prefix always leaves a row at least its last prompt token, so the row's first
completion token is predicted inside the row's own forward. The plan is dropped when it would
not save at least ``min_saving`` of the plain layout's padded tokens (each forward pads its
rows to the longest).
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

__all__ = ["PrefixPlan", "plan_prefixes"]

# Prefixes shorter than this are not worth an extra forward call.
MIN_PREFIX_TOKENS = 8


@dataclass(frozen=True)
class PrefixPlan:
    """Which rows share which prefix.

    ``prefixes[k]``: the tokens of shared prefix k; ``prefix_keys[k]``: its key (the adapter);
    ``row_prefix[i]``: the prefix row i starts with, -1 for none; ``shared[i]``: its length for
    row i (0 for none): row i's own tokens start at ``prompt[shared[i]:]``.
    """

    prefixes: list[list[int]]
    prefix_keys: list[Hashable]
    row_prefix: list[int]
    shared: list[int]

    def tokens(self, row_lengths: Sequence[int]) -> tuple[int, int]:
        """(plain, shared): the padded tokens the plain layout and this plan put through the
        model for rows of ``row_lengths`` (prompt + completion) each."""
        plain = len(row_lengths) * max(row_lengths)
        widest_prefix = max(len(p) for p in self.prefixes)
        own = max(n - s for n, s in zip(row_lengths, self.shared))
        return plain, len(self.prefixes) * widest_prefix + len(row_lengths) * own


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def plan_prefixes(
    prompts: Sequence[Sequence[int]],
    keys: Sequence[Hashable] | None = None,
    *,
    extra: Sequence[int] | None = None,
    min_prefix: int = MIN_PREFIX_TOKENS,
    min_saving: float = 0.2,
) -> PrefixPlan | None:
    """The clusters of rows that share a prompt prefix, or None when sharing saves too little.

    ``keys`` (one per row, e.g. the adapter name): rows share only with rows of the same key.
    ``extra``: tokens each row adds after its prompt (completion lengths; 0 by default), for
    the saving estimate. ``min_prefix``: the shortest prefix worth sharing. ``min_saving``:
    the least fraction of the plain layout's padded tokens the plan must save.
    """
    n = len(prompts)
    if n < 2:
        return None
    keys = list(keys) if keys is not None else [None] * n
    extra = list(extra) if extra is not None else [0] * n
    order = sorted(range(n), key=lambda i: (repr(keys[i]), tuple(prompts[i])))
    # link[j]: the prefix sorted rows j and j + 1 can share (each keeps its last prompt token)
    link = []
    for a, b in itertools.pairwise(order):
        if keys[a] != keys[b]:
            link.append(0)
            continue
        common = _common(prompts[a], prompts[b])
        link.append(min(common, len(prompts[a]) - 1, len(prompts[b]) - 1))
    # best[j]: the most tokens saved by the first j sorted rows; cut[j]: where its last run starts
    best = [0] * (n + 1)
    cut = list(range(n + 1))
    for j in range(1, n + 1):
        best[j], cut[j] = best[j - 1], j - 1  # row j - 1 alone
        shortest = None
        for i in range(j - 2, -1, -1):  # the run of sorted rows i .. j - 1
            shortest = link[i] if shortest is None else min(shortest, link[i])
            if shortest < min_prefix:
                break
            gain = best[i] + (j - i - 1) * shortest
            if gain > best[j]:
                best[j], cut[j] = gain, i
    if best[n] == 0:
        return None
    runs = []
    j = n
    while j > 0:
        runs.append((cut[j], j))
        j = cut[j]
    prefixes: list[list[int]] = []
    prefix_keys: list[Hashable] = []
    row_prefix, shared = [-1] * n, [0] * n
    for i, j in reversed(runs):
        if j - i < 2:
            continue
        length = min(link[i : j - 1])
        first = order[i]
        prefixes.append(list(prompts[first][:length]))
        prefix_keys.append(keys[first])
        for row in order[i:j]:
            row_prefix[row], shared[row] = len(prefixes) - 1, length
    plan = PrefixPlan(prefixes, prefix_keys, row_prefix, shared)
    plain, with_plan = plan.tokens([len(p) + e for p, e in zip(prompts, extra)])
    return plan if with_plan <= (1 - min_saving) * plain else None
