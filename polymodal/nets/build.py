"""Which encoder each modality gets (``ModelConfig.encoders`` by modality name, else by kind, else the kind's own),
and which frozen tower an alignment keeps as its shared space (``AlignSpec.lock``)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from polymodal.config.model import AlignSpec, ConfigError, ModelConfig
from polymodal.data.schema import Schema
from polymodal.errors import unknown_message
from polymodal.encoders.base import DEFAULT_ENCODER, ENCODERS, apply_preprocessing
from polymodal.registry import Component


def encoder_components(schema: Schema, cfg: ModelConfig) -> dict[str, Component]:
    """modality -> encoder ``Component``. A key of ``cfg.encoders`` must name a modality or a kind."""
    kinds = {s.kind for s in schema}
    for key in cfg.encoders:
        if key not in schema.names and key not in kinds:
            raise ConfigError(_column_hint(schema, key, cfg.encoders[key]) or unknown_message(
                "modality (or kind) in encoders", key, sorted({*schema.names, *kinds})))
    out = {}
    for s in schema:
        comp = cfg.encoders.get(s.name) or cfg.encoders.get(s.kind) or Component(DEFAULT_ENCODER[s.kind])
        if comp.name not in ENCODERS:
            ENCODERS.get(comp.name)  # raises UnknownNameError with the valid names
        out[s.name] = comp
    return out


def _column_hint(schema: Schema, key: str, comp: Component) -> str | None:
    """The message for an ``encoders`` key that names a column rather than a modality: the label, or a column
    that joined a modality with others (the ``tabular`` one: numbers and strings with few distinct values)."""
    if key == schema.label:
        return (f"encoders names {key!r}, the label column: it is what the model predicts, not an input. "
                f"Name a modality ({', '.join(schema.names)}) or a kind")
    spec = next((s for s in schema if key in s.columns), None)
    if spec is None:
        return None
    accepts = ENCODERS.get(comp.name).kind if comp.name in ENCODERS else ()
    if len(spec.columns) == 1 and (not accepts or spec.kind in accepts):
        return f"encoders names column {key!r}, whose modality is named {spec.name!r}: key it by {spec.name!r}"
    kind = "text" if not accepts or "text" in accepts else accepts[0]
    why = " (numbers, or strings with few distinct values)" if spec.kind == "tabular" else ""
    others = f" with {len(spec.columns) - 1} other column(s)" if len(spec.columns) > 1 else ""
    return (f"encoders names column {key!r}, which was read as {spec.kind}{why} and joined modality {spec.name!r}"
            f"{others}; to give it its own {comp.name!r} encoder, pass kinds={{{key!r}: {kind!r}}} "
            f"(CLI --kinds {key}={kind})")


def build_encoders(schema: Schema, cfg: ModelConfig) -> nn.ModuleDict:
    comps = encoder_components(schema, cfg)
    return nn.ModuleDict({s.name: ENCODERS.build(comps[s.name].name, s, cfg.dim, **comps[s.name].options) for s in schema})


def prepare_schema(schema: Schema, cfg: ModelConfig) -> None:
    """Store in each modality's options what its encoder needs from decoding (a pretrained tokenizer, an image
    size, a sampling rate), before the schema is fitted, so a reloaded run decodes the same way."""
    comps = encoder_components(schema, cfg)
    apply_preprocessing(schema, {m: c.name for m, c in comps.items()}, {m: dict(c.options) for m, c in comps.items()})


def resolve_lock(spec: AlignSpec, encoders: Mapping[str, nn.Module], is_alignment: bool) -> str | None:
    """The modality ``AlignSpec.lock`` keeps (None: every modality is projected), checked against the encoders."""
    frozen = [m for m, e in encoders.items() if e.frozen_features]
    if spec.lock == "none":
        return None
    if spec.lock == "auto":
        text = [m for m in frozen if encoders[m].spec.kind == "text"]
        if is_alignment and spec.embed_dim is None and len(frozen) == len(encoders) and len(text) == 1:
            return text[0]
        return None
    if spec.lock not in encoders:
        raise ConfigError(f"align.lock={spec.lock!r} is not a modality of this table {list(encoders)}; "
                          "name one of them, or use 'auto' / 'none'")
    if spec.lock not in frozen:
        raise ConfigError(f"align.lock={spec.lock!r}: its encoder is not a frozen pretrained tower, so it has no fixed "
                          "space to keep; lock a frozen tower's modality, or use lock='none'")
    if not is_alignment:
        raise ConfigError("align.lock keeps a tower's own feature width, which a fusion cannot take: "
                          "use lock='none' beside a fusion")
    width = encoders[spec.lock].feature_dim
    if spec.embed_dim is not None and spec.embed_dim != width:
        raise ConfigError(f"align.embed_dim={spec.embed_dim} but the locked modality {spec.lock!r} keeps its "
                          f"tower's {width}-d space; leave embed_dim unset, or set lock='none'")
    return spec.lock
