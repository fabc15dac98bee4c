"""Shared embedding spaces: contrastive alignment of modalities (CLIP, SigLIP, Symile, pairwise, anchor).

``align`` trains an ``AlignedModel`` from paired records; ``AlignHead`` also plugs into supervised models
(``fit(..., align="clip", align_weight=0.5)``) so one model can classify and retrieve.
"""

from .config import AlignConfig
from .head import AlignHead, build_objective, fuse
from .model import AlignedModel, align, is_align_run, load_aligned
from .net import AlignNet

__all__ = ["AlignConfig", "AlignHead", "AlignNet", "AlignedModel", "align", "build_objective", "fuse", "is_align_run", "load_aligned"]


class _CallableModule(__import__("types").ModuleType):
    """``polymodal.align`` is both this package and the function: ``pm.align(table, ...)`` calls ``align``.

    (Importing the subpackage sets the attribute ``polymodal.align`` to the module, which would otherwise shadow
    the public function of the same name.)"""

    def __call__(self, *args, **kwargs):
        return align(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
