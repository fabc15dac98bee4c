"""What a run builds and how it trains: ``ModelConfig`` (a tree of ``Component`` choices) and ``TrainConfig``.

Every pluggable choice is a ``Component(name, options)`` resolved through its registry: each modality's encoder,
the fusion, the task head, the alignment objective, the token reducer (inside ``TokenBudget``). The same two
dataclasses describe a supervised run (``fit``) and an alignment run (``align``: ``fusion=None``, ``align`` set),
so one net, one trainer and one run-folder format serve both. ``config/io.py`` reads and writes them (JSON/YAML,
flat keyword shorthands, ``--set`` overrides); ``config/presets/`` holds the named presets.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from polymodal.errors import PolymodalError, unknown_message
from polymodal.registry import Component
from polymodal.tokens.spec import TokenBudget


class ConfigError(PolymodalError, ValueError):
    """An option has a wrong value, type or name; the message names the option and what is valid."""


PROJECTIONS = ("linear", "mlp")
STREAM_MODES = ("auto", "on", "off")
STRATEGIES = ("auto", "ddp", "fsdp")
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "64-true")
CENTERS = ("frozen", "all", "none")


@dataclass
class AlignSpec:
    """A shared embedding space: one projection per modality (``heads/projection.py``) and a contrastive objective."""

    objective: Component = field(default_factory=lambda: Component("clip"))
    """clip | siglip | symile | pairwise | anchor (clip / siglip over >= 3 modalities average over all pairs)."""
    embed_dim: int | None = None
    """Width of the shared space (default 64; under ``lock``, the locked tower's feature width, and a different
    value is refused)."""
    projection: str | None = None
    """Per-modality head from the pooled encoder tokens to the shared space: linear | mlp (default mlp; under
    ``lock``, linear)."""
    lock: str = "auto"
    """Keep one frozen tower's own feature space as the shared space (locked-tower tuning, as LiT, Zhai et al.
    2022, with the text tower the one kept): that modality's vectors are its tower's centred features, unprojected,
    and every other modality maps into them with one projection (a frozen tower from its raw pooled features, not
    through the net's narrower ``dim``). Names unseen in training (zero-shot labels) then land in the text tower's
    own semantic space instead of one fitted to the training names: emoji categories held out one at a time,
    zero-shot top-1 62 hits of 1911 against 28 for two-sided projections and 49 for a ridge regression peer
    (``benchmarks/zero_shot_heldout.py``).
    ``auto``: the text modality when this is an alignment run (no fusion) of frozen pretrained towers only,
    exactly one of them text, and ``embed_dim`` is not set | ``none`` | a modality name (a frozen tower)."""
    weight: float = 1.0
    """Weight of the objective in the loss (beside the task loss in a supervised run)."""
    uniformity_weight: float = 0.0
    """+ weight x (alignment + uniformity) regulariser per pair of modalities (shrinks the modality gap)."""
    center: str = "frozen"
    """Centre a modality's pooled vectors over the batch before its projection (``heads/projection.py``):
    frozen (the modalities whose encoder is a frozen pretrained tower) | all | none."""

    def validate(self) -> None:
        from polymodal.objectives import OBJECTIVES

        if self.embed_dim is not None and self.embed_dim <= 0:
            raise ConfigError(f"align.embed_dim must be > 0, got {self.embed_dim}")
        if self.projection is not None and self.projection not in PROJECTIONS:
            raise ConfigError(f"align.projection must be one of {PROJECTIONS}, got {self.projection!r}")
        if not isinstance(self.lock, str) or not self.lock:
            raise ConfigError(f"align.lock must be 'auto', 'none' or a modality name, got {self.lock!r}")
        if self.center not in CENTERS:
            raise ConfigError(f"align.center must be one of {CENTERS}, got {self.center!r}")
        if self.uniformity_weight < 0 or self.weight < 0:
            raise ConfigError(f"align weights must be >= 0, got weight={self.weight}, "
                              f"uniformity_weight={self.uniformity_weight}")
        if self.objective.name == "uniformity_alignment":  # a regulariser: uniformity_weight, not an objective
            raise ConfigError("uniformity_alignment is a regulariser: set align.uniformity_weight instead")
        check_options("objective", OBJECTIVES.get(self.objective.name), self.objective)


@dataclass
class ModelConfig:
    """The net: encoders -> fusion -> task head (and/or projections into a shared space), chosen by name."""

    dim: int = 64
    """Token / fused vector width."""
    encoders: dict[str, Component] = field(default_factory=dict)
    """Encoder per modality name (or per kind: ``{"image": "efficientnet_lite0"}``); default: the kind's own."""
    fusion: Component | None = field(default_factory=lambda: Component("transformer"))
    """Fusion operator (``polymodal list fusions``); None for an alignment run (no fusion, no task head)."""
    head: Component | None = None
    """Task head; None: the task's own (classify | regress), options such as ``{"dropout": 0.1}``."""
    modality_dropout: float = 0.5
    """Per-sample probability of hiding each modality in training (at least one is always kept)."""
    aux_weight: float = 1.0
    """Weight of the unimodal auxiliary losses (one per modality, on its own vector)."""
    align: AlignSpec | None = None
    """A shared embedding space beside (or, with ``fusion=None``, instead of) the task."""
    tokens: TokenBudget = field(default_factory=TokenBudget)
    """Token budget: fraction of each stream's tokens to keep, reducer, schedule, where (``tokens/spec.py``)."""

    @property
    def is_alignment(self) -> bool:
        """An embedding-only net (``align`` runs): encoders + projections, no fusion and no task head."""
        return self.fusion is None

    def validate(self) -> None:
        if self.dim <= 0 or self.dim % 4:
            raise ConfigError(f"dim must be a positive multiple of 4, got {self.dim}")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ConfigError(f"modality_dropout must be in [0, 1), got {self.modality_dropout}")
        if self.aux_weight < 0:
            raise ConfigError(f"aux_weight must be >= 0, got {self.aux_weight}")
        if self.fusion is None and self.align is None:
            raise ConfigError("a net without a fusion is an alignment net: give it an align objective (align='clip')")
        check_names(self)
        if self.align is not None:
            self.align.validate()


@dataclass
class TrainConfig:
    """How the net trains (Lightning; ``train/loop.py``)."""

    epochs: int = 40
    """Maximum epochs (early stopping on the validation split)."""
    batch_size: int = 64
    lr: float = 2e-3
    """Peak learning rate (AdamW, 10 % warm-up then cosine decay)."""
    weight_decay: float = 0.05
    val_fraction: float = 0.1
    """Share of training rows held out for early stopping when no validation table is given (0: none)."""
    patience: int = 8
    """Epochs without validation improvement before stopping."""
    seed: int = 0
    max_minutes: float | None = None
    """Wall-clock cap on training."""
    stream: str = "auto"
    """Data path: on (decode per batch in DataLoader workers, memory flat in table size) | off (decode the table
    once, in memory) | auto (stream when the decoded table would pass ``data/paths.py: STREAM_BYTES``)."""
    num_workers: int = 2
    """DataLoader worker processes decoding batches on the streaming path (0: in the training process)."""
    devices: int = 1
    """Processes (CPU) or GPUs per node; > 1 trains data-parallel (``strategy``). ``batch_size`` stays the global
    batch: each process gets ``batch_size / (devices x num_nodes)`` rows of it."""
    num_nodes: int = 1
    """Machines taking part (launched by torchrun / SLURM, see docs/scale.md)."""
    strategy: str = "auto"
    """auto (ddp when more than one process) | ddp | fsdp (GPU only: shards large pretrained towers)."""
    precision: str = "32-true"
    """Lightning precision: 32-true | bf16-mixed | 16-mixed (GPU) | bf16-true | 64-true."""
    checkpoint_every_n_steps: int = 100
    """Crash-safe checkpoint of the whole training state every N optimiser steps (and at each epoch end) in
    ``<out>/checkpoints/last.ckpt`` (0: only at epoch ends); ``--resume`` continues from it."""

    def validate(self) -> None:
        if self.devices < 1 or self.num_nodes < 1:
            raise ConfigError(f"devices and num_nodes must be >= 1, got devices={self.devices}, "
                              f"num_nodes={self.num_nodes}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(unknown_message("strategy", self.strategy, STRATEGIES))
        if self.precision not in PRECISIONS:
            raise ConfigError(unknown_message("precision", self.precision, PRECISIONS))
        if self.checkpoint_every_n_steps < 0:
            raise ConfigError(f"checkpoint_every_n_steps must be >= 0, got {self.checkpoint_every_n_steps}")
        if isinstance(self.stream, bool):  # YAML 1.1 (--set stream=on, a config file) reads on / off as booleans
            self.stream = "on" if self.stream else "off"
        if self.stream not in STREAM_MODES:
            raise ConfigError(unknown_message("stream", self.stream, STREAM_MODES))
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.val_fraction < 0.9:
            raise ConfigError(f"val_fraction must be in [0, 0.9), got {self.val_fraction}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.patience < 0:
            raise ConfigError(f"patience must be >= 0, got {self.patience}")


def check_names(cfg: ModelConfig) -> None:
    """Every component names a registered part (before any table is read: a typo fails in milliseconds)."""
    from polymodal import encoders as _encoders  # noqa: F401  (registers the built-in encoders)
    from polymodal import fusion as _fusion  # noqa: F401  (registers the built-in fusions)
    from polymodal.encoders.base import ENCODERS
    from polymodal.fusion.base import FUSIONS
    from polymodal.heads.task import HEADS

    if cfg.fusion is not None:
        check_options("fusion", FUSIONS.get(cfg.fusion.name), cfg.fusion, ("names", "dim"))
    if cfg.head is not None:
        check_options("head", HEADS.get(cfg.head.name), cfg.head, ("dim", "n_out"))
    for comp in cfg.encoders.values():
        check_options("encoder", ENCODERS.get(comp.name), comp, ("spec", "dim"))


def check_options(kind: str, factory: Any, comp: Component, positional: tuple[str, ...] = ()) -> None:
    """The component's options are keyword arguments its factory accepts (factories that take ``**options``
    check their own)."""
    params = inspect.signature(factory).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items() if n not in positional and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in comp.options:
        if key not in valid:
            msg = unknown_message(f"{kind} {comp.name!r} option", key, valid) if valid else \
                f"{kind} {comp.name!r} takes no options, got {key!r}"
            raise ConfigError(msg)


ON_ERROR = ("raise", "missing")


def check_on_error(on_error: Any) -> str:
    """The decode policy for undecodable cells: ``raise`` (default) or ``missing`` (counted and reported)."""
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error must be 'raise' or 'missing', got {on_error!r}")
    return on_error
