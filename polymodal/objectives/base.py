"""The objective contract: how ``heads.projection.alignment_loss`` calls an alignment objective is declared on its
class, never probed with ``hasattr``.

* ``takes_pair`` (default True): the objective compares two modalities and is called as ``objective(a, b)`` (clip,
  siglip, uniformity_alignment). False: it is called with ``{modality: features}`` of every modality at once
  (symile: one multilinear term over all of them; pairwise / anchor: their own pairs).
* ``handles_missing`` (default False): the objective takes every row plus ``present={modality: [B] bool}`` and
  chooses its own rows per pair (pairwise, anchor). Otherwise it is called on the rows where every modality it
  compares is present.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from polymodal.registry import Registry


class Objective(nn.Module):
    """Base of the alignment objectives (``OBJECTIVES``); returns a scalar loss."""

    takes_pair: ClassVar[bool] = True
    handles_missing: ClassVar[bool] = False


OBJECTIVES: Registry[Objective] = Registry("objective")  # filled by a decorator in each objective's own module

__all__ = ["OBJECTIVES", "Objective"]
