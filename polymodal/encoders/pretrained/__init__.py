"""Pretrained encoders behind the same registry and ``Tokens`` contract as the built-in ones.

Registered names: ``efficientnet_lite0`` (image), ``minilm`` (text), ``sentence_transformer`` (text),
``hf_text``, ``hf_vision``, ``hf_audio``, ``timm`` (image) and ``open_clip`` (image or text). Importing this
package imports no model library: each one loads when an encoder is built, with an error naming the pip extra
when it is missing. See ``base.py`` for the frozen / projection / saving design and ``cache.py`` for the feature
cache.
"""

from . import efficientnet, hf, optional  # noqa: F401  (registration side effects)
from .base import MissingExtraError, PretrainedEncoder
from .cache import FeatureCache

__all__ = ["FeatureCache", "MissingExtraError", "PretrainedEncoder"]
