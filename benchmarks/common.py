"""Shared benchmark machinery: the scratch project and MLflow store, a cached champion, synthetic articles,
timing of subprocesses with peak RSS of their whole process tree, statistics, machine facts and output."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL_NAME = "turkey-policy"
CHAMPION = f"models:/{MODEL_NAME}@champion"
DEFAULT_WORKDIR = Path(os.environ.get("TPC_BENCH_DIR", "/tmp/tpc-bench"))
# What decides the champion: the data and config it is trained from, and the modules the pyfunc runs at predict
# time (a scorer whose workers import the working tree needs a model trained by the same code). Other modules
# (cli, score, train, ...) may change without a retrain; --retrain forces one.
MODEL_INPUTS = ["configs/default.yaml", "configs/embedding.yaml", "configs/lexicon.yaml", "data", "seeds",
                "training/__init__.py", "training/bundle.py", "training/pyfunc.py", "training/aggregate.py",
                "training/articles.py", "training/lexicon.py", "training/models", "training/encoders"]
# The shared data directory (OrangeSum): a scratch project under /tmp has no ../shared/data of its own.
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()
# Where `tpc train` keeps its embedding cache (model.cache_dir, relative to the project it runs in).
EMBEDDING_CACHE = ".cache/embeddings"


# -- the scratch project ------------------------------------------------------------------------------------

def copy_project(dst: Path) -> Path:
    """configs/, data/ and seeds/ copied to dst: training writes its store, mlruns/ and exports there, never
    into the repository."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("configs", "data", "seeds"):
        shutil.rmtree(dst / name, ignore_errors=True)
        shutil.copytree(REPO / name, dst / name)
    return dst


