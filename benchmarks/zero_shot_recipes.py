"""Which recipe for the locked-text linear map would beat the ridge peer by 1.5x on unseen emoji categories?

``zero_shot_heldout.py`` measures ``pm.align``'s default for frozen towers (``lock="auto"``: the image features map
into the text tower's centred space with one linear layer, CLIP loss) at 62 zero-shot hits of 1911 against the
ridge peer's 49 (leave-one-category-out), 1.27x; the issue asks for 1.5x. This script asks whether any change of
that recipe gets there, fast enough to try many: the same frozen features (EfficientNet-Lite0 images, MiniLM
names, through ``backbone_features``), the same validation rows (``split_rows``, 10 %), the same ridge peer, and
the same linear map trained with the CLIP loss in plain PyTorch on the cached features (~40 s for all 10 folds).

Every recipe runs with 3 seeds (the map's initialisation and batch order): one seed's total moves by +-4 hits, so a
single run says little. Writes ``results/zero_shot_recipes.json``: per recipe the hits per seed, their mean and
the ratio of the mean to the ridge peer's hits.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from _common import emit, setup
from emoji_data import TEMPLATES, TOWERS, emoji_frame
from zero_shot_heldout import backbone_features, cosine, hits_at, ridge, ridge_lambda

SEEDS = (0, 1, 2)
BASE = dict(batch_size=128, lr=2e-3, weight_decay=0.05, epochs=40, patience=5, tau0=0.07, learn_tau=True)
RECIPES = {  # each a change of BASE (align's defaults for frozen towers)
    "base": {},
    "batch_64": {"batch_size": 64},
    "batch_256": {"batch_size": 256},
    "batch_512": {"batch_size": 512},
    "patience_10": {"patience": 10},
    "weight_decay_0.5": {"weight_decay": 0.5},
    "tau_0.03_fixed": {"tau0": 0.03, "learn_tau": False},
    "init_ridge": {"init": "ridge"},  # start from the ridge solution (centred features)
    "standardised_images": {"standardise": True},  # z-scored image features
    "templates": {"templates": True},  # a random prompt template per training pair, the templates' mean at test
    "ensemble_3": {"ensemble": 3},  # the mean similarity of 3 maps (seeds s*100 + 0, 1, 2)
    "plus_ridge_scores": {"mix_ridge": 1.0},  # similarity + the ridge peer's similarity
}


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def features() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image features ``[N, 1280]``, name features ``[N, 384]`` and the names in each prompt template
    ``[templates, N, 384]``, L2-normalised, through a 1-epoch ``align`` run's feature cache."""
    import polymodal as pm

    df = emoji_frame()
    m = pm.align(df.drop(columns=["category"]), kinds={"name": "text"}, encoders=TOWERS, progress=False, seed=0,
                 epochs=1)
    templates = np.stack([backbone_features(m, df.assign(name=[t.format(n) for n in df.name]), "name")
                          for t in TEMPLATES])
    return backbone_features(m, df, "image"), backbone_features(m, df, "name"), templates


def val_rows(n: int) -> tuple[np.ndarray, np.ndarray]:
    from polymodal.data.split import split_rows

    return split_rows(n, 0.1, 0)  # align's own validation split (val_fraction 0.1, seed 0)


