"""README.md runs as written: every ```python and ```bash block, in order, in one empty working folder.

Python blocks are exec'd, one namespace per ``## `` section (a section's later blocks see its earlier ones); a
```yaml block whose first line is ``# <file>`` is written to that file first. Bash blocks run line by line
(``\\``-continued lines joined, ``#`` comments dropped) through the installed CLI script, ``polymodal`` next to
``sys.executable``, each line in its own process, and each line must exit 0. Later sections use what earlier ones
wrote (``data/``, ``runs/m1``), as a reader going down the page would.

Each CLI line is its own process, forked from one server process (``CommandServer``) that imported torch,
Lightning and polymodal once and then runs the ``polymodal`` script file in the child, as the console script
does. A fresh interpreter per line spends about 7 CPU seconds importing Lightning, which over 30 lines is most
of this test; ``POLYMODAL_README_SUBPROCESS=1`` (or a platform without ``fork``) runs every line as a plain
subprocess of the script instead.

What the test changes so that the whole README runs in a few minutes on 2 cores, without changing what the
README shows (every change is listed here, nothing else is touched):

- ``LIMIT``: the built-in datasets load / export a class-stratified ``LIMIT`` rows per split
  (``load_av_digits`` / ``load_emoji`` called without ``limit=`` get ``limit=LIMIT``; ``datasets export`` gets
  ``--limit LIMIT``);
- ``FAST``: every ``pm.fit`` / ``pm.align`` call trains 1 epoch at width 16, whatever the block says
  (``CLI_EXTRA``: ``fit`` / ``align`` lines get ``--set epochs=1 --set dim=16``, which wins over every other
  layer);
- ``CLI_EXTRA`` also shrinks ``compare`` (one fusion, one seed, one epoch, no noise sweep, in this process, scored
  on the exported test slice: a 20 % hold-out of 60 rows leaves one row per class, too few for its integration
  test's cross-validation) and ``bench tokens`` (one timed pair);
- ``SKIPPED``: the lines that do not run here, each with its reason.

Frozen-tower features go to a feature cache inside the working folder (``POLYMODAL_CACHE_DIR``), shared by the
python blocks and the CLI lines, and deleted with it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
CLI = Path(sys.executable).with_name("polymodal")
TIMEOUT_S = 600  # per CLI line

LIMIT = 60
FAST = {"epochs": 1, "dim": 16}
CLI_EXTRA: list[tuple[tuple[str, ...], list[str]]] = [  # argv after `polymodal` starts with -> flags appended
    (("fit",), ["--set", "epochs=1", "--set", "dim=16"]),
    (("align",), ["--set", "epochs=1", "--set", "dim=16"]),
    (("datasets", "export"), ["--limit", str(LIMIT)]),
    (("compare",), ["--fusions", "late", "--seeds", "1", "--epochs", "1", "--noise", "", "--workers", "1",
                    "--test", "data/test.parquet"]),
    (("bench", "tokens"), ["--reps", "1"]),
]
SKIPPED = {  # a command line exactly as in the README (comment dropped, spaces collapsed) -> why it does not run
    "make demo": "creates .venv and installs polymodal, then runs `polymodal demo` (about 4 minutes of training); "
                 "`polymodal demo --quick` is covered by tests/experiments",
    "make test": "installs, then runs the whole test suite, this test included",
    "polymodal compare av-digits --label digit --fusions late,transformer,sequential":
        "reads the whole built-in av-digits (3000 rows) and trains 5 models, and `compare` has no row limit; "
        "the `compare` line above runs the same harness on the exported slice",
    "polymodal fit data/train.parquet --label digit --out runs/ddp --devices 2":
        "two DDP processes: tests/train/test_ddp.py runs `polymodal fit --devices 2` for real against one process",
    "polymodal fit data/train.parquet --label digit --out runs/ray --ray-address local --workers 2":
        "starts a local Ray cluster (about 10 s and 1 GB): tests/recipes/test_ray.py runs Ray Train for real",
    "polymodal fit data/train.parquet --label digit --out runs/m3 --resume":
        "needs an interrupted run: tests/recipes/test_resume.py SIGKILLs a real `polymodal fit` and resumes it",
}
# imported once by the command server, so that no CLI line pays for them (each line still runs in its own process)
PRELOAD = ("torch", "lightning", "pandas", "pyarrow.parquet", "polymodal.cli.app", "polymodal.recipes.fit",
           "polymodal.recipes.align", "polymodal.recipes.loading", "polymodal.encoders", "polymodal.fusion")


@dataclass
class Block:
    section: str
    lang: str
    code: str
    line: int  # of the opening fence, 1-based


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, with the ``## `` section each sits in."""
    blocks, section, fence, start, body = [], "", None, 0, []
    for i, line in enumerate(text.splitlines(), start=1):
        if fence is None:
            if line.startswith("## "):
                section = line[3:].strip()
            m = re.match(r"^```(\w*)\s*$", line)
            if m:
                fence, start, body = m.group(1), i, []
        elif line.rstrip() == "```":
            blocks.append(Block(section, fence, "\n".join(body) + "\n", start))
            fence = None
        else:
            body.append(line)
    assert fence is None, f"README.md: the block opened at line {start} is never closed"
    return blocks


