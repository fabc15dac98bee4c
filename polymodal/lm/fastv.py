"""FastV inside the LM: after layer K, keep the modality tokens the last prompt token attends to most.

``fastv_prefill`` runs the prefill layer by layer (Llama-family decoders: ``model.model.layers``, rotary
positions): layers ``0..K-1`` on the whole sequence; then the attention of layer K's query at the last position
to every key (mean over heads, real keys only) ranks each row's modality tokens, and the lowest ``drop`` fraction
of them is removed, per row, so it works in a padded batch. Layers ``K..`` run on the kept tokens only, with their
original positions (as FastV). The pruned tokens leave every layer's KV cache too, so the decode steps read one
consistent cache; pruning only shortens prefill (decode per token is about unchanged).

``prefill_flops`` counts the prefill's multiply-adds x 2 from the per-layer token counts (dense layers + the
attention scores and weighted sums), the quantity FastV reduces.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from polymodal.errors import PolymodalError
from polymodal.lm.sequence import Packed


def _rotate_half(x: Tensor) -> Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def _parts(model):
    base = getattr(model, "model", None)
    if base is None or not hasattr(base, "layers") or not hasattr(base, "rotary_emb"):
        raise PolymodalError(f"FastV needs a Llama-family decoder (model.model.layers with rotary positions); "
                             f"{type(model).__name__} is not one: use a budget before the LM (keep=) instead")
    return base


def _run(base, layers, h: Tensor, attention: Tensor, positions: Tensor, cache) -> Tensor:
    from transformers.masking_utils import create_causal_mask

    # the mask is built as for a fresh prefill: the layers run here hold nothing in the cache yet
    mask = create_causal_mask(config=base.config, inputs_embeds=h, attention_mask=attention, cache=None,
                              position_ids=positions)
    emb = base.rotary_emb(h, position_ids=positions)
    for layer in layers:
        h = layer(h, attention_mask=mask, position_embeddings=emb, position_ids=positions, cache=cache, use_cache=True)
    return h


def last_token_attention(base, layer_idx: int, h: Tensor, attention: Tensor, positions: Tensor) -> Tensor:
    """``[B, T]``: layer ``layer_idx``'s attention from the last position to every key, mean over heads."""
    layer = base.layers[layer_idx]
    attn = layer.self_attn
    x = layer.input_layernorm(h)
    b, t, _ = x.shape
    d = attn.head_dim
    q = attn.q_proj(x[:, -1:]).view(b, 1, -1, d).transpose(1, 2)
    k = attn.k_proj(x).view(b, t, -1, d).transpose(1, 2)
    cos, sin = base.rotary_emb(h, position_ids=positions)
    cos, sin = cos[:, None], sin[:, None]
    q = q * cos[:, :, -1:] + _rotate_half(q) * sin[:, :, -1:]
    k = k * cos + _rotate_half(k) * sin
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    scores = (q @ k.transpose(-1, -2)).squeeze(2) / math.sqrt(d)  # [B, H, T]
    scores = scores.masked_fill(attention[:, None] == 0, float("-inf"))
    return scores.softmax(-1).mean(1)


def keep_mask(scores: Tensor, modal: Tensor, attention: Tensor, drop: float) -> Tensor:
    """``[B, T]``: the real tokens kept: all text, and per row the modality tokens not among its lowest ``drop``."""
    keep = attention.bool().clone()
    for b in range(scores.shape[0]):
        idx = modal[b].nonzero().squeeze(1)
        n = int(round(drop * len(idx)))
        if n:
            keep[b, idx[scores[b, idx].argsort()[:n]]] = False
    return keep


def _gather(keep: Tensor) -> tuple[Tensor, Tensor]:
    """Left-padded index ``[B, T']`` of the kept positions and the new attention mask."""
    counts = keep.sum(1)
    t = int(counts.max())
    index = torch.zeros(keep.shape[0], t, dtype=torch.long)
    attention = torch.zeros(keep.shape[0], t, dtype=torch.long)
    for b in range(keep.shape[0]):
        pos = keep[b].nonzero().squeeze(1)
        index[b, t - len(pos):] = pos
        attention[b, t - len(pos):] = 1
    return index, attention


def fastv_prefill(model, packed: Packed, *, modal: Tensor, layer: int, drop: float):
    """Prefill with FastV pruning after ``layer`` (see the module docstring); the ``plain_prefill`` contract."""
    from transformers import DynamicCache

    base = _parts(model)
    n_layers = len(base.layers)
    if not 1 <= layer < n_layers:
        raise PolymodalError(f"fastv_layer={layer} must be in [1, {n_layers - 1}] for this {n_layers}-layer LM")
    cache = DynamicCache(config=model.config)
    h = _run(base, base.layers[:layer], packed.embeds, packed.attention, packed.positions, cache)
    scores = last_token_attention(base, layer, h, packed.attention, packed.positions)
    index, attention = _gather(keep_mask(scores, modal, packed.attention, drop))
    take = index[..., None].expand(-1, -1, h.shape[-1])
    h = h.gather(1, take)
    positions = packed.positions.gather(1, index)
    for i in range(layer):  # the pruned tokens leave the early layers' cache as well
        lay = cache.layers[i]
        kv = index[:, None, :, None].expand(-1, lay.keys.shape[1], -1, lay.keys.shape[-1])
        lay.keys, lay.values = lay.keys.gather(2, kv), lay.values.gather(2, kv)
    h = _run(base, base.layers[layer:], h, attention, positions, cache)
    logits = model.lm_head(base.norm(h[:, -1:]))[:, -1]
    return logits, cache, attention, positions[:, -1] + 1


def prefill_flops(config, tokens_per_layer: list[int]) -> float:
    """FLOPs (2 x multiply-adds) of a prefill whose layer ``i`` sees ``tokens_per_layer[i]`` tokens (one row)."""
    d, f = config.hidden_size, config.intermediate_size
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", heads) or heads
    hd = getattr(config, "head_dim", None) or d // heads
    dense = d * heads * hd * 2 + d * kv * hd * 2 + 3 * d * f  # q, o, k, v, gate/up/down projections
    total = 0.0
    for t in tokens_per_layer:
        total += 2 * t * dense + 2 * 2 * t * t * heads * hd  # + scores and weighted sum (full square)
    return total


__all__ = ["fastv_prefill", "keep_mask", "last_token_attention", "prefill_flops"]
