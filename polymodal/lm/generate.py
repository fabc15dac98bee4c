"""Generation from input embeddings: prefill once, then one token at a time through the LM's KV cache.

``decode(lm, packed, ...)`` is the one loop: greedy (``temperature=0``) or sampling (``temperature``, ``top_k``,
``top_p``, a seeded ``torch.Generator``), stop at the end token or at any of ``stop`` strings (the text is cut
before it), per row in a batch. ``use_cache=False`` recomputes the whole sequence at every step: the reference
the cached path is tested against. ``prefill`` may be replaced (FastV, ``fastv.py``): it returns the last logits,
the cache and the attention mask / next positions the decode steps continue from.

Times are kept apart (``Generated.prefill_s`` / ``decode_s``): token pruning speeds up prefill only.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from polymodal.lm.sequence import Packed


@dataclass
class Generated:
    """Generated ``texts`` and token ``ids`` per row, the prefill / decode wall time and decode step count."""

    texts: list[str]
    ids: list[list[int]]
    prefill_s: float = 0.0
    decode_s: float = 0.0
    steps: int = 0
    prefill_tokens: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def decode_tokens_per_s(self) -> float:
        n = sum(len(i) for i in self.ids)
        return n / self.decode_s if self.decode_s > 0 else float("nan")


def cache_kwarg(model) -> str:
    """The name the LM's forward takes its KV cache under (``cache`` in transformers 5.x, else the older one)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def out_cache(out):
    c = getattr(out, "cache", None)
    return c if c is not None else getattr(out, "past_key_values", None)


def pick(logits: Tensor, temperature: float, top_k: int | None, top_p: float | None,
         generator: torch.Generator | None) -> Tensor:
    """The next token per row: argmax at ``temperature <= 0``, else a sample after top-k and top-p filtering."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k:
        kth = logits.topk(min(top_k, logits.shape[-1]), -1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        srt, idx = logits.sort(-1, descending=True)
        p = srt.softmax(-1)
        drop = p.cumsum(-1) - p > top_p  # keep the smallest prefix whose mass reaches top_p (the first always)
        logits = logits.scatter(-1, idx, srt.masked_fill(drop, float("-inf")))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


def plain_prefill(model, packed: Packed):
    """The LM on the whole packed batch: (last logits [B, V], cache, attention mask, next position [B])."""
    out = model(inputs_embeds=packed.embeds, attention_mask=packed.attention, position_ids=packed.positions,
                use_cache=True, logits_to_keep=1)
    return out.logits[:, -1], out_cache(out), packed.attention, packed.positions[:, -1] + 1


@torch.no_grad()
def decode(
    model,
    tokenizer,
    packed: Packed,
    *,
    end_id: int,
    max_new_tokens: int = 16,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop: list[str] | tuple[str, ...] = (),
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    prefill=plain_prefill,
) -> Generated:
    """Generate up to ``max_new_tokens`` per row (see the module docstring)."""
    model.eval()
    bsz = packed.embeds.shape[0]
    embed = model.get_input_embeddings()
    key = cache_kwarg(model)
    t0 = time.perf_counter()
    if use_cache:
        logits, cache, attention, nxt = prefill(model, packed)
    else:
        out = model(inputs_embeds=packed.embeds, attention_mask=packed.attention, position_ids=packed.positions,
                    use_cache=False)
        logits, cache, attention, nxt = out.logits[:, -1], None, packed.attention, packed.positions[:, -1] + 1
        embeds, positions = packed.embeds, packed.positions
    t1 = time.perf_counter()
    ids: list[list[int]] = [[] for _ in range(bsz)]
    texts: list[str | None] = [None] * bsz
    done = torch.zeros(bsz, dtype=torch.bool)
    steps = 0
    for step in range(max_new_tokens):
        tok = pick(logits, temperature, top_k, top_p, generator)
        tok = torch.where(done, torch.full_like(tok, end_id), tok)
        for b in range(bsz):
            if done[b]:
                continue
            t = int(tok[b])
            if t == end_id:
                done[b] = True
                continue
            ids[b].append(t)
            if stop:
                text = tokenizer.decode(ids[b], skip_special_tokens=True)
                hit = [text.index(s) for s in stop if s in text]
                if hit:
                    texts[b] = text[: min(hit)]
                    done[b] = True
        steps += 1
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        attention = torch.cat([attention, torch.ones(bsz, 1, dtype=attention.dtype)], 1)
        if use_cache:
            out = model(input_ids=tok[:, None], attention_mask=attention, position_ids=nxt[:, None],
                        use_cache=True, **{key: cache})
            cache = out_cache(out)
        else:  # the reference: the whole sequence again, no cache
            embeds = torch.cat([embeds, embed(tok[:, None])], 1)
            positions = torch.cat([positions, nxt[:, None]], 1)
            out = model(inputs_embeds=embeds, attention_mask=attention, position_ids=positions, use_cache=False)
        logits = out.logits[:, -1]
        nxt = nxt + 1
    t2 = time.perf_counter()
    for b in range(bsz):
        if texts[b] is None:
            texts[b] = tokenizer.decode(ids[b], skip_special_tokens=True)
    return Generated([t.strip() for t in texts], ids, prefill_s=t1 - t0, decode_s=t2 - t1, steps=steps,
                     prefill_tokens=int(packed.attention.sum()))


__all__ = ["Generated", "decode", "pick", "plain_prefill"]
