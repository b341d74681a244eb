"""The ground floor: the errors every layer raises, and the "did you mean" helper for their messages.

It imports nothing from coopmarl (and nothing heavy), so any module may use it without an import cycle.
The CLI turns each `CoopmarlError` into one line, `coopmarl: error: …`, with exit status 2; a run that
stops early raises a `RunStopped` (diverged: status 3; interrupted: 130).
"""

from __future__ import annotations

import difflib


class CoopmarlError(Exception):
    """Base of the errors raised for bad input; their messages name the valid choices."""


class ConfigError(CoopmarlError, ValueError):
    """A run could not be configured; the message says why and names the valid choices."""


class ParamError(CoopmarlError, ValueError):
    """A parameter has an unknown name or a value of the wrong type."""


class UnknownNameError(CoopmarlError, KeyError):
    """An unknown environment, algorithm or experiment name."""

    def __str__(self):  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class GameValidationError(CoopmarlError, ValueError):
    """A TabularGame's arrays are inconsistent (shape, sign or normalisation)."""


class RunStopped(Exception):
    """A run stopped before its end; `.result` (a `RunResult`) holds its curves so far and its last finite,
    complete state (`result.loop`, at `result.state_step` env steps)."""

    def __init__(self, message: str, result):
        super().__init__(message)
        self.result = result


class Diverged(RunStopped):
    """A loss, gradient or parameter became nan or inf; the message names it, the step and the seed.
    The CLI exits with status 3."""


class Interrupted(RunStopped, KeyboardInterrupt):
    """Ctrl-C during training (still a KeyboardInterrupt for code that does not know it). Exit status 130."""


def did_you_mean(name: str, choices) -> str:
    """" Did you mean 'x'?" for the closest of `choices`, or ""."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""