def store_env(project: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / 'mlflow.db'}"
    if not env.get("TPC_DATA_DIR") and SHARED_DATA.is_dir():
        env["TPC_DATA_DIR"] = str(SHARED_DATA)  # the real labelled articles' text (data.real)
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def tpc_command() -> list[str]:
    """The `tpc` console script of this interpreter's environment (python -m training.cli if it is absent)."""
    script = Path(sys.executable).with_name("tpc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "training.cli"]


def inputs_digest(paths=MODEL_INPUTS, extra: list[str] = ()) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(list(extra)).encode())
    for rel in paths:
        p = REPO / rel
        files = sorted(f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts) if p.is_dir() else [p]
        for f in files:
            if f.exists():
                h.update(str(f.relative_to(REPO)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


@dataclass
class Champion:
    project: Path  # cwd for every command: holds mlflow.db and mlruns/
    env: dict
    uri: str  # models:/turkey-policy/<version>
    version: str
    local_dir: Path  # a plain copy of the MLflow model directory (artifacts/bundle inside)
    train_seconds: float | None  # None when reused from the cache

    @property
    def bundle_dir(self) -> Path:
        return self.local_dir / "artifacts" / "bundle"


def ensure_champion(workdir: Path, retrain: bool = False, log=print, overrides: list[str] = (),
                    reuse_latest: bool = False, config: str = "configs/default.yaml",
                    warm_cache: Path | None = None) -> Champion:
    """Train `config` (default `configs/default.yaml`, with `--set` overrides) once into <workdir>/cache/<digest>/
    and reuse it while the training inputs are unchanged. `warm_cache`: an embedding cache directory copied into
    the project's model.cache_dir before training (read, never written) and removed after it, so that scoring
    later starts from an empty cache."""
    extra = list(overrides) if config == "configs/default.yaml" else [config, *overrides]
    key = inputs_digest(extra=extra)
    project = Path(workdir) / "cache" / key
    marker = project / "champion.json"
    if reuse_latest and not retrain and not marker.exists():
        cached = sorted(Path(workdir).glob("cache/*/champion.json"), key=lambda p: p.stat().st_mtime)
        if cached:  # while the predict-time code is being edited: the newest champion, knowingly
            marker = cached[-1]
            project = marker.parent
            log(f"reusing the newest cached champion {project} (trained from other code or config)")
    env = store_env(project)
    train_seconds = None
    if retrain or not marker.exists():
        shutil.rmtree(project, ignore_errors=True)
        copy_project(project)
        if warm_cache is not None and Path(warm_cache).is_dir():
            shutil.copytree(warm_cache, project / EMBEDDING_CACHE)
        log(f"training {config} into {project} (cached for later runs) ...")
        t0 = time.perf_counter()
        cmd = [*tpc_command(), "train", config] + [a for o in overrides for a in ("--set", o)]
        proc = subprocess.run(cmd, cwd=project, env=env,
                              capture_output=True, text=True)
        train_seconds = time.perf_counter() - t0
        shutil.rmtree(project / EMBEDDING_CACHE, ignore_errors=True)
        if proc.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        version, local_dir = _resolve_champion(project, env)
        marker.write_text(json.dumps({"version": version, "local_dir": str(local_dir), "train_seconds": train_seconds,
                                      "overrides": list(overrides), "created": now()}))
    info = json.loads(marker.read_text())
    return Champion(project, env, f"models:/{MODEL_NAME}/{info['version']}", info["version"],
                    Path(info["local_dir"]), train_seconds)


def _resolve_champion(project: Path, env: dict) -> tuple[str, Path]:
    code = (
        "import json, mlflow; from mlflow import MlflowClient\n"
        f"v = MlflowClient().get_model_version_by_alias({MODEL_NAME!r}, 'champion').version\n"
        f"p = mlflow.artifacts.download_artifacts(artifact_uri='models:/{MODEL_NAME}/' + str(v), "
        f"dst_path={str(project / 'champion_model')!r})\n"
        "print(json.dumps([str(v), p]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True,
                          check=True)
    version, path = json.loads(proc.stdout.strip().splitlines()[-1])
    return version, Path(path)


def cli_has_flag(subcommand: str, flag: str) -> bool:
    out = subprocess.run([*tpc_command(), subcommand, "--help"], capture_output=True, text=True).stdout
    return flag in out


# -- synthetic articles -------------------------------------------------------------------------------------

def corpus_passages(root: Path = REPO) -> list[str]:
    texts = []
    for f in sorted((root / "data" / "written").glob("*.jsonl")):
        with f.open(encoding="utf-8") as fh:
            texts += [json.loads(line)["text"] for line in fh if line.strip()]
    if not texts:
        raise RuntimeError(f"{root}/data/written: no passages to build articles from")
    return texts


def iter_articles(n: int, seed: int = 0, target_bytes: int = 2048, passages: list[str] | None = None):
    """n JSONL lines {"id", "text"}: a title line, then random written passages as paragraphs until the UTF-8
    text is about target_bytes. Same seed, same articles. Yields (line, text_bytes)."""
    passages = passages or corpus_passages()
    # Each passage JSON-escaped once: a line is then a join of strings, fast enough to feed 1M articles.
    escaped = [json.dumps(p, ensure_ascii=False)[1:-1] for p in passages]
    encoded = [len(p.encode("utf-8")) for p in passages]
    rng = random.Random(seed)
    for i in range(n):
        first = rng.randrange(len(passages))
        title = " ".join(passages[first].split()[:9]).rstrip(".,;:!?»\"")
        parts, size = [json.dumps(title, ensure_ascii=False)[1:-1]], len(title.encode("utf-8"))
        k = first
        # stop at the passage boundary nearest to the target, so the mean size is close to it
        while len(parts) < 2 or size + encoded[k] / 2 < target_bytes:
            parts.append(escaped[k])
            size += encoded[k] + 1
            k = rng.randrange(len(passages))
        yield f'{{"id": "bench-{seed}-{i}", "text": "' + "\\n".join(parts) + '"}\n', size


def write_articles(path: Path, n: int, seed: int = 0, target_bytes: int = 2048) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    total = 0
    with path.open("w", encoding="utf-8") as fh:
        for line, size in iter_articles(n, seed, target_bytes):
            total += size
            fh.write(line)
    return {"path": str(path), "n": n, "mean_text_bytes": round(total / max(n, 1)), "file_bytes": path.stat().st_size,
            "seconds": round(time.perf_counter() - t0, 2)}


def cached_articles(workdir: Path, n: int, seed: int = 0) -> Path:
    """The same N articles for every run (and every method inside a run)."""
    path = Path(workdir) / "articles" / f"articles-{n}-s{seed}.jsonl"
    if not path.exists():
        tmp = path.with_suffix(".partial")
        write_articles(tmp, n, seed)
        tmp.replace(path)
    return path


ORANGESUM_SECTIONS = ("Monde", "Politique", "France", "News")


def orangesum_articles(workdir: Path, n: int, sections=ORANGESUM_SECTIONS) -> Path:
    """The first n OrangeSum articles (file order) of `sections`, as JSONL {"id", "text"} with the text a scorer
    is given (training.orangesum.article_text: the title line, then the body). Read from TPC_DATA_DIR or the
    shared data directory, checksum verified."""
    from training import orangesum

    tag = hashlib.sha256(",".join(sections).encode()).hexdigest()[:8]
    path = Path(workdir) / "articles" / f"orangesum-{n}-{tag}.jsonl"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    configured = os.environ.get("TPC_DATA_DIR") or (str(SHARED_DATA) if SHARED_DATA.is_dir() else None)
    wanted, k = set(sections), 0
    tmp = path.with_suffix(".partial")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in orangesum.iter_rows(configured):
            if row.get("section") in wanted:
                fh.write(json.dumps({"id": row["id"], "text": orangesum.article_text(row)}, ensure_ascii=False) + "\n")
                k += 1
                if k == n:
                    break
    if k < n:
        tmp.unlink()
        raise ValueError(f"OrangeSum has only {k} articles in sections {list(sections)}, asked for {n}")
    tmp.replace(path)
    return path


# -- measuring ----------------------------------------------------------------------------------------------

@dataclass
class Measured:
    seconds: float
    peak_rss_mb: float | None
    returncode: int
    stdout: str = ""
    stderr: str = ""
    extra: dict = field(default_factory=dict)


def _tree_rss(proc) -> int:
    import psutil

    total = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_measured(cmd: list[str], cwd: Path | None = None, env: dict | None = None, interval: float = 0.1,
                 timeout: float | None = None) -> Measured:
    """Wall time of a command and the peak of the summed RSS of its process tree (sampled every `interval`)."""
    try:
        import psutil
    except ImportError:  # timing still works; memory needs psutil (pip install -e .[bench])
        psutil = None
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sample():
        ps = psutil.Process(proc.pid)
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(ps))
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True) if psutil else None
    if sampler:
        sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    done.set()
    if sampler:
        sampler.join()
    return Measured(seconds, peak[0] / 2 ** 20 if psutil else None, proc.returncode, out, err)


