"""Pretrained encoders behind the same registry and ``Tokens`` contract as the built-in ones.

Registered names: ``efficientnet_lite0`` (image), ``minilm`` (text), ``sentence_transformer`` (text),
``hf_text``, ``hf_vision``, ``hf_audio``, ``timm`` (image) and ``open_clip`` (image or text). Importing this
package imports no model library: each one loads when an encoder is built, with an error naming the pip extra
when it is missing. See ``base.py`` for the frozen / projection / saving design and ``cache.py`` for the feature
cache. Hugging Face: ``hf.py`` (loading helpers), ``hf_text.py``, ``hf_vision.py``, ``hf_audio.py`` (the encoders).
"""

from polymodal.encoders.pretrained.base import MissingExtraError, PretrainedEncoder
from polymodal.encoders.pretrained.cache import FeatureCache
from polymodal.registry import import_submodules

import_submodules(__name__, __path__)  # every module in this folder registers its encoder(s)

__all__ = ["FeatureCache", "MissingExtraError", "PretrainedEncoder"]
