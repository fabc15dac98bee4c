"""Decoded arrays -> batches. Decoding happens once per table; a batch is a set of row slices."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

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


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size of the initialised ``torch.distributed`` group ((0, 1) without one).

    Read when a loader is iterated, not when it is built: under Lightning DDP or Ray Train the process group
    exists only once the trainer has set up its strategy."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ShardedBatchSampler(Sampler[list[int]]):
    """Batches of row positions, deterministic from (seed, epoch), split over the ranks of a distributed run.

    The order is the global one a single process would see: epoch ``e`` draws the same permutation from a
    generator seeded with ``seed`` as ``RandomSampler`` did in epoch ``e`` (two ``randperm`` draws per epoch: the
    second is the one ``RandomSampler`` makes, and discards, when its iterator is run to the end), so results
    match earlier releases bitwise. Each global batch of ``batch_size`` rows is split into ``world`` equal
    contiguous pieces, one per rank: the ranks together see exactly the single-process batches, and no row is
    seen twice. In training (``even=True``) a global batch is cut down to a multiple of ``world`` rows (at most
    ``world - 1`` rows left out per batch, different ones each epoch), because DDP and the contrastive gather need
    every rank to hold the same number of rows; a single process drops nothing. For validation (``even=False``)
    the ordered rows are cut into ``world`` nearly equal blocks, each batched on its rank, none dropped.

    Resumable: ``state_dict()`` holds the epoch and how many batches of it were handed out; after
    ``load_state_dict`` the next iteration over that epoch skips those batches (a mid-epoch resume continues with
    the next unseen batch). Lightning calls ``set_epoch`` at each epoch start and the state methods through the
    loader (``ResumableLoader``).
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int = 0, even: bool = True,
                 shard: bool = True) -> None:
        self.n, self.batch_size, self.shuffle, self.seed, self.even = int(n), int(batch_size), shuffle, seed, even
        self.shard = shard  # False: every process sees every batch (inference)
        self.epoch = 0
        self.handed_out = 0  # batches of ``epoch`` yielded so far
        self._skip: tuple[int, int] | None = None  # (epoch, batches) to skip, from load_state_dict
        self._gen: torch.Generator | None = None
        self._gen_epoch = -1  # the epoch whose permutation the generator drew last

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches": self.handed_out, "seed": self.seed, "n": self.n}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state.get("n", self.n)) != self.n:
            raise ValueError(f"the checkpoint's loader held {state.get('n')} rows, this one {self.n}")
        self.epoch = int(state["epoch"])
        self._skip = (self.epoch, int(state["batches"]))

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        if self._gen is None or self._gen_epoch >= self.epoch:  # replay from the seed (a resume, a re-run)
            self._gen, self._gen_epoch = torch.Generator().manual_seed(self.seed), -1
        perm = None
        while self._gen_epoch < self.epoch:
            perm = torch.randperm(self.n, generator=self._gen)
            torch.randperm(self.n, generator=self._gen)  # RandomSampler's discarded draw (see the class doc)
            self._gen_epoch += 1
        return perm.numpy()

    def _rank_and_world(self) -> tuple[int, int]:
        return rank_and_world() if self.shard else (0, 1)

    def _batches(self) -> list[np.ndarray]:
        order = self._order()
        rank, world = self._rank_and_world()
        if world == 1:
            return [order[i : i + self.batch_size] for i in range(0, self.n, self.batch_size)]
        if not self.even:
            block = np.array_split(order, world)[rank]
            return [block[i : i + self.batch_size] for i in range(0, len(block), self.batch_size)]
        out = []
        for i in range(0, self.n, self.batch_size):
            k = len(order[i : i + self.batch_size]) // world
            if k:
                out.append(order[i + rank * k : i + (rank + 1) * k])
        return out

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        skip = self._skip[1] if self._skip is not None and self._skip[0] == self.epoch else 0
        self._skip = None
        self.handed_out = skip
        for b in batches[skip:]:
            self.handed_out += 1
            yield b.tolist()

    def __len__(self) -> int:
        rank, world = self._rank_and_world()
        if world == 1 or not self.even:
            rows = self.n if world == 1 else len(np.array_split(np.arange(self.n), world)[rank])
            return -(-rows // self.batch_size)
        full, last = divmod(self.n, self.batch_size)
        return full * (self.batch_size >= world) + (last >= world)


class ResumableLoader(DataLoader):
    """A ``DataLoader`` over a ``ShardedBatchSampler`` whose position Lightning saves in its checkpoints and
    restores on resume (it calls ``state_dict`` / ``load_state_dict`` of a loader that has them)."""

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.load_state_dict(state)


def make_loader(ds: DecodedDataset, batch_size: int, shuffle: bool, seed: int = 0, shard: bool = False) -> DataLoader:
    """Batches straight from memory: the sampler yields index lists, the dataset returns whole batches.

    ``shard`` (training and validation loaders): under DDP ``batch_size`` is the global batch and each rank gets
    its share (``ShardedBatchSampler``; shuffled loaders keep the per-rank batches the same size). Without it
    (inference) every process iterates every row."""
    sampler = ShardedBatchSampler(len(ds), batch_size, shuffle, seed, even=shuffle, shard=shard)
    return ResumableLoader(ds, batch_size=None, sampler=sampler, num_workers=0)
