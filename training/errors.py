"""The one base class of the errors a user can act on.

`tpc` prints any `TPCError` as one paragraph (`tpc: error: ...`) and exits with its `exit_code` (2: the input, the
config, the data, the model or the store cannot be used), with no traceback unless `tpc --debug` is given. Each
subclass also keeps the built-in type callers caught before (ValueError, RuntimeError, ImportError).
"""

from __future__ import annotations


class TPCError(Exception):
    exit_code = 2


class ConfigError(TPCError, ValueError):
    """A config that cannot be used; the message names the file, the key and the fix."""
