"""The sections of one run's column in the report; each appears only when the run has its data.

Every function takes a ``RunData`` and returns a ``Markup`` section, or ``""`` when there is nothing to show.
Numbers are ``markup.num`` spans (``data-metric``, ``data-run`` and the exact ``data-value``).
"""

from __future__ import annotations

from typing import Any

from polymodal.report import charts
from polymodal.report.markup import Markup, esc, figure, heat, num, section, table, tag
from polymodal.report.sources import RunData

EMPTY = Markup("")
LOWER_IS_BETTER = ("rmse", "mae", "loss", "median_rank")


def _lower_better(metric: str) -> bool:
    return any(k in metric for k in LOWER_IS_BETTER)


def _files(run: RunData, kind: str) -> Markup:
    files = [f.file for f in run.all(kind)]
    return esc(f"from {', '.join(files)}") if files else EMPTY


def overview(run: RunData) -> Markup:
    """What the run is: type, task, modalities, fusion, size, training time and rows."""
    rows: list[tuple[str, Any]] = [("source", str(run.path))]
    if run.stale:
        rows.append(("not shown", f"{', '.join(run.stale)}: older than the run saved in the folder (results of an "
                                  "earlier model); run the command again to include them"))
    if run.config is not None:
        model = run.config.get("model", {})
        fusion = model.get("fusion")
        rows += [("run type", run.run_type), ("polymodal version", run.config.get("polymodal_version", "?"))]
        if run.schema is not None:
            rows += [("task", f"{run.task} {run.schema.label!r}" if run.schema.label else run.task),
                     ("modalities", ", ".join(f"{s.name} ({s.kind})" for s in run.schema))]
        if fusion:
            rows.append(("fusion", fusion.get("name") if isinstance(fusion, dict) else fusion))
    info = run.info
    for key, label, spec in (("params", "parameters", None), ("n_train", "training rows", None),
                             ("n_val", "validation rows", None), ("train_s", "training seconds", ".1f")):
        if key in info:
            rows.append((label, num(info[key], key, spec=spec, run=run.name)))
    return section("run", table(["", ""], rows, cls="kv"), sid="overview")


def metrics(run: RunData) -> Markup:
    """Test metrics from ``evaluate --out`` (a model run): every scalar of ``metrics``."""
    ev = run.first("evaluation")
    if not ev:
        return EMPTY
    m = ev["metrics"]
    cells = [(k, num(v, k, run=run.name)) for k, v in m.items() if isinstance(v, (int, float))]
    present = ev.get("present_fraction") or {}
    if present:
        cells += [(f"present: {k}", num(v, "present_fraction", run=run.name, modality=k)) for k, v in present.items()]
    return section("test metrics", table(["metric", "value"], cells, cls="kv"), sid="metrics",
                   note=_files(run, "evaluation"))


def confusion(run: RunData) -> Markup:
    """The confusion matrix (rows: true class, columns: predicted), as a heatmap table with the class names."""
    ev = run.first("evaluation")
    cm = (ev or {}).get("metrics", {}).get("confusion_matrix")
    if not cm:
        return EMPTY
    classes = run.classes or list(range(len(cm)))
    hi = max((v for r in cm for v in r), default=1)
    rows = []
    for t, r in zip(classes, cm):
        rows.append([tag("b", esc(t)), *((num(v, "confusion", run=run.name, true=t, pred=p), heat(v, 0, hi))
                                         for p, v in zip(classes, r))])
    body = table([Markup("true \u2193 / predicted \u2192"), *classes], rows, cls="grid heatmap confusion")
    return section("confusion matrix", body, sid="confusion", note="rows: true class; columns: predicted class")


def subset_values(run: RunData) -> tuple[str, dict[str, float]] | None:
    """(metric, {subset: value}) from ``evaluate`` (its ``subsets``) or ``robustness``."""
    rob = run.first("robustness")
    if rob and rob.get("subsets"):
        return rob["metric"], dict(rob["subsets"])
    ev = run.first("evaluation")
    if ev and ev.get("subsets"):
        metric = "accuracy" if "accuracy" in ev["metrics"] else "rmse"
        return metric, {k: v[metric] for k, v in ev["subsets"].items() if metric in v}
    return None


def subset_heatmap(values: dict[str, tuple[str, dict[str, float]]], title: str, run: str | None = None) -> Markup:
    """Rows = runs, or the models of the run ``run`` (``compare``); columns = modality subsets; every cell its value,
    coloured (bright = better)."""
    if not values:
        return EMPTY
    cols = list(dict.fromkeys(s for _, v in values.values() for s in v))
    metric = next(iter(values.values()))[0]
    finite = [x for _, v in values.values() for x in v.values() if x is not None]
    lo, hi = min(finite, default=0.0), max(finite, default=1.0)
    rows = [[tag("b", esc(name)), *((num(v.get(c), f"subset_{m}", subset=c,
                                         **({"run": name} if run is None else {"run": run, "model": name})),
                                     heat(v.get(c), lo, hi, reverse=_lower_better(m))) for c in cols)]
            for name, (m, v) in values.items()]
    note = f"{metric} with only these modalities present at test time (the others marked missing)"
    return section(title, table(["", *cols], rows, cls="grid heatmap"), sid="subsets", note=note)


