"""The encoder contract: ``Encoder(spec, dim, **options)(inputs, present) -> Tokens``.

``inputs`` is the dict of tensors the modality's processor produced (see ``polymodal/data/kinds/base.py`` for
the keys per kind). ``present[B]`` says which samples have the modality; encoders may compute anything for absent
samples as long as it is finite, and must set ``Tokens.present = present``. ``Tokens.mask`` marks real tokens
(e.g. audio frames beyond a clip's length are padding).
"""

from __future__ import annotations

from torch import Tensor, nn

from ..data.schema import ModalitySpec
from ..registry import Registry
from ..types import Tokens


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
