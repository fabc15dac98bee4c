"""The encoder contract: ``Encoder(spec, dim, **options)(inputs, present) -> Tokens``.

``inputs`` is the dict of tensors the modality's processor produced (see ``polymodal/data/kinds/base.py`` for
the keys per kind). ``present[B]`` says which samples have the modality; encoders may compute anything for absent
samples as long as it is finite, and must set ``Tokens.present = present``. ``Tokens.mask`` marks real tokens
(e.g. audio frames beyond a clip's length are padding).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from polymodal.data.schema import ModalitySpec
from polymodal.registry import Registry
from polymodal.types import Tokens


class Encoder(nn.Module):
    kind: tuple[str, ...] = ()  # the modality kinds this encoder accepts

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
