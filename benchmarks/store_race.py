"""A new SQLite store opened at the same instant by `tpc` and by a program that does not take its lock: how often
each side gets a usable store.

    python -m benchmarks.store_race --rounds 12
    python -m benchmarks.store_race --rounds 8 --pythonpath /tmp/old-checkout      # another checkout's code

Each round, in a fresh directory, two processes wait for one common instant (after their imports), then:
- `tpc`: `training.concurrency.prepare_sqlite_store(URI, "race")`, what every `tpc train` does first;
- `foreign`: `MlflowClient(URI).search_experiments()`, as an `mlflow ui` or a user's script opens the store.
A round's side fails when its process exits non-zero (its last error line is printed). After the round the store is
checked from a third process: schema at this MLflow's newest revision, all tables there, experiment `race` present."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common

WAIT = "import sys, time; t = float(sys.argv[2]); time.sleep(max(0.0, t - time.time()))"
SIDES = {
    "tpc": "from training import concurrency; import mlflow; " + WAIT
           + "; concurrency.prepare_sqlite_store(sys.argv[1], 'race')",
    "foreign": "import mlflow; from mlflow import MlflowClient; " + WAIT
               + "; MlflowClient(sys.argv[1]).search_experiments()",
}
CHECK = """import sys, sqlalchemy
from mlflow.store.db import utils as u
from mlflow import MlflowClient
e = sqlalchemy.create_engine(sys.argv[1])
ok = u._get_schema_version(e) == u._get_latest_schema_revision() and u._all_tables_exist(e)
ok = ok and MlflowClient(sys.argv[1]).get_experiment_by_name("race") is not None
print("usable" if ok else "broken")"""


def last_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "Error" in line and not line.startswith(" ")]
    return (lines or stderr.strip().splitlines() or ["?"])[-1][:160]


def one_round(env: dict, code_dir: Path, lead_s: float) -> dict:
    d = Path(tempfile.mkdtemp(prefix="tpc-store-race-"))
    uri = f"sqlite:///{d / 'mlflow.db'}"
    at = str(time.time() + lead_s)
    procs = {side: subprocess.Popen([sys.executable, "-c", code, uri, at], cwd=code_dir, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE) for side, code in SIDES.items()}
    out = {}
    for side, proc in procs.items():
        _, err = proc.communicate()
        out[side] = "ok" if proc.returncode == 0 else f"failed: {last_error(err)}"
        if proc.returncode == 0 and "building its schema failed" in err:
            out[side] = "ok after a retry"
    check = subprocess.run([sys.executable, "-c", CHECK, uri], env=env, capture_output=True, text=True)
    out["store"] = check.stdout.strip() or f"check failed: {last_error(check.stderr)}"
    shutil.rmtree(d, ignore_errors=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--lead", type=float, default=8.0, help="seconds from start to the common instant (imports)")
    ap.add_argument("--pythonpath", help="import `training` from this checkout instead of the working tree")
    ap.add_argument("--json", help="also write the JSON result to this file")
    args = ap.parse_args(argv)
    # `python -c` imports from its working directory first: the processes run in the checkout measured.
    code_dir = Path(args.pythonpath).resolve() if args.pythonpath else common.REPO
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(code_dir), os.environ.get("PYTHONPATH", "")]))
    result = {"command": common.command_line("benchmarks.store_race"), "machine": common.machine(),
              "pythonpath": args.pythonpath, "rounds": []}
    for i in range(args.rounds):
        r = one_round(env, code_dir, args.lead)
        result["rounds"].append(r)
        print(f"round {i + 1:2d}: tpc {r['tpc']} | foreign {r['foreign']} | store {r['store']}", file=sys.stderr,
              flush=True)
    rounds = result["rounds"]
    result["failed"] = {"tpc": sum(not r["tpc"].startswith("ok") for r in rounds),
                        "tpc_after_a_retry": sum(r["tpc"] == "ok after a retry" for r in rounds),
                        "foreign": sum(not r["foreign"].startswith("ok") for r in rounds),
                        "store_not_usable": sum(r["store"] != "usable" for r in rounds)}
    f = result["failed"]
    common.emit(result, f"{len(rounds)} rounds: tpc failed {f['tpc']} (opened after a retry {f['tpc_after_a_retry']}), "
                        f"foreign failed {f['foreign']}, store not usable after {f['store_not_usable']}", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
