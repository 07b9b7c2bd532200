"""Access to one LoRA adapter's parameters inside a PEFT multi-adapter model.

PEFT names an adapter's tensors ``...<module>.lora_A.<adapter>.weight``. The helpers here
return them keyed by the name with the adapter part replaced by ``{adapter}``, so the same
key addresses the same tensor in every adapter of one base model (what the weight-update
strategies need to average gradients or weights across adapters).

The LoRA math of the strategies lives here too: seeded init, exact mixing of several adapters'
effective deltas (``mix_adapters``) and a divergence measure between adapters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "adapter_divergence",
    "adapter_key",
    "init_lora_weights",
    "lora_deltas",
    "lora_modules",
    "lora_parameters",
    "mix_adapters",
    "product_svd",
]


def adapter_key(param_name: str, adapter: str) -> str | None:
    """``'x.lora_A.slot0.weight'`` -> ``'x.lora_A.{adapter}.weight'`` (None if not this adapter)."""
    for part in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B"):
        token = f".{part}.{adapter}."
        if token in param_name:
            return param_name.replace(token, f".{part}.{{adapter}}.")
        if param_name.endswith(f".{part}.{adapter}"):
            return param_name[: -len(adapter)] + "{adapter}"
    return None


def lora_parameters(model: nn.Module, adapter: str) -> dict[str, nn.Parameter]:
    """All LoRA parameters of ``adapter``, keyed adapter-independently (see module doc)."""
    out = {}
    for name, param in model.named_parameters():
        key = adapter_key(name, adapter)
        if key is not None:
            out[key] = param
    if not out:
        raise KeyError(f"adapter {adapter!r} has no LoRA parameters in this model")
    return out


def lora_modules(
    model: nn.Module, adapter: str
) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """Per LoRA layer: ``(A, B, scaling)`` of ``adapter``, so that delta W = scaling * B @ A."""
    from peft.tuners.lora import LoraLayer

    out = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and adapter in module.lora_A:
            out[name] = (
                module.lora_A[adapter].weight,
                module.lora_B[adapter].weight,
                float(module.scaling[adapter]),
            )
    if not out:
        raise KeyError(f"adapter {adapter!r} has no LoRA layers in this model")
    return out


# ---------------------------------------------------------------------- LoRA math
# Everything below works on the effective delta of one LoRA layer, ΔW = scaling · B @ A
# (B: out × r, A: r × in), and avoids forming the dense out × in matrix where it can.


def init_lora_weights(model: nn.Module, adapter: str, seed: int) -> None:
    """Initialise ``adapter`` like PEFT's default (A Kaiming-uniform, B zero) from ``seed`` alone.

    Independent of the global RNG and of the device: two adapters given the same seed get
    bit-identical A matrices (what the shared-init strategies rely on).
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for A, B, _ in lora_modules(model, adapter).values():
            a = torch.empty(A.shape, dtype=torch.float32)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=gen)
            A.copy_(a)
            B.zero_()


def lora_deltas(model: nn.Module, adapter: str) -> dict[str, torch.Tensor]:
    """Dense effective delta ``scaling * B @ A`` of every LoRA layer of ``adapter`` (detached)."""
    return {
        name: (s * B.detach() @ A.detach())
        for name, (A, B, s) in lora_modules(model, adapter).items()
    }


