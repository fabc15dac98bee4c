"""The encoder contract: ``Encoder(spec, dim, **options)(inputs, present) -> Tokens``.

``inputs`` is the dict of tensors the modality's processor produced (see ``polymodal/data/kinds/base.py`` for
the keys per kind). ``present[B]`` says which samples have the modality; encoders may compute anything for absent
samples as long as it is finite, and must set ``Tokens.present = present``. ``Tokens.mask`` marks real tokens
(e.g. audio frames beyond a clip's length are padding).

Capabilities are declared on the class (``Encoder`` declares the defaults), never probed with ``hasattr``:
``supports_token_budget`` (the encoder reduces its own tokens under a token budget; it then reads the
``token_state`` that ``set_token_budget`` gives it, see ``polymodal/tokens/budget.py``), ``lr_scaled_parameters()``
(parameters trained at a scaled learning rate, e.g. an unfrozen pretrained backbone) and ``needs_weights``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from polymodal.data.schema import ModalitySpec
from polymodal.registry import Registry
from polymodal.types import Tokens

if TYPE_CHECKING:
    from polymodal.tokens.spec import BudgetState


class Encoder(nn.Module):
    kind: tuple[str, ...] = ()  # the modality kinds this encoder accepts
    supports_token_budget: bool = False
    """True when the encoder reduces its own tokens under a token budget (its transformer blocks run through
    ``tokens.budget.encoder_stack``); ``install_token_budget`` then routes its modality's budget here."""
    needs_weights: bool = False
    """True when building it needs pretrained weights from elsewhere (``encoders/pretrained``)."""
    frozen_features: bool = False
    """The tokens come from a frozen pretrained tower (they do not adapt to the loss): an alignment head centres
    them over the batch before its projection (``AlignSpec.center``) and may keep their space (``AlignSpec.lock``)."""
    token_state: BudgetState | None = None
    """The token budget this encoder reads at each forward (``set_token_budget``); None: it runs untouched."""
    token_trace: list[tuple[int, int]] | None = None
    """(tokens in attention, tokens in MLP) per block of the last forward, for FLOPs accounting (None: no blocks)."""

    def __init__(self, spec: ModalitySpec, dim: int) -> None:
        super().__init__()
        if self.kind and spec.kind not in self.kind:
            raise ValueError(
                f"encoder {type(self).__name__} handles kinds {self.kind}, but modality {spec.name!r} is {spec.kind!r}"
            )
        self.spec = spec
        self.dim = dim

    def forward(self, inputs: dict[str, Tensor], present: Tensor) -> Tokens:  # pragma: no cover - abstract
        raise NotImplementedError

    def use_raw_features(self) -> None:
        """Emit the frozen tower's own features (width ``feature_dim``, set as ``self.dim``) instead of projecting
        them to the net's ``dim``: a locked alignment (``AlignSpec.lock``) maps them itself. Only encoders with
        ``frozen_features`` can."""
        raise TypeError(f"{type(self).__name__} has no frozen features to emit unprojected")

    def set_token_budget(self, state: BudgetState | None) -> None:
        """The token-budget hook (``tokens.budget.install_token_budget``): the state to read at each forward, or
        None to run untouched. Only an encoder that ``supports_token_budget`` may be given a state."""
        if state is not None and not self.supports_token_budget:
            raise ValueError(f"encoder {type(self).__name__} of modality {self.spec.name!r} does not reduce tokens "
                             "itself (supports_token_budget is False); route its budget to the fusion or boundary")
        self.token_state = state

    def lr_scaled_parameters(self) -> list[tuple[nn.Parameter, float]]:
        """(parameter, learning-rate multiplier) pairs trained at a scaled learning rate (``build_optimizer``);
        none by default (pretrained encoders: the unfrozen backbone at ``lr_scale``)."""
        return []

    @classmethod
    def preprocessing(cls, spec: ModalitySpec, **options: Any) -> dict[str, Any]:
        """Processor options this encoder needs (e.g. a pretrained model's image size or tokenizer), applied to
        ``spec.options`` before the schema is fitted (``apply_preprocessing``); the built-in encoders need none."""
        return {}


ENCODERS: Registry[Encoder] = Registry("encoder")

# The encoder used for each kind when the user names none.
DEFAULT_ENCODER = {
    "image": "image_conv",
    "depth": "image_conv",
    "audio": "audio_logmel",
    "text": "text_transformer",
    "tabular": "tabular_ft",
    "timeseries": "timeseries_patch",
}


def apply_preprocessing(schema: Any, encoders: dict[str, str], encoder_options: dict[str, dict[str, Any]]) -> None:
    """Put into each modality's options what its encoder needs from the processor (before ``fit_schema``), so
    the needs are stored in the schema and a reloaded run decodes the same way."""
    for spec in schema:
        name = encoders.get(spec.name, DEFAULT_ENCODER[spec.kind])
        spec.options.update(ENCODERS.get(name).preprocessing(spec, **encoder_options.get(spec.name, {})))