def contrastive_map(x, t, xq, tq, seed: int, lam: float, tt=None, ttq=None, init: str = "random",
                    standardise: bool = False, **kw) -> np.ndarray:
    """Train the linear map ``x -> t`` (text side centred, unprojected) with the symmetric CLIP loss, early
    stopping on validation top-1; return the cosine similarity of each query image to each query name."""
    import torch
    import torch.nn.functional as F

    o = {**BASE, **kw}
    if standardise:
        mu, sd = x.mean(0), x.std(0) + 1e-6
        x, xq = (x - mu) / sd, (xq - mu) / sd
    fit, val = val_rows(len(x))
    mx, mt = x[fit].mean(0), t[fit].mean(0)
    xs, ts = (torch.tensor(a, dtype=torch.float32) for a in (x - mx, t - mt))
    tall = None if tt is None else torch.tensor(tt - tt[:, fit].mean(1, keepdims=True), dtype=torch.float32)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    w = torch.nn.Linear(x.shape[1], t.shape[1], bias=False)
    if init == "ridge":
        w.weight.data = torch.tensor(ridge(x[fit] - mx, t[fit] - mt, lam).T, dtype=torch.float32)
    scale = torch.nn.Parameter(torch.tensor(float(np.log(1 / o["tau0"]))), requires_grad=o["learn_tau"])
    opt = torch.optim.AdamW([{"params": w.parameters(), "weight_decay": o["weight_decay"]},
                             {"params": [scale], "weight_decay": 0.0}], lr=o["lr"])
    best, best_w, bad, fit_t = -1, None, 0, torch.tensor(fit)
    for _ in range(o["epochs"]):
        order = fit_t[torch.randperm(len(fit), generator=gen)]
        for i in range(0, len(order), o["batch_size"]):
            b = order[i:i + o["batch_size"]]
            if len(b) < 2:
                continue
            tb = ts[b] if tall is None else tall[torch.randint(len(tall), (len(b),), generator=gen), b]
            logits = scale.exp().clamp(max=100) * F.normalize(w(xs[b]), dim=1) @ F.normalize(tb, dim=1).T
            y = torch.arange(len(b))
            loss = (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            v = hits_at(w(xs[val]).numpy(), ts[val].numpy())
        if v > best:
            best, best_w, bad = v, w.weight.data.clone(), 0
        else:
            bad += 1
            if bad >= o["patience"]:
                break
    w.weight.data = best_w
    gallery = tq - mt
    if ttq is not None:  # the mean of the templates' (centred, normalised) name vectors
        c = ttq - tt[:, fit].mean(1, keepdims=True)
        gallery = (c / np.linalg.norm(c, axis=2, keepdims=True)).mean(0)
    with torch.no_grad():
        return cosine(w(torch.tensor(xq - mx, dtype=torch.float32)).numpy(), gallery)


def ridge_folds(x, t, cats) -> list[dict]:
    """The leave-one-category-out folds with the ridge peer solved on each: rows, lambda, the peer's test
    similarities and hits."""
    folds = []
    for c in sorted(set(cats)):
        tr, te = cats != c, cats == c
        lam = ridge_lambda(x[tr], t[tr], *val_rows(int(tr.sum())))[0]
        q = x[te] @ ridge(x[tr], t[tr], lam)
        folds.append({"tr": tr, "te": te, "lam": lam, "sim": cosine(q, t[te]), "hits": hits_at(q, t[te])})
    return folds


def loco_hits(x, t, tt, folds: list[dict], recipe: dict, seed: int) -> int:
    """The recipe's hits summed over the leave-one-category-out folds."""
    total = 0
    for f in folds:
        tr, te, lam = f["tr"], f["te"], f["lam"]
        kw = dict(recipe)
        n, mix = kw.pop("ensemble", 1), kw.pop("mix_ridge", 0.0)
        if kw.pop("templates", False):
            kw["tt"], kw["ttq"] = tt[:, tr], tt[:, te]
        s = sum(contrastive_map(x[tr], t[tr], x[te], t[te], seed=seed * 100 + k, lam=lam, **kw)
                for k in range(n)) / n
        if mix:
            s = s + mix * f["sim"]
        total += int((s.argmax(1) == np.arange(len(s))).sum())
    return total


def main() -> None:
    setup()
    only = sys.argv[1:] or list(RECIPES)
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    x, t, tt = features()
    folds = ridge_folds(x, t, emoji_frame().category.to_numpy())
    ridge_hits = sum(f["hits"] for f in folds)
    out: dict = {"n_queries": len(x), "base": BASE, "templates": TEMPLATES, "seeds": list(SEEDS),
                 "ridge_hits": ridge_hits, "recipes": {}}
    for name in only:
        t1 = time.perf_counter()
        hits = [loco_hits(x, t, tt, folds, RECIPES[name], s) for s in SEEDS]
        out["recipes"][name] = {"options": RECIPES[name], "hits": hits, "mean": float(np.mean(hits)),
                                "std": float(np.std(hits, ddof=1)), "over_ridge": float(np.mean(hits)) / ridge_hits,
                                "seconds": round(time.perf_counter() - t1, 1)}
        log(name, out["recipes"][name])
    best = max(out["recipes"], key=lambda k: out["recipes"][k]["mean"])
    out["best"] = {"recipe": best, "over_ridge": out["recipes"][best]["over_ridge"], "target": 1.5}
    out["load_avg_1min"] = {"start": load_start, "end": os.getloadavg()[0]}
    out["total_s"] = round(time.perf_counter() - t0, 1)
    emit("zero_shot_recipes", out)


if __name__ == "__main__":
    main()
