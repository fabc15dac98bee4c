"""The streaming data path: rows read and decoded per batch inside DataLoader worker processes.

``StreamDataset`` holds what a ``DecodedDataset`` holds minus the decoded arrays: the row source
(``shards.py``), the fitted schema, the labelled rows' global positions and targets, and the decode report.
``loader(batch_size, shuffle, seed)`` gives a ``StreamLoader`` (a ``DataLoader`` over an ``IterableDataset``):

* **Order**, fixed by ``(seed, epoch)``: the units (Parquet row groups) are permuted, cut into windows of about
  ``SHUFFLE_ROWS`` rows, and the rows are shuffled within each window (so a batch reads few row groups); the order
  is cut into batches of ``batch_size``. Without ``shuffle``: row order. ``epoch_batches`` is that plan.
* **Sharding**, as the in-memory ``ShardedBatchSampler`` does it: ``batch_size`` is the global batch (rounded down
  to a multiple of the world size ``w``); rank ``r`` takes the ``r``-th contiguous piece of every global batch, so
  all ranks run the same number of steps, and worker ``k`` of ``n`` decodes global batches ``k, k + n, ...``. The
  DataLoader yields its workers' batches round-robin, so a rank sees its pieces in plan order whatever the number
  of workers, and every row is seen exactly once per epoch over all ranks x workers: none dropped, none repeated
  (the pieces of the last batch may differ by one row when the row count is not a multiple of ``w``; a contrastive
  gather over ranks needs equal pieces, so an alignment objective under DDP wants such a row count). The rank and
  world size come from ``torch.distributed`` when it is initialised (else 0 of 1), read as an epoch starts, in the
  training process; ``shard=False`` (inference) gives every process every row.
* **Decoding** happens in the workers through the one decode path (``table.decode_table``) on the batch's rows,
  indexed by global row, so a ``DecodeError`` names the global row, the column and the cell's file, plus the shard
  that holds the row. Under ``on_error="missing"`` each batch's counts travel back with it and are merged into
  ``StreamDataset.report`` in the training process (first pass over the rows only, so epochs do not count twice).
  Across ranks: ``gather_report`` (collective; every rank calls it) merges the ranks' reports.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from polymodal.data.dataset import DecodedDataset
from polymodal.data.dataset import make_loader as memory_loader
from polymodal.data.kinds.base import DecodeContext, DecodeReport
from polymodal.data.schema import Schema
from polymodal.data.shards import RowSource
from polymodal.data.table import decode_table
from polymodal.errors import DecodeError, PolymodalError
from polymodal.types import Batch

SHUFFLE_ROWS = 8192  # rows shuffled together: the window of row groups one stretch of batches draws from

# Lightning warns that an IterableDataset's length may be wrong with several workers; a StreamLoader's length is
# exact (each worker yields only its own batches), so the advice does not apply
warnings.filterwarnings("ignore", message=r".*`IterableDataset` has `__len__` defined.*")


class StreamDataset:
    """Rows of a source to decode per batch: ``positions`` (global rows of the labelled rows), ``target`` (aligned
    with ``positions``), ``rows`` (which of them this view holds, like ``DecodedDataset.rows``)."""

    def __init__(self, source: RowSource, schema: Schema, positions: np.ndarray, target: np.ndarray | None, *,
                 on_error: str = "raise", num_workers: int = 2, report: DecodeReport | None = None) -> None:
        self.source, self.schema, self.on_error, self.num_workers = source, schema, on_error, int(num_workers)
        self.positions = np.asarray(positions, dtype=np.int64)
        self.target = None if target is None else torch.as_tensor(np.array(target))
        self.rows = np.arange(len(self.positions))
        self.report = report if report is not None else DecodeReport()

    def __len__(self) -> int:
        return len(self.rows)

    def fingerprint(self) -> str:
        """A hash of what this view trains on: the source's identity, the fitted schema, the rows and targets (what
        a resumed run checks against its checkpoint, ``train/checkpoint.py``)."""
        import hashlib
        import json

        h = hashlib.blake2b(digest_size=16)
        h.update(self.source.identity().encode())
        h.update(json.dumps(self.schema.to_dict(), sort_keys=True, default=str).encode())
        for a in (self.positions, self.rows) + (() if self.target is None else (self.target.numpy(),)):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def subset(self, rows: np.ndarray) -> "StreamDataset":
        """A view on some rows (positions into ``rows``), sharing the source, targets and report."""
        out = StreamDataset.__new__(StreamDataset)
        out.__dict__.update(self.__dict__)
        out.rows = self.rows[np.asarray(rows, dtype=np.int64)]
        return out

    def loader(self, batch_size: int, shuffle: bool, seed: int = 0, *, shard: bool = True, rank: int | None = None,
               world: int | None = None, num_workers: int | None = None) -> "StreamLoader":
        """A ``StreamLoader`` over this view; ``rank`` / ``world`` override ``torch.distributed`` (tests);
        ``shard=False``: this process reads every row."""
        if not shard:
            rank, world = 0, 1
        stream = EpochStream(self, batch_size, shuffle, seed)
        return StreamLoader(stream, self.report, self.num_workers if num_workers is None else num_workers,
                            rank=rank, world=world)


def make_loader(ds: DecodedDataset | StreamDataset, batch_size: int, shuffle: bool, seed: int = 0,
                shard: bool = False):
    """The loader of either data path: batches from memory (``dataset.make_loader``) or streamed (``shard``: split
    over the ranks of a distributed run, as ``dataset.make_loader`` does)."""
    if isinstance(ds, StreamDataset):
        return ds.loader(batch_size, shuffle, seed, shard=shard)
    return memory_loader(ds, batch_size, shuffle, seed, shard=shard)


def epoch_batches(units: np.ndarray, batch_size: int, seed: int, epoch: int, shuffle: bool,
                  world: int = 1) -> list[np.ndarray]:
    """The epoch's batches: lists of item numbers ``0..len(units)-1`` (``units[i]``: the unit item ``i`` lies in).

    Deterministic in ``(seed, epoch)``; the batch count is a multiple of ``world`` (see the module docstring).
    """
    n = len(units)
    if n < world:
        raise PolymodalError(f"{n} row(s) cannot be shared by {world} processes: every rank needs at least one row")
    if shuffle:
        rng = np.random.default_rng([seed, epoch])
        ids, counts = np.unique(units, return_counts=True)
        perm = rng.permutation(len(ids))
        window = np.empty(len(ids), dtype=np.int64)
        window[perm] = (np.cumsum(counts[perm]) - counts[perm]) // SHUFFLE_ROWS  # window of each unit
        item_window = window[np.searchsorted(ids, units)]
        order = np.lexsort((rng.random(n), item_window))
    else:
        order = np.arange(n)
    return np.split(order, batch_cuts(n, batch_size, world))


def batch_cuts(n: int, batch_size: int, world: int) -> list[int]:
    """Where the epoch's order is cut into global batches: every ``batch_size`` rows, rounded down to a multiple of
    ``world`` (equal per-rank pieces); a last batch with fewer rows than ranks joins the one before."""
    step = max(world, batch_size - batch_size % world)
    cuts = list(range(step, n, step))
    if cuts and n - cuts[-1] < world:
        cuts.pop()
    return cuts


def rank_piece(batch: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Rank ``rank``'s contiguous piece of a global batch (pieces differ by at most one row)."""
    return np.array_split(batch, world)[rank] if world > 1 else batch


