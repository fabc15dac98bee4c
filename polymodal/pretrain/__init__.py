"""Self-supervised multimodal pre-training: masked any-to-any modelling (MultiMAE / 4M) on unlabelled tables.

``pretrain`` (``recipe.py``) trains ``PretrainNet`` (``net.py``: the encoders and fusion of ``fit``'s net, plus a
decoder per modality, ``decoder.py``) on per-modality targets (``targets.py``) with masks drawn on the data side
(``masking.py``); ``PretrainedModel`` (``run.py``, run type ``pretrain``) saves, loads and predicts a modality from
the others (``generate.py``). ``fit(init=run, freeze="encoders")`` starts a supervised model from its weights.
"""

from polymodal.pretrain.masking import sample_visible
from polymodal.pretrain.net import PretrainNet, PretrainSpec
from polymodal.pretrain.recipe import pretrain
from polymodal.pretrain.run import PretrainedModel
from polymodal.pretrain.targets import TARGETS

__all__ = ["PretrainNet", "PretrainSpec", "PretrainedModel", "TARGETS", "pretrain", "sample_visible"]