def mnar(run: RunData) -> Markup:
    rob = run.first("robustness")
    if not rob or "mnar" not in rob:
        return EMPTY
    metric, rows = rob["metric"], []
    for m, r in rob["mnar"].items():
        if not isinstance(r, dict):
            continue
        rows.append([m, "MCAR", num(r["mcar"]["metric"], f"mnar_{metric}", run=run.name, modality=m, pattern="mcar"),
                     "–", "–"])
        for mode in ("label", "content"):
            if mode in r:
                p, s = r[mode]["pattern"], r[mode]["shifted"]
                rows.append([m, f"MNAR by {mode}",
                             num(p["metric"], f"mnar_{metric}", run=run.name, modality=m, pattern=mode),
                             num(s["metric"], f"mnar_shifted_{metric}", run=run.name, modality=m, pattern=mode),
                             num(p.get("mutual_info"), "mutual_info", run=run.name, modality=m, pattern=mode)])
    note = f"{metric} with {rob['mnar']['rate']:.0%} of rows missing a modality, by pattern"
    return section("missing not at random", table(["modality hidden", "pattern", metric, "shifted pattern",
                                                   "MI(missing; label)"], rows), sid="mnar", note=note)


def noise_table(name: str, sweep: dict[str, Any], metric: str) -> Markup:
    levels = sweep["levels"]
    rows = [[k, (sweep.get("corruption") or {}).get(k, "each default"),
             *(num(v, f"noise_{metric}", run=name, corrupted=k, level=lv) for lv, v in zip(levels, curve)),
             num(sweep.get("relative_robustness", {}).get(k), "relative_robustness", run=name, corrupted=k)]
            for k, curve in sweep["curves"].items()]
    return table(["corrupted", "corruption", *(f"level {lv:g}" for lv in levels), "relative robustness"], rows)


def noise(run: RunData) -> Markup:
    rob = run.first("robustness")
    if not rob or "noise" not in rob:
        return EMPTY
    sweep = rob["noise"]
    uri = charts.noise_chart({run.name: {"metric": rob["metric"], **sweep}})
    return section("noise curves", figure(uri, "noise curves"), noise_table(run.name, sweep, rob["metric"]),
                   sid="noise", note=f"{rob['metric']} under increasing test-time corruption")


def tokens(run: RunData) -> Markup:
    res = run.first("tokens")
    if not res:
        return EMPTY
    rows = []
    for reducer, by_budget in res["curve"].items():
        for b, row in sorted(by_budget.items(), key=lambda kv: -float(kv[0])):
            d = dict(run=run.name, reducer=reducer, budget=b)
            rows.append([reducer, b, num(row["tokens"], "tokens", spec=".1f", **d), num(row.get("acc"), "token_acc", **d),
                         num(row["throughput_ratio"], "throughput_ratio", spec=".2f", **d),
                         num(row["flops_ratio"], "flops_ratio", spec=".2f", **d)])
    note = (f"{res['tokens_full']:.0f} tokens per sample at full budget; throughput × = full-token time / reduced "
            "time in the same process")
    return section("token budget", figure(charts.budget_chart(res), "token budget curve"),
                   table(["reducer", "budget", "tokens", "accuracy", "throughput ×", "FLOPs ×"], rows),
                   sid="tokens", note=note)


def best_of(training: dict[str, Any]) -> tuple[str, float] | None:
    """(key, value) of the best validation number in a training report (``best_val_acc``, ``best_val_loss``)."""
    return next(((k[5:], v) for k, v in training.items() if k.startswith("best_val") and v is not None), None)


def training(run: RunData) -> Markup:
    tr = run.info.get("training") or {}
    history = tr.get("history") or []
    if not history:
        return EMPTY
    best = best_of(tr)
    cells = [("epochs run", num(tr.get("epochs_run"), "epochs_run", run=run.name)),
             ("best epoch", num(tr.get("best_epoch"), "best_epoch", run=run.name))]
    if best:
        cells.append((f"best {best[0]}", num(best[1], f"best_{best[0]}", run=run.name)))
    if tr.get("interrupted"):
        cells.append(("interrupted", "yes (Ctrl-C): the best weights so far were kept"))
    figs = [figure(uri, title) for title, uri in charts.training_curves({run.name: history})]
    return section("training", table(["", ""], cells, cls="kv"), tag("div", *figs, class_="charts"), sid="training",
                   note="from report.json")


