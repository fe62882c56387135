"""Executable docs: every shell command in a ```bash block and every ```python snippet of README.md and docs/*.md
runs, in document order, in a scratch copy of the project on a small slice of the data, and must do what the doc
says. A doc that drifts from the code fails here.

What a doc promises, and how it says so:
- a ```bash block: each command (a line, or several joined by a trailing backslash or an open quote) must exit 0,
  or with the code its comment gives: `# ... exit code N ...`;
- a ```python block: runs as a script (exit 0); one written as a doctest (`>>>`) runs through doctest (ELLIPSIS);
- `<!-- docs-test: output -->` right before a ```text block: the block is the output (stdout and stderr) of the
  previous runnable block's last command; its lines must appear in that order, `...` matching any text;
- `<!-- docs-test: skip (reason) -->` right before a block: not run; the reason is required;
- ```yaml blocks that are configs are validated, and one headed `# configs/NAME.yaml` must equal that file's config.
Every fenced block names its language, so no command can hide in an unmarked block.

The commands are the documented ones. They run with the documented `TPC_SET` mechanism making runs small
(`SMALL` below), `TPC_DATA_DIR` pointing at the shared data, and a copy of configs/, seeds/ and a slice of data/.
Each doc runs in its own bash session (its `export`s and background servers end with it), in a private network
namespace when `unshare` allows it, so the documented fixed ports (5000, 5001) cannot collide with other jobs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Two folds, no char n-grams, few composite articles: every code path of the pipeline, a fraction of the time.
SMALL = "splits.n_folds=2 model.char_ngrams=null article.composite_articles=50"
RUNNABLE = ("bash", "python")
LANGUAGES = ("bash", "python", "text", "yaml")
MARK = re.compile(r"^<!--\s*docs-test:\s*(.*?)\s*-->$")
EXIT = re.compile(r"#.*\bexit code (\d+)")


@dataclass
class Block:
    doc: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    skip: str | None = None  # the reason
    is_output: bool = False
    output: "Block | None" = None  # the expected output of this (runnable) block's last command
    commands: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{_rel(self.doc)}:{self.line}"


def _rel(doc: Path) -> str:
    return str(doc.relative_to(REPO)) if doc.is_relative_to(REPO) else doc.name


def _complete(text: str) -> bool:
    """Whether `text` is a whole shell command: no open quote, no trailing line continuation."""
    if text.rstrip().endswith("\\"):
        return False
    lexer = shlex.shlex(text, posix=True, punctuation_chars=False)
    lexer.whitespace_split = True  # a comment (`#` at a word's start) ends the line, quotes in it included
    try:
        list(lexer)
    except ValueError:
        return False
    return True


def split_commands(text: str) -> list[str]:
    commands, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current = f"{current}\n{line}" if current else line
        if _complete(current):
            commands.append(current)
            current = ""
    if current:
        raise AssertionError(f"unterminated command: {current!r}")
    return commands


def parse(doc: Path) -> list[Block]:
    """The fenced blocks of a markdown file with their marks; raises AssertionError on a malformed doc."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    pending: str | None = None
    pending_line = 0
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        mark = MARK.match(line)
        if mark:
            assert pending is None, f"{doc.name}:{pending_line}: two docs-test marks in a row"
            pending, pending_line = mark.group(1), i + 1
            i += 1
            continue
        if line.startswith("```"):
            lang = line[3:].strip()
            where = f"{_rel(doc)}:{i + 1}"
            assert lang, f"{where}: a fenced block without a language; name it (bash, python, text or yaml)"
            assert lang in LANGUAGES, f"{where}: language {lang!r}; use one of {LANGUAGES}"
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
            assert end is not None, f"{where}: unclosed fence"
            block = Block(doc, i + 1, lang, "\n".join(lines[i + 1:end]) + "\n")
            if pending is not None:
                skip = re.fullmatch(r"skip \((.+)\)", pending)
                if skip:
                    block.skip = skip.group(1).strip()
                elif pending == "output":
                    assert lang == "text", f"{where}: an output mark must precede a ```text block"
                    previous = next((b for b in reversed(blocks) if not b.is_output and b.lang != "yaml"), None)
                    assert previous is not None and previous.lang in RUNNABLE and not previous.skip, \
                        f"{where}: an output mark needs a runnable, not skipped, block before it"
                    assert previous.output is None, f"{where}: {previous.where} already has an output block"
                    block.is_output, previous.output = True, block
                else:
                    raise AssertionError(f"{doc.name}:{pending_line}: unknown mark {pending!r}; use "
                                         "`docs-test: skip (reason)` or `docs-test: output`")
                pending = None
            if lang == "bash":
                block.commands = split_commands(block.text)
                assert block.commands, f"{where}: a bash block without a command"
            blocks.append(block)
            i = end + 1
            continue
        if line and pending is not None:
            raise AssertionError(f"{doc.name}:{pending_line}: a docs-test mark must be right before a fenced block")
        i += 1
    assert pending is None, f"{doc.name}:{pending_line}: a docs-test mark at the end of the file"
    return blocks