def rank_world(rank: int | None = None, world: int | None = None) -> tuple[int, int]:
    """(rank, world size): the arguments, else ``torch.distributed``'s when initialised, else (0, 1)."""
    if rank is not None and world is not None:
        return int(rank), int(world)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


@dataclass
class _Failure:
    """An exception raised in a worker, carried to the training process whole (its class, args and attributes:
    ``DecodeError`` has a constructor that plain pickling cannot call)."""

    cls: type
    args: tuple
    state: dict

    @classmethod
    def of(cls, e: BaseException) -> "_Failure":
        return cls(type(e), e.args, dict(e.__dict__))

    def rebuild(self) -> BaseException:
        e = self.cls.__new__(self.cls)
        e.args = self.args
        e.__dict__.update(self.state)
        return e


class EpochStream(IterableDataset):
    """One epoch of one rank's batches (the DataLoader's dataset). ``epoch``, ``rank``, ``world`` and ``start``
    (batches of this rank's epoch already done: resume) are set by ``StreamLoader`` before each epoch."""

    def __init__(self, ds: StreamDataset, batch_size: int, shuffle: bool, seed: int) -> None:
        self.ds, self.batch_size, self.shuffle, self.seed = ds, int(batch_size), bool(shuffle), int(seed)
        self.epoch, self.rank, self.world, self.start = 0, 0, 1, 0
        pos = ds.positions[ds.rows]
        self.units = np.searchsorted(ds.source.unit_starts, pos, side="right") - 1

    def plan(self) -> list[np.ndarray]:
        """The epoch's global batches (item numbers), in order."""
        return epoch_batches(self.units, self.batch_size, self.seed, self.epoch, self.shuffle, self.world)

    def n_batches(self, world: int) -> int:
        """Steps per epoch (the same on every rank): the number of global batches."""
        return len(batch_cuts(len(self.units), self.batch_size, world)) + 1

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        if info is not None:
            self.ds.source.reopen()  # a forked worker opens its own files
        for batch in self.plan()[self.start :][wid::nw]:
            try:
                yield self.decode(rank_piece(batch, self.rank, self.world))
            except PolymodalError as e:
                yield _Failure.of(e)
                return

    def decode(self, items: np.ndarray) -> tuple[Batch, DecodeReport | None]:
        """The batch of these item numbers, decoded, and its decode report (None when it is empty)."""
        ds = self.ds
        rows = ds.rows[items]
        positions = ds.positions[rows]
        frame = ds.source.read(positions, _columns(ds.schema))
        ctx = DecodeContext(base_dir=ds.source.base_dir, on_error=ds.on_error)
        try:
            decoded = decode_table(ds.schema, frame, ctx, progress=False)
        except DecodeError as e:
            raise _in_shard(e, ds.source) from None
        batch = Batch(
            inputs={m: {k: torch.from_numpy(v) for k, v in a.items()} for m, (a, _) in decoded.items()},
            present={m: torch.from_numpy(np.asarray(p, dtype=bool)) for m, (_, p) in decoded.items()},
            target=None if ds.target is None else ds.target[torch.as_tensor(rows, dtype=torch.long)],
            index=torch.as_tensor(positions, dtype=torch.long),
        )
        report = ctx.report
        empty = not (report.errors or report.missing or report.dropped_rows)
        return batch, (None if empty else report)


