"""Feature gathering for real: 2 CPU processes (gloo) x B/2 rows against one process on B rows.

Contract (see ``polymodal.objectives.distributed``): the mean over processes of the returned losses equals the
single-process loss, and the gradient reaching each process's shard equals ``world_size`` times the single-process
gradient on those rows, i.e. exactly the single-process gradient after DistributedDataParallel's averaging.
Parameters that are not gathered (the learnable temperature) get per-process gradients whose mean is the
single-process gradient.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from polymodal.objectives import ClipLoss, clip_loss, gather_features, pairwise_loss, siglip_loss, symile_loss

WORLD = 2
B, D = 6, 8  # global batch; each process holds B // WORLD rows


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    feats = {m: F.normalize(torch.randn(B, D, generator=g), dim=-1) for m in "abc"}
    perm_g = torch.Generator().manual_seed(7)
    feats["perms"] = torch.stack([torch.randperm(B, generator=perm_g) for _ in range(6)])
    feats["raw_a"] = torch.randn(B, D, generator=g)
    feats["raw_b"] = torch.randn(B, D, generator=g)
    return feats


def _losses(x: dict[str, torch.Tensor], gather: bool) -> dict[str, tuple]:
    """Every loss under test; returns name -> (loss, leaves, extra parameters). Same call sequence on all ranks."""
    out = {}

    def leaves(*names):
        return [x[n].clone().requires_grad_(True) for n in names]

    a, b = leaves("a", "b")
    out["clip"] = (clip_loss(a, b, 10.0, gather=gather), [a, b], [])
    a, b = leaves("a", "b")
    out["siglip"] = (siglip_loss(a, b, 10.0, -5.0, gather=gather), [a, b], [])
    a, b, c = leaves("a", "b", "c")
    out["symile_n_squared"] = (symile_loss([a, b, c], 8.0, "n_squared", gather=gather), [a, b, c], [])
    a, b, c = leaves("a", "b", "c")
    out["symile_n"] = (symile_loss([a, b, c], 8.0, "n", perms=list(x["perms"]), gather=gather), [a, b, c], [])
    a, b, c = leaves("a", "b", "c")
    pair = partial(clip_loss, logit_scale=5.0, gather=gather)
    out["pairwise"] = (pairwise_loss({"a": a, "b": b, "c": c}, pair), [a, b, c], [])
    a, b = leaves("raw_a", "raw_b")  # the module normalises and owns a learnable temperature
    module = ClipLoss(math.log(20.0), gather=gather)
    out["clip_module"] = (module(a, b), [a, b], [module.logit_scale])
    return out


def _worker(rank: int, init_file: str, out_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        full = _inputs()
        n = B // WORLD
        local = {k: (v if k == "perms" else v[rank * n : (rank + 1) * n]) for k, v in full.items()}
        gathered = gather_features(local["a"])
        results = {"gathered_a": gathered.detach()}
        for name, (loss, leaves, params) in _losses(local, gather=True).items():
            loss.backward()
            results[name] = (loss.detach(), [x.grad for x in leaves], [p.grad.clone() for p in params])
        torch.save(results, f"{out_file}.{rank}")
    finally:
        dist.destroy_process_group()


def test_gather_is_a_noop_without_process_group():
    x = torch.randn(3, 4, requires_grad=True)
    assert not dist.is_initialized()
    assert gather_features(x) is x


def test_two_processes_equal_one_process(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path / "out")), nprocs=WORLD, join=True)
    per_rank = [torch.load(tmp_path / f"out.{r}") for r in range(WORLD)]
    full = _inputs()
    n = B // WORLD
    for r in range(WORLD):  # the gathered features are the full batch in rank order
        assert torch.equal(per_rank[r]["gathered_a"], full["a"])

    for name, (loss, leaves, params) in _losses(full, gather=False).items():
        loss.backward()
        mean_loss = sum(res[name][0] for res in per_rank) / WORLD
        assert torch.allclose(mean_loss, loss.detach(), atol=1e-5), (name, mean_loss.item(), loss.item())
        for k, leaf in enumerate(leaves):
            for r in range(WORLD):
                shard_grad = per_rank[r][name][1][k]
                expected = WORLD * leaf.grad[r * n : (r + 1) * n]
                assert torch.allclose(shard_grad, expected, atol=1e-5), (name, k, r)
        for k, p in enumerate(params):
            mean_grad = sum(res[name][2][k] for res in per_rank) / WORLD
            assert torch.allclose(mean_grad, p.grad, atol=1e-5), (name, "param", k)