def stats(values: list[float]) -> dict:
    """Median and spread of repeated measurements (spread: (max - min) / median)."""
    values = [float(v) for v in values]
    med = statistics.median(values)
    return {"median": med, "min": min(values), "max": max(values), "n": len(values),
            "spread": (max(values) - min(values)) / med if med else 0.0, "values": values}


def clear_output(out: Path) -> None:
    """Remove an output and the scorer's resume files beside it (`OUT.partial`, ...): every run starts afresh."""
    for p in Path(out).parent.glob(Path(out).name + "*"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


# -- context and output -------------------------------------------------------------------------------------

def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def machine() -> dict:
    info = {"date": now(), "python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count()}
    try:
        info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                                 if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2 ** 30, 1)
    except ImportError:
        pass
    if hasattr(os, "getloadavg"):
        info["loadavg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                            text=True, timeout=10).stdout.strip()
        # the scripts measure the working tree: say which measured code was uncommitted
        status = subprocess.run(["git", "status", "--porcelain", "--", "training"], cwd=REPO, capture_output=True,
                                text=True, timeout=10).stdout.splitlines()
        info["uncommitted_training_files"] = sorted(line[3:] for line in status)
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def command_line(module: str) -> str:
    return " ".join(["python -m", module, *sys.argv[1:]])


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A plain-text table; columns are (key, header, format spec)."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        cells.append([("-" if r.get(k) is None else format(r[k], f)) for k, _, f in columns])
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def emit(result: dict, text: str, json_path: str | None) -> None:
    """The JSON result on stdout (and to a file if asked), then the table."""
    blob = json.dumps(result, indent=1, default=str)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(blob + "\n")
    print(blob)
    print()
    print(text)
