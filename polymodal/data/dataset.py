"""Decoded arrays -> batches. Decoding happens once per table; a batch is a set of row slices."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from polymodal.types import Batch

Decoded = dict[str, tuple[dict[str, np.ndarray], np.ndarray]]  # modality -> (arrays, present[N])


class DecodedDataset(Dataset):
    """Indexable by a list of row positions; returns a whole ``Batch`` (no per-sample collate overhead)."""

    def __init__(self, decoded: Decoded, target: np.ndarray | None = None, rows: np.ndarray | None = None) -> None:
        n = {len(p) for _, p in decoded.values()}
        if len(n) != 1:
            raise ValueError(f"modalities disagree on the number of rows: {n}")
        self.n = n.pop()
        self.rows = np.arange(self.n) if rows is None else np.asarray(rows)
        self.arrays = {m: {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in a.items()} for m, (a, _) in decoded.items()}
        self.present = {m: torch.from_numpy(np.asarray(p, dtype=bool)) for m, (_, p) in decoded.items()}
        self.target = None if target is None else torch.as_tensor(target)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx: Sequence[int]) -> Batch:
        pos = torch.as_tensor(self.rows[np.asarray(idx)], dtype=torch.long)
        return Batch(
            inputs={m: {k: v[pos] for k, v in a.items()} for m, a in self.arrays.items()},
            present={m: p[pos] for m, p in self.present.items()},
            target=None if self.target is None else self.target[pos],
            index=pos,
        )

    def subset(self, rows: np.ndarray) -> "DecodedDataset":
        """A view on some rows (positions into the decoded arrays), sharing memory."""
        out = DecodedDataset.__new__(DecodedDataset)
        out.n, out.arrays, out.present, out.target = self.n, self.arrays, self.present, self.target
        out.rows = self.rows[np.asarray(rows)]
        return out


def make_loader(ds: DecodedDataset, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """Batches straight from memory: the sampler yields index lists, the dataset returns whole batches."""
    if shuffle:
        g = torch.Generator().manual_seed(seed)
        sampler = RandomSampler(range(len(ds)), generator=g)
    else:
        sampler = SequentialSampler(range(len(ds)))
    return DataLoader(ds, batch_size=None, sampler=BatchSampler(sampler, batch_size, drop_last=False), num_workers=0)