def expected_exit(command: str) -> int:
    match = EXIT.search(command)
    return int(match.group(1)) if match else 0


def matches(expected: str, output: str) -> str | None:
    """None when every non-empty expected line matches an output line, in order (`...` = any text); else why not."""
    got = [line.rstrip() for line in output.splitlines()]
    k = 0
    for want in (w.rstrip() for w in expected.splitlines()):
        if not want.strip() or want.strip() == "...":
            continue
        pattern = re.compile(".*".join(re.escape(part) for part in want.split("...")))
        while k < len(got) and not pattern.fullmatch(got[k]):
            k += 1
        if k == len(got):
            return f"no output line (in order) matches {want!r}"
        k += 1
    return None


# -- the static part: every doc is well formed (fast, runs in every suite) -------------------------------------------

def test_docs_are_well_formed_and_their_configs_valid(tmp_path, monkeypatch):
    from training.config import load_config, resolve
    from training.search import check_space, parse_space

    all_blocks = [b for doc in DOCS for b in parse(doc)]
    assert sum(len(b.commands) for b in all_blocks if not b.skip) >= 20
    for b in all_blocks:
        if b.skip:
            assert len(b.skip) >= 10, f"{b.where}: give the reason for skipping"
    # Config examples: valid configs; one that names a file of configs/ is that file's config.
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("TPC_SET", raising=False)
    for n, b in enumerate(b for b in all_blocks if b.lang == "yaml"):
        raw = yaml.safe_load(b.text)
        if not isinstance(raw, dict) or not ({"extends", "model", "search"} & set(raw)):
            continue
        header = re.match(r"#\s*(configs/\S+\.yaml)", b.text)
        path = tmp_path / "configs" / f"docs_example_{n}.yaml"
        path.write_text(b.text, encoding="utf-8")
        cfg = load_config(path)
        if cfg.search is not None:
            check_space(resolve(path), parse_space(cfg.search.space))
        if header and (REPO / header.group(1)).exists():
            real = load_config(tmp_path / header.group(1))
            assert cfg.model_dump(exclude={"name"}) == real.model_dump(exclude={"name"}), \
                f"{b.where}: the block says it is {header.group(1)} but its config differs from the file"


