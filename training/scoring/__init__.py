"""Batch scoring (`tpc score`), one module per concern; each imports only modules above it in this list:

- `errors`: the exceptions every other module raises;
- `readers`: input kinds (JSONL, CSV, Parquet, a folder of .txt), the id rules, chunks, the input's fingerprint;
- `schema`: `OutputSchema(labels)`, the output columns, their Arrow and Spark types and their null handling;
- `frames`: a chunk as the model's input frame, the model's rows as output rows, encoded for the sink;
- `model`: the model to score with, resolved through `training.modelref`;
- `local`, `spark`: the engines; `engines`: the protocol they follow (`Engine`) and the choice of one;
- `sink`: OUTPUT.partial, the progress sidecar, resume and --overwrite; `meter`: progress on stderr;
- `batch`: `score()`, the facade the command line calls (re-exported by `training.score`).

This file imports nothing, so a worker process that imports one module does not import them all.
"""