def product_svd(
    B: torch.Tensor, A: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD ``U, S, Vh`` of ``B @ A`` (B: m × k, A: k × n) without forming the m × n product.

    QR of both factors reduces the problem to the SVD of a small core (at most k × k), so the
    cost is linear in m and n. Returns min(m, n, k) singular triplets, in float64.
    """
    qb, rb = torch.linalg.qr(B.double())
    qa, ra = torch.linalg.qr(A.double().T)
    u, s, vh = torch.linalg.svd(rb @ ra.T, full_matrices=False)
    return qb @ u, s, vh @ qa.T


def mix_adapters(
    model: nn.Module, adapters: Sequence[str], weights: Sequence[float], strength: float
) -> float:
    """Set every adapter's delta to ``(1 - λ) ΔW_j + λ Σ_i w_i ΔW_i`` (λ = ``strength``), per layer.

    Where all adapters share A and scaling in a layer (FFA-LoRA), mixing the B matrices is the
    exact mix of the products and keeps A. Elsewhere the mixed product is re-factored at each
    adapter's rank by truncated SVD: ``A = c V_r^T``, ``B = U_r S_r / (scaling c)``, with ``c``
    the adapter's previous RMS row norm of A (so A keeps its scale and no rank component dies
    when a singular value is 0). That is the best rank-r approximation (Eckart-Young), exact when
    the target's rank is at most r. Returns the relative residual
    ``sqrt(Σ dropped σ² / Σ σ²)`` over the re-factored layers (0.0 when none was re-factored).
    """
    if len(weights) != len(adapters):
        raise ValueError(f"{len(weights)} weights for {len(adapters)} adapters")
    if strength == 0 or len(adapters) < 2:
        return 0.0
    layers = {a: lora_modules(model, a) for a in adapters}
    _check_plain_lora(model, adapters)
    names = list(layers[adapters[0]])
    for a in adapters[1:]:
        if list(layers[a]) != names:
            raise ValueError(f"adapters {adapters[0]!r} and {a!r} adapt different layers")
    lam = float(strength)
    resid_sq = total_sq = 0.0
    with torch.no_grad():
        for name in names:
            factors = [layers[a][name] for a in adapters]
            As, Bs, scales = zip(*factors)
            if all(torch.equal(A, As[0]) for A in As[1:]) and len(set(scales)) == 1:
                bd = [B.double() for B in Bs]
                avg = sum(w * b for w, b in zip(weights, bd))
                for B, b in zip(Bs, [(1 - lam) * b + lam * avg for b in bd]):
                    B.copy_(b)
                continue
            a_cat = torch.cat([A.double() for A in As], dim=0)
            new = []
            for j, (A_j, _, s_j) in enumerate(factors):
                coef = [lam * w + (1 - lam) * (i == j) for i, w in enumerate(weights)]
                b_cat = torch.cat([c * s * B.double() for c, s, B in zip(coef, scales, Bs)], dim=1)
                u, sv, vh = product_svd(b_cat, a_cat)
                r = A_j.shape[0]
                if sv.numel() < r:
                    raise ValueError(f"layer {name!r}: LoRA rank {r} exceeds the layer's size")
                total_sq += float((sv**2).sum())
                resid_sq += float((sv[r:] ** 2).sum())
                c = float(A_j.double().norm()) / math.sqrt(r) or 1.0
                new.append((c * vh[:r], u[:, :r] * (sv[:r] / (s_j * c))))
            for (A, B, _), (a_new, b_new) in zip(factors, new):
                A.copy_(a_new)
                B.copy_(b_new)
    return math.sqrt(resid_sq / total_sq) if total_sq > 0 else 0.0


def adapter_divergence(model: nn.Module, adapters: Sequence[str]) -> float:
    """Mean pairwise relative distance ``‖ΔW_a - ΔW_b‖ / max(‖ΔW_a‖, ‖ΔW_b‖)`` in [0, 2].

    Norms are Frobenius over all LoRA layers of the adapter, computed from the factors
    (``‖B A‖² = Σ (BᵀB) ⊙ (AAᵀ)``) in float64. Identical adapters give exactly 0.0, and so do
    two adapters that are both still at a zero delta.
    """
    if len(adapters) < 2:
        return 0.0
    layers = {a: lora_modules(model, a) for a in adapters}
    pairs = [(a, b) for i, a in enumerate(adapters) for b in adapters[i + 1 :]]
    norm_sq = dict.fromkeys(adapters, 0.0)
    dist_sq = dict.fromkeys(pairs, 0.0)
    with torch.no_grad():
        for name in layers[adapters[0]]:
            f = {a: layers[a][name] for a in adapters}
            for a, (A, B, s) in f.items():
                norm_sq[a] += _frobenius_sq(s * B.double(), A.double())
            for a, b in pairs:
                (Aa, Ba, sa), (Ab, Bb, sb) = f[a], f[b]
                if torch.equal(Aa, Ab) and torch.equal(Ba, Bb) and sa == sb:
                    continue
                b_cat = torch.cat([sa * Ba.double(), -sb * Bb.double()], dim=1)
                dist_sq[(a, b)] += _frobenius_sq(
                    b_cat, torch.cat([Aa.double(), Ab.double()], dim=0)
                )
    rel = []
    for a, b in pairs:
        denom = math.sqrt(max(norm_sq[a], norm_sq[b]))
        rel.append(math.sqrt(dist_sq[(a, b)]) / denom if dist_sq[(a, b)] > 0 and denom > 0 else 0.0)
    return sum(rel) / len(rel)


def _frobenius_sq(B: torch.Tensor, A: torch.Tensor) -> float:
    return max(float(((B.T @ B) * (A @ A.T)).sum()), 0.0)


def _check_plain_lora(model: nn.Module, adapters: Sequence[str]) -> None:
    """Weight mixing needs plain unmerged linear LoRA: ΔW = scaling · B @ A and nothing else."""
    from peft.tuners.lora import LoraLayer

    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        for a in adapters:
            if a in module.lora_embedding_A:
                raise ValueError(
                    f"{name}: embedding LoRA of {a!r} cannot be mixed; use plain LoRA on linear layers"
                )
            if a in module.lora_variant or module.lora_bias.get(a, False):
                raise ValueError(
                    f"{name}: {a!r} is not plain LoRA (DoRA/variant/bias), which the federated mix needs"
                )
            if a in module.merged_adapters:
                raise ValueError(f"{name}: {a!r} is merged into the base weights; unmerge first")