def test_a_drifted_doc_is_caught(tmp_path):
    """The checks above are the ones that fail: bad marks, unmarked blocks and unmatched output."""
    doc = tmp_path / "doc.md"
    for text, message in [
        ("```\ntpc score x\n```\n", "without a language"),
        ("<!-- docs-test: skip () -->\n```bash\nls\n```\n", "unknown mark"),
        ("<!-- docs-test: output -->\n```text\nx\n```\n", "runnable"),
        ("<!-- docs-test: sikp (typo) -->\n```bash\nls\n```\n", "unknown mark"),
        ("```bash\necho 'open\n```\n", "unterminated"),
    ]:
        doc.write_text(text)
        with pytest.raises(AssertionError, match=message):
            parse(doc)
    assert matches("a ...\nc", "a b\nx\nc\n") is None
    assert matches("c\na ...", "a b\nc\n") is not None  # order matters
    assert expected_exit("tpc score a -o b   # exit code 1: rows with errors") == 1
    assert expected_exit("tpc score a -o b") == 0
    assert split_commands("a \\\n  b\ncurl -d '{\n}'\n# note\nc # comment\n") == ["a \\\n  b", "curl -d '{\n}'",
                                                                                 "c # comment"]


# -- the run ------------------------------------------------------------------------------------------------------

def small_project(dst: Path) -> Path:
    """configs/, seeds/ and a slice of data/: 40 passages per written file and challenge set, 30/12/12 real articles
    per split (the first of each, half with a topic), the seeds whole; the other files of data/real/ as they are."""
    for name in ("configs", "seeds"):
        shutil.copytree(REPO / name, dst / name)
    shutil.copytree(REPO / "data", dst / "data", ignore=shutil.ignore_patterns("*.jsonl"))
    for src in (REPO / "data").rglob("*.jsonl"):
        rel = src.relative_to(REPO / "data")
        lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
        if rel.parts[0] in ("written", "challenge"):
            lines = lines[:40]
        elif rel == Path("real", "labels.jsonl"):
            # the first articles of each split, half of them with a topic, so every topic has real positives
            keep, seen, kept = {"train": 30, "dev": 12, "test": 12}, {}, []
            for line in lines:
                row = json.loads(line)
                kind = (row["split"], any(p["labels"] for p in row["passages"]))
                seen[kind] = seen.get(kind, 0) + 1
                if seen[kind] <= keep.get(row["split"], 0) // 2:
                    kept.append(line)
            lines = kept
        (dst / "data" / rel).write_text("".join(lines), encoding="utf-8")
    return dst


def _isolated_network() -> list[str]:
    """`unshare -rn` with loopback up when the kernel allows it: documented fixed ports stay private."""
    if not shutil.which("unshare") or not shutil.which("ip"):
        return []
    probe = subprocess.run(["unshare", "-rn", "ip", "link", "set", "lo", "up"], capture_output=True)
    return ["unshare", "-rn"] if probe.returncode == 0 else []