def retrieval_metrics(run: RunData) -> Markup:
    ev = run.first("retrieval")
    if not ev:
        return EMPTY
    rows = []
    for direction, levels in ev["retrieval"].items():
        for level, s in levels.items():
            d = dict(run=run.name, direction=direction, level=level)
            rows.append([direction, level, *(num(s[k], k, **d) for k in ("R@1", "R@5", "R@10")),
                         num(s["median_rank"], "median_rank", spec="g", **d)])
    gap = ev.get("modality_gap", {})
    gaps = [[pair, num(v, "modality_gap", run=run.name, pair=pair),
             num(gap.get("before", {}).get(pair), "modality_gap_before", run=run.name, pair=pair)]
            for pair, v in gap.get("after", {}).items()]
    return section("retrieval", table(["direction", "level", "R@1", "R@5", "R@10", "median rank"], rows),
                   table(["pair", "modality gap", "before alignment"], gaps) if gaps else EMPTY, sid="retrieval",
                   note=f"on {ev['n']} rows" + (f" (class = {ev['label']})" if ev.get("label") else ""))


def decode_reports(run: RunData) -> list[tuple[str, dict[str, Any]]]:
    found = [("training table", run.info["decode_report"])] if run.info.get("decode_report") else []
    for f in run.found:
        if isinstance(f.data.get("decode_report"), dict):
            found.append((f.file, f.data["decode_report"]))
    return found


def decode(run: RunData) -> Markup:
    """What decoding treated as missing and why: empty cells and undecodable values per column, causes, examples."""
    parts, clean = [], []
    for where, rep in decode_reports(run):
        if not any(rep.get(k) for k in ("missing", "errors", "dropped_rows")):
            clean.append(where)
            continue
        d = dict(run=run.name, table=where)
        cols = list(dict.fromkeys([*rep.get("missing", {}), *rep.get("errors", {})]))
        rows = [[c, num(rep.get("missing", {}).get(c, 0), "decode_missing", column=c, **d),
                 num(rep.get("errors", {}).get(c, 0), "decode_errors", column=c, **d)] for c in cols]
        rows += [[f"rows dropped: {k}", num(v, "dropped_rows", reason=k, **d), ""]
                 for k, v in rep.get("dropped_rows", {}).items()]
        causes = ", ".join(f"{k}: {v}" for k, v in rep.get("causes", {}).items())
        body = table(["column", "empty cells", "undecodable (treated as missing)"], rows)
        examples = rep.get("examples") or []
        ex = table(["row", "column", "file", "cause", "problem"],
                   [[e.get("row"), e.get("column"), e.get("file") or "–", e.get("cause"), e.get("problem")]
                    for e in examples], cls="grid small") if examples else EMPTY
        parts.append(tag("div", tag("h4", where), body, tag("p", f"causes: {causes}") if causes else EMPTY, ex))
    if clean:
        parts.append(tag("p", f"nothing treated as missing in: {', '.join(clean)}", class_="ok"))
    if not parts:
        return EMPTY
    return section("decode report", *parts, sid="decode",
                   note="empty cells are missing values; undecodable ones were treated as missing (--on-error missing)")


def compare_summary(run: RunData) -> Markup:
    """``compare --out``: the models table (mean ± std over seeds), their subset heatmap and noise curves."""
    cmp = run.first("compare")
    if not cmp or not cmp.get("models"):
        return EMPTY
    models = cmp["models"]
    metric = next(iter(models.values()))["metric"]
    order = sorted(models, key=lambda k: models[k]["mean"], reverse=not _lower_better(metric))
    rows = [[name, *(num(models[name][k], f"compare_{k}", run=run.name, model=name, spec=s)
                     for k, s in (("mean", None), ("std", None), ("params", None), ("train_s", ".1f"),
                                  ("latency_ms", None)))] for name in order]
    tbl = table(["model", f"{metric} mean", "std", "params", "train s", "latency ms/sample"], rows)
    heatmap = subset_heatmap({n: (metric, e["subsets"]) for n, e in models.items() if "subsets" in e},
                             f"{metric} per modality subset (compare)", run=run.name)
    curves = {n: {"metric": metric, **e["noise"]} for n, e in models.items() if "noise" in e}
    seeds = {len(e.get("seeds", [])) for e in models.values()}
    return section("fusion comparison", tbl, heatmap, figure(charts.noise_chart(curves), "noise curves per model"),
                   sid="compare", note=f"{metric}, mean over {', '.join(map(str, sorted(seeds)))} seed(s); from "
                                       + ", ".join(f.file for f in run.all("compare")))
