"""Multimodal tokens into a causal language model: connectors, sequence building, training, generation.

``source.py`` (the LM, offline: a local folder or the packaged SmolLM2 GGUF), ``connectors.py`` (``CONNECTORS``:
linear, mlp, pixel_shuffle, resampler, pool_linear), ``sequence.py`` (chat template + modality tokens, padding),
``bridge.py`` (``MultimodalLM``), ``train.py`` (stage 1 with Lightning), ``generate.py`` (greedy / sampling, KV
cache), ``budget.py`` + ``fastv.py`` (token budgets before and inside the LM), ``model.py`` (``LanguageModel``,
the run type ``lm``), ``fit.py`` (``fit_lm``), ``tasks.py`` (question tables from the bundled datasets).
"""

from polymodal.lm.connectors import CONNECTORS, Connector
from polymodal.lm.fit import fit_lm
from polymodal.lm.model import LanguageModel, load_lm_run
from polymodal.lm.source import LoadedLM, load_lm

__all__ = ["CONNECTORS", "Connector", "LanguageModel", "LoadedLM", "fit_lm", "load_lm", "load_lm_run"]