def bash_commands(block: Block) -> list[tuple[int, str]]:
    """``(README line, command)`` for each command of a bash block; continuation lines joined."""
    out, pending, first = [], "", 0
    for i, line in enumerate(block.code.splitlines(), start=block.line + 1):
        if not pending:
            first = i
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        cmd = pending + line
        pending = ""
        if cmd.strip() and not cmd.lstrip().startswith("#"):
            out.append((first, cmd))
    return out


def normalized(cmd: str) -> str:
    return " ".join(shlex.split(cmd, comments=True))


def cli_args(cmd: str) -> list[str]:
    """The arguments after ``polymodal``, with ``CLI_EXTRA`` applied."""
    argv = shlex.split(cmd, comments=True)
    assert argv[0] == "polymodal", f"a README bash line that is neither polymodal nor in SKIPPED: {cmd!r}"
    rest = argv[1:]
    for prefix, extra in CLI_EXTRA:
        if tuple(rest[: len(prefix)]) == prefix:
            rest = rest + extra
    return rest


# The command server: reads one JSON job per line, forks, and in the child runs the CLI script as __main__ with
# the job's argv, cwd and output files; answers with the child's exit code. SIGALRM ends a child that hangs.
SERVER = r"""
import json, os, runpy, signal, sys, traceback
script, preload = sys.argv[1], sys.argv[2:]
for name in preload:
    __import__(name)
reply = os.fdopen(os.dup(1), "w", buffering=1)
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(job["cwd"])
            for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
                f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(f, fd)
                os.close(f)
            signal.alarm(job["timeout"])
            sys.argv = [script, *job["args"]]
            try:
                runpy.run_path(script, run_name="__main__")
                code = 0
            except SystemExit as e:
                if isinstance(e.code, int) or e.code is None:
                    code = e.code or 0
                else:
                    print(e.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    reply.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")
"""


