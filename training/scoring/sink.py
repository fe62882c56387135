"""Where `tpc score` writes: ``OUTPUT.partial`` (a file for JSONL, a folder of one Parquet file per chunk for
Parquet) with a sidecar ``OUTPUT.progress.json`` committed after each chunk is on disk; the finished output is
renamed into place, so a file named OUTPUT is always complete. A finished output is replaced only with --overwrite,
and an interrupted one is continued only with --resume, by the same input, model and options."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from training.scoring.errors import InputError, ScoringError

PROGRESS_FORMAT = 1


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def check_paths(input_path: Path, output_path: Path) -> str:
    if output_path.suffix.lower() not in (".jsonl", ".parquet"):
        raise InputError(f"{output_path}: output must end in .jsonl or .parquet")
    if output_path.is_dir():
        raise InputError(f"{output_path}: output is a folder; give a file name")
    src, dst = input_path.resolve(), output_path.resolve()
    if src == dst:
        raise InputError(f"{output_path}: output would overwrite the input")
    if input_path.is_dir() and src in dst.parents:
        raise InputError(f"{output_path}: output must not be inside the input folder {input_path}")
    if not output_path.parent.is_dir():
        raise InputError(f"{output_path}: folder {output_path.parent} does not exist")
    return output_path.suffix.lower()[1:]


def check_finished(output: Path, resume: bool, overwrite: bool) -> None:
    """A finished output is never replaced silently: --overwrite says so (the old file stays until the new one is
    complete). The one exception: a resumed run that was killed between its final rename and the cleanup."""
    if not output.exists() or overwrite:
        return
    partial = output.with_name(output.name + ".partial")
    sidecar = output.with_name(output.name + ".progress.json")
    if resume and sidecar.exists() and not partial.exists():
        return
    raise InputError(f"{output}: exists from a finished run; pass --overwrite to replace it (it is replaced only "
                     "once the new output is complete), or choose another -o")


class Output:
    """OUTPUT.partial + OUTPUT.progress.json; `commit` after each chunk, `finish` renames into place."""

    def __init__(self, output: Path, fmt: str, identity: dict):
        self.output, self.fmt, self.identity = output, fmt, identity
        self.partial = output.with_name(output.name + ".partial")
        self.sidecar = output.with_name(output.name + ".progress.json")
        self.state = {"chunks": 0, "rows": 0, "errors": 0, "bytes": 0, "columns": None}
        self.fh = None

    def exists(self) -> bool:
        return self.partial.exists() or self.sidecar.exists()

    def discard(self) -> None:
        if self.partial.is_dir():
            shutil.rmtree(self.partial)
        else:
            self.partial.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)

    def start(self) -> None:
        self.discard()
        if self.fmt == "parquet":
            self.partial.mkdir()
        else:
            self.partial.touch()
        self._commit()

    def open(self, resume: bool) -> int | None:
        """Chunks an interrupted run already committed (0 for a new run; None when it had finished): the engine
        skips them. Without --resume, a partial output left by an interrupted run is refused, never thrown away."""
        if resume and self.exists():
            skip = self.resume()["chunks"]
            return None if self.state.get("done") else skip
        if self.exists():
            raise InputError(f"{self.partial} exists from an interrupted run: pass --resume to continue it, or "
                             f"delete it and {self.sidecar} to start over")
        self.start()
        return 0

    def resume(self) -> dict:
        try:
            saved = json.loads(self.sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.sidecar}: progress file unreadable ({exc}); delete {self.partial} and "
                             f"{self.sidecar} to start over") from None
        if not self.partial.exists() and saved.get("state", {}).get("done") and self.output.exists():
            return saved["state"]  # killed between the final rename and removing the progress file
        if not self.partial.exists():
            raise InputError(f"{self.partial} is missing but {self.sidecar} exists; delete the progress file to "
                             "start over")
        mismatched = [k for k in self.identity if saved.get("identity", {}).get(k) != self.identity[k]]
        if mismatched:
            lines = [f"  {k}: interrupted run {saved.get('identity', {}).get(k)!r}, now {self.identity[k]!r}"
                     for k in mismatched]
            raise InputError(f"cannot resume {self.output}: the interrupted run differs in {', '.join(mismatched)}\n"
                             + "\n".join(lines) + f"\nrerun without --resume after deleting {self.partial} and "
                             f"{self.sidecar}, or resume with the same input, model and options")
        self.state = saved["state"]
        if self.fmt == "jsonl":
            # Bytes after the last commit belong to a chunk that was never committed: cut them.
            with open(self.partial, "r+b") as fh:
                fh.truncate(self.state["bytes"])
                fh.flush()
                os.fsync(fh.fileno())
        else:
            for p in self.partial.iterdir():
                if not (p.name.startswith("part-") and p.suffix == ".parquet") or int(p.stem[5:]) >= self.state["chunks"]:
                    p.unlink()
        return self.state

    def _commit(self) -> None:
        data = {"format": PROGRESS_FORMAT, "identity": self.identity, "state": self.state}
        _write_atomic(self.sidecar, json.dumps(data, indent=1).encode("utf-8"))

    def committed_rows(self) -> int:
        """Rows a --resume would keep: what the sidecar on disk says (an interrupt may fall inside `write`)."""
        try:
            return int(json.loads(self.sidecar.read_text(encoding="utf-8"))["state"]["rows"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def write(self, index: int, encoded, rows: int, errors: int, columns: list[str]) -> None:
        if index != self.state["chunks"]:
            raise ScoringError(f"internal: chunk {index} arrived, expected {self.state['chunks']}")
        if self.fmt == "jsonl":
            if self.fh is None:
                self.fh = open(self.partial, "ab")
            self.fh.write(encoded)
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.state["bytes"] = self.fh.tell()
        else:
            import pyarrow.parquet as pq

            part = self.partial / f"part-{index:08d}.parquet"
            tmp = part.with_suffix(".tmp")
            pq.write_table(encoded, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, part)
            _fsync_dir(self.partial)
        self.state["chunks"] += 1
        self.state["rows"] += rows
        self.state["errors"] += errors
        self.state["columns"] = columns
        self._commit()

    def finish(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
        if not self.state.get("done"):
            self.state["done"] = True
            self._commit()
        # Also reached on resume of a run killed during this step: then the partial may or may not be renamed yet.
        if self.fmt == "jsonl" and self.partial.exists():
            os.replace(self.partial, self.output)
        elif self.fmt == "parquet" and self.partial.exists():
            import pyarrow.parquet as pq

            assembled = self.partial / "assembled.tmp"
            writer = None
            for k in range(self.state["chunks"]):
                table = pq.read_table(self.partial / f"part-{k:08d}.parquet")
                writer = writer or pq.ParquetWriter(assembled, table.schema)
                writer.write_table(table)
            if writer is None:
                raise ScoringError("no rows were scored")
            writer.close()
            with open(assembled, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(assembled, self.output)
            shutil.rmtree(self.partial)
        _fsync_dir(self.output.parent)
        self.sidecar.unlink(missing_ok=True)

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
