"""Heads: task heads (classify, regress) from the fused vector, and the projection head into a shared space."""

from polymodal.heads.task import HEADS

__all__ = ["HEADS"]