class CommandServer:
    """Runs ``polymodal`` lines, each in its own process: forked from a server (default) or a plain subprocess."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs, self.n = env, logs, 0
        logs.mkdir(parents=True, exist_ok=True)
        self.proc = None
        if hasattr(os, "fork") and os.environ.get("POLYMODAL_README_SUBPROCESS", "0") in ("", "0"):
            self.proc = subprocess.Popen([sys.executable, "-c", SERVER, str(CLI), *PRELOAD], env=env, text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def run(self, args: list[str], cwd: Path) -> tuple[int, str, str]:
        if self.proc is None:
            res = subprocess.run([str(CLI), *args], cwd=cwd, env=self.env, capture_output=True, text=True,
                                 timeout=TIMEOUT_S)
            return res.returncode, res.stdout, res.stderr
        self.n += 1
        out, err = self.logs / f"{self.n:03d}.out", self.logs / f"{self.n:03d}.err"
        job = {"args": args, "cwd": str(cwd), "stdout": str(out), "stderr": str(err), "timeout": TIMEOUT_S}
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer, f"the command server died (exit code {self.proc.poll()})"
        return json.loads(answer)["code"], out.read_text(), err.read_text()

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def test_every_block_is_run_or_skipped_on_purpose():
    blocks = readme_blocks(README.read_text())
    assert {"python", "bash"} <= {b.lang for b in blocks}
    commands = [normalized(c) for b in blocks if b.lang == "bash" for _, c in bash_commands(b)]
    for line in SKIPPED:  # the skip list names README lines that exist
        assert line in commands, f"SKIPPED lists {line!r}, which README.md no longer has"
    for cmd in commands:
        assert cmd in SKIPPED or cmd.startswith("polymodal "), cmd
    for b in blocks:  # a yaml block is a file the commands read, named on its first line
        if b.lang == "yaml":
            assert re.match(r"#\s*\S+\.ya?ml\s*$", b.code.splitlines()[0]), f"README.md:{b.line}: name the file"
    assert CLI.exists(), f"the polymodal CLI is not installed next to {sys.executable}"


def _fast_fit(fn):
    def fit(*args, **kwargs):
        return fn(*args, **{**kwargs, **FAST, "progress": False})

    return fit


def _limited(fn):
    def load(*args, **kwargs):
        kwargs.setdefault("limit", LIMIT)
        return fn(*args, **kwargs)

    return load


@pytest.mark.slow
def test_readme_runs_as_written(tmp_path, monkeypatch):
    import polymodal
    import polymodal.datasets as datasets

    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    monkeypatch.chdir(work)
    for key, value in {"POLYMODAL_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}.items():
        monkeypatch.setenv(key, value)
    for name in ("fit", "align"):  # pm.fit / pm.align as the blocks will look them up
        monkeypatch.setattr(polymodal, name, _fast_fit(getattr(polymodal, name)))
    for name in ("load_av_digits", "load_emoji"):
        monkeypatch.setattr(datasets, name, _limited(getattr(datasets, name)))

    server = CommandServer(dict(os.environ), tmp_path / "logs")
    namespaces: dict[str, dict] = {}
    timings: list[tuple[float, str]] = []
    ran = {"python": 0, "bash": 0, "yaml": 0}

    def timed(what: str, t0: float) -> None:
        timings.append((time.perf_counter() - t0, what))
        print(f"{timings[-1][0]:6.1f}s  {what}", flush=True)

    try:
        for block in readme_blocks(README.read_text()):
            if block.lang == "yaml":
                (work / block.code.splitlines()[0].lstrip("#").strip()).write_text(block.code)
                ran["yaml"] += 1
            elif block.lang == "python":
                ns = namespaces.setdefault(block.section, {"__name__": "__readme__"})
                t0 = time.perf_counter()
                exec(compile(block.code, f"README.md:{block.line}", "exec"), ns)  # noqa: S102 - the README's code
                timed(f"README.md:{block.line} python ({block.section})", t0)
                ran["python"] += 1
            elif block.lang == "bash":
                for line, cmd in bash_commands(block):
                    if normalized(cmd) in SKIPPED:
                        continue
                    args = cli_args(cmd)
                    t0 = time.perf_counter()
                    code, out, err = server.run(args, work)
                    timed(f"README.md:{line} {normalized(cmd)[:90]}", t0)
                    assert code == 0, (
                        f"README.md:{line}: `{cmd.strip()}` exited {code}\nran: polymodal {shlex.join(args)}\n"
                        f"--- stdout\n{out[-4000:]}\n--- stderr\n{err[-4000:]}"
                    )
                    ran["bash"] += 1
    finally:
        server.close()
    print(f"total {sum(s for s, _ in timings):.1f}s", flush=True)
    assert ran["python"] >= 6 and ran["bash"] >= 25 and ran["yaml"] == 1, ran
    # what the README says these commands leave behind
    for path in ("runs/m1/config.json", "runs/m1/robust/robustness.json", "preds.csv", "contributions.csv",
                 "runs/cmp/compare.json", "models/minilm/model.safetensors", "data/emoji/train.parquet",
                 "emb.parquet", "b.json", "b.png", "runs/emb-pretrained/config.json"):
        assert (work / path).is_file(), path
