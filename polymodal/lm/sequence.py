"""Sequence building: ``[chat template up to the user turn] [per present modality: learned start marker + its
connector tokens] [prompt + rest of the template] [answer + end token]``, as input embeddings.

The chat template is rendered once with a sentinel where the modality tokens go (``ChatLayout``), so the LM's own
template (system turn, role markers, generation prompt) surrounds them. The modality tokens are placed from the
connector's real output (its mask), so placeholder and feature counts cannot disagree; an absent modality adds
no token at all. Rows of different lengths are **left**-padded with explicit ``position_ids`` counted over the real
tokens only, so a row gets the same positions, the same attention and so the same tokens alone or in a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

SENTINEL = "\u2063MODALITIES\u2063"
IGNORE = -100  # label of a position that is not scored (everything but the answer)


@dataclass
class ChatLayout:
    """Token ids of the rendered chat template before and after the modality tokens, and the end-of-answer id."""

    before: list[int]
    after_template: str  # the text after the sentinel, with ``{prompt}`` where the prompt goes
    end_id: int

    @classmethod
    def of(cls, tokenizer, system: str | None) -> "ChatLayout":
        messages = ([{"role": "system", "content": system}] if system is not None else [])
        messages.append({"role": "user", "content": SENTINEL + "{prompt}"})
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        i = text.index(SENTINEL)
        end = tokenizer.eos_token_id
        if end is None:
            raise ValueError("the LM's tokenizer has no eos_token: it cannot mark where an answer ends")
        before = tokenizer(text[:i], add_special_tokens=False)["input_ids"]
        return cls(before, text[i + len(SENTINEL):], int(end))

    def prompt_ids(self, tokenizer, prompt: str) -> list[int]:
        return tokenizer(self.after_template.replace("{prompt}", prompt), add_special_tokens=False)["input_ids"]

    def answer_ids(self, tokenizer, answer: str) -> list[int]:
        return tokenizer(answer, add_special_tokens=False)["input_ids"] + [self.end_id]


@dataclass
class Packed:
    """A left-padded batch: ``embeds[B, T, D]``, ``attention[B, T]`` (long, 1 = real), ``positions[B, T]``,
    ``labels[B, T]`` (``IGNORE`` outside the answers) and ``modal[B, T]`` (True at modality tokens, markers
    excluded: what FastV may prune)."""

    embeds: Tensor
    attention: Tensor
    positions: Tensor
    labels: Tensor
    modal: Tensor


def pack(
    embed,
    layout: ChatLayout,
    prompts: list[list[int]],
    modal: list[list[tuple[Tensor, Tensor]]],
    answers: list[list[int]] | None = None,
) -> Packed:
    """One row per prompt: ``modal[b]`` is that row's ``(marker [D], tokens [n, D])`` per present modality (real
    tokens only). ``embed`` maps token ids to embeddings (the LM's input embeddings). ``answers``: teacher forcing."""
    rows, labels, is_modal = [], [], []
    before = torch.as_tensor(layout.before, dtype=torch.long)
    for b, ids in enumerate(prompts):
        ans = answers[b] if answers is not None else []
        text_after = torch.as_tensor(ids + ans, dtype=torch.long)
        parts, flags = [embed(before)], [torch.zeros(len(before), dtype=torch.bool)]
        for marker, toks in modal[b]:
            parts += [marker[None], toks]
            flags += [torch.zeros(1, dtype=torch.bool), torch.ones(len(toks), dtype=torch.bool)]
        parts.append(embed(text_after))
        flags.append(torch.zeros(len(text_after), dtype=torch.bool))
        x = torch.cat(parts)
        rows.append(x)
        is_modal.append(torch.cat(flags))
        lab = torch.full((len(x),), IGNORE, dtype=torch.long)
        if ans:
            lab[len(x) - len(ans):] = torch.as_tensor(ans)
        labels.append(lab)
    t = max(len(r) for r in rows)
    d = rows[0].shape[1]
    bsz = len(rows)
    embeds = rows[0].new_zeros(bsz, t, d)
    attention = torch.zeros(bsz, t, dtype=torch.long)
    lab_out = torch.full((bsz, t), IGNORE, dtype=torch.long)
    modal_out = torch.zeros(bsz, t, dtype=torch.bool)
    for b, r in enumerate(rows):
        n = len(r)
        embeds[b, t - n:] = r
        attention[b, t - n:] = 1
        lab_out[b, t - n:] = labels[b]
        modal_out[b, t - n:] = is_modal[b]
    positions = (attention.cumsum(1) - 1).clamp_min(0)
    return Packed(embeds, attention, positions, lab_out, modal_out)


def shift_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of the next token at the answer positions only."""
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE
    )


__all__ = ["ChatLayout", "IGNORE", "Packed", "pack", "shift_loss"]