def _columns(schema: Schema) -> list[str]:
    return list(dict.fromkeys(c for s in schema for c in s.columns))


def _in_shard(e: DecodeError, source: RowSource) -> DecodeError:
    """The same error, also naming the shard file that holds the (global) row."""
    if not isinstance(e.row, (int, np.integer)) or not 0 <= int(e.row) < source.n_rows:
        return e
    where = source.where(int(e.row))
    if where == "the table":
        return e
    out = DecodeError.__new__(DecodeError)
    out.__dict__.update(e.__dict__)
    out.args = (f"{e.args[0]} (row {e.row!r} is in {where})",)
    return out


def _identity(x: Any) -> Any:
    return x


class StreamLoader(DataLoader):
    """The DataLoader of the streaming path: sets the epoch, rank and world size before each pass, re-raises a
    worker's error in the training process as the error it was, and merges the batches' decode reports into
    ``report`` (during the first pass). ``set_epoch`` / ``state_dict`` / ``load_state_dict``: the position
    (epoch, batches of it done) for resuming."""

    def __init__(self, stream: EpochStream, report: DecodeReport, num_workers: int, *, rank: int | None = None,
                 world: int | None = None) -> None:
        super().__init__(stream, batch_size=None, num_workers=num_workers, collate_fn=_identity,
                         persistent_workers=False, prefetch_factor=2 if num_workers > 0 else None)
        self.stream, self.report, self._rank, self._world = stream, report, rank, world
        self.epoch, self.done = 0, 0  # the pass in progress (or last run) and its batches yielded so far
        self._next, self._skip, self._counted_epoch = 0, 0, None

    def set_epoch(self, epoch: int) -> None:
        """The next pass is epoch ``epoch`` (passes count on by themselves otherwise)."""
        self._next = int(epoch)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "done": self.done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume: the next pass is epoch ``state["epoch"]``, starting after its first ``done`` batches."""
        self._next, self._skip = int(state["epoch"]), int(state["done"])

    def __iter__(self) -> Iterator[Batch]:
        s = self.stream
        s.rank, s.world = rank_world(self._rank, self._world)
        self.epoch, self.done = self._next, self._skip
        s.epoch, s.start = self.epoch, self.done
        self._next, self._skip = self.epoch + 1, 0  # a pass stopped early (Lightning knows the length) ends too
        if self._counted_epoch is None:
            self._counted_epoch = self.epoch  # the first pass over these rows fills the report
        count = self.epoch == self._counted_epoch
        for item in super().__iter__():
            if isinstance(item, _Failure):
                raise item.rebuild()
            batch, report = item
            if report is not None and count:
                self.report.merge(report)
            self.done += 1
            yield batch

    def __len__(self) -> int:  # batches per rank and epoch: Lightning's steps per epoch
        return self.stream.n_batches(rank_world(self._rank, self._world)[1])


def gather_report(report: DecodeReport) -> DecodeReport:
    """The report merged over all ranks (a collective: every rank calls it); the report itself without
    ``torch.distributed``."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return report
    parts: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, report.to_dict())
    out = DecodeReport()
    for p in parts:
        out.merge(report_from_dict(p))
    return out


def report_from_dict(d: dict[str, Any]) -> DecodeReport:
    """A ``DecodeReport`` back from its ``to_dict()`` form (what ranks exchange)."""
    return DecodeReport(errors=dict(d.get("errors", {})), examples=list(d.get("examples", [])),
                        missing=dict(d.get("missing", {})), dropped_rows=dict(d.get("dropped_rows", {})),
                        causes=dict(d.get("causes", {})))