def run_doc(doc: Path, project: Path, results: Path, timeout: float = 900) -> list[dict]:
    """Run the doc's runnable blocks in one bash session in `project`; one record per command or snippet."""
    blocks = parse(doc)
    records, script = [], ["set +e", f"cd {shlex.quote(str(project))}"]
    for b in blocks:
        if b.skip or b.lang not in RUNNABLE:
            continue
        items = b.commands if b.lang == "bash" else [None]
        for n, command in enumerate(items):
            k = len(records)
            out, err, rc = (results / f"{k}.{s}" for s in ("out", "err", "rc"))
            last = n == len(items) - 1
            if command is not None:
                records.append({"block": b, "command": command, "expect": expected_exit(command),
                                "output": b.output if last else None, "out": out, "err": err, "rc": rc})
                script += [f"date +%s.%N > {results / f'{k}.t0'}", "{ " + command,
                           f"}} > {out} 2> {err} < /dev/null", f"echo $? > {rc}"]
            else:
                snippet = results / f"{k}.py"
                if ">>>" in b.text:
                    snippet = snippet.with_suffix(".txt")
                    run = f"python -m doctest -o ELLIPSIS -o NORMALIZE_WHITESPACE {snippet}"
                else:
                    run = f"python {snippet}"
                snippet.write_text(b.text, encoding="utf-8")
                records.append({"block": b, "command": run, "expect": 0, "output": b.output, "out": out,
                                "err": err, "rc": rc})
                script += [f"date +%s.%N > {results / f'{k}.t0'}", f"{run} > {out} 2> {err} < /dev/null",
                           f"echo $? > {rc}"]
    (results / "session.sh").write_text("\n".join(script) + "\n", encoding="utf-8")
    # A reader's shell: no MLflow settings of this process (mlflow.set_tracking_uri and set_registry_uri export
    # MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI to the environment, e.g. from another test).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MLFLOW_") and k not in ("TPC_SET", "PYTEST_CURRENT_TEST")}
    env.update(TPC_SET=SMALL, PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    prefix = _isolated_network()
    inner = f"ip link set lo up && exec bash {results / 'session.sh'}" if prefix else f"exec bash {results / 'session.sh'}"
    proc = subprocess.Popen([*prefix, "bash", "-c", inner], cwd=project, env=env, start_new_session=True)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the doc's background servers end with its session
            time.sleep(1)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return records


def check(records: list[dict]) -> list[str]:
    problems = []
    for r in records:
        b = r["block"]
        label = f"{b.where}: `{r['command'].splitlines()[0][:120]}`"
        if not r["rc"].exists():
            problems.append(f"{label}: never finished (the session timed out)")
            continue
        rc = int(r["rc"].read_text().strip() or -1)
        out = r["out"].read_text(errors="replace") if r["out"].exists() else ""
        err = r["err"].read_text(errors="replace") if r["err"].exists() else ""
        if rc != r["expect"]:
            problems.append(f"{label}: exit code {rc}, the doc says {r['expect']}\n--- stdout\n{out[-2000:]}"
                            f"\n--- stderr\n{err[-3000:]}")
            continue
        if r["output"] is not None:
            why = matches(r["output"].text, out + "\n" + err)
            if why:
                problems.append(f"{label}: output differs from {r['output'].where}: {why}\n--- stdout\n"
                                f"{out[-2000:]}\n--- stderr\n{err[-2000:]}")
    return problems


def run_docs(scratch: Path) -> dict:
    """Every doc, in order (README.md, then docs/*.md), in one scratch project; results per doc."""
    before = sorted(p.name for p in REPO.iterdir())
    project = small_project(scratch / "project")
    out, times = {}, {}
    for doc in DOCS:
        results = scratch / f"results_{doc.stem}"
        results.mkdir()
        t = time.monotonic()
        out[doc.name] = run_doc(doc, project, results)
        times[doc.name] = round(time.monotonic() - t, 1)
    out["repository untouched"] = sorted(p.name for p in REPO.iterdir()) == before
    print(f"docs test: {sum(len(v) for v in out.values() if isinstance(v, list))} commands and snippets, "
          f"seconds per doc: {times}")
    for records in (v for v in out.values() if isinstance(v, list)):
        for r in records:
            t0 = r["rc"].with_suffix(".t0")
            if t0.exists() and r["rc"].exists():
                seconds = r["rc"].stat().st_mtime - float(t0.read_text())
                print(f"  {seconds:6.1f} s  {r['block'].where}  {r['command'].splitlines()[0][:90]}")
    return out


@pytest.mark.slow
def test_every_documented_command_does_what_the_doc_says():
    """One test for all docs (they run in order in one project: later docs use what earlier ones made), so their
    minutes of commands run once, whichever test process takes it. The scratch folder is its own (not pytest's
    numbered temporary folders, which another pytest session of the same user may clean up during these minutes)."""
    import tempfile

    scratch = Path(tempfile.mkdtemp(prefix="tpc-docs-test-"))
    try:
        runs = run_docs(scratch)
        problems = [f"[{doc.name}] {p}" for doc in DOCS for p in check(runs[doc.name])]
        assert not problems, "\n\n".join(problems)
        assert runs["repository untouched"], "the docs' commands wrote into the repository, not the scratch copy"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
