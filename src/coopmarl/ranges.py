"""The numbers compiled code can hold, and the one wording of a range error.

JAX computes in float32 and int32 (its defaults), so every number a user gives — an algorithm key, an
environment parameter, a game's reward — must fit them: 1e39 would become inf in float32, 2**31 would
overflow int32 (or stop a jitted call with an OverflowError). Range errors all read the same way, the
name first, then what it must be, then the value given:

    lr must be a finite number > 0, got -1.0
    n_envs must be an integer >= 1, got 0
    gamma must be a finite number in [0, 1], got 1.5

Like `coopmarl.errors`, this module imports nothing from coopmarl, so any layer may use it.
"""

from __future__ import annotations

import math

FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32 (np.finfo(np.float32).max)
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def expected(value, integer: bool | None = None) -> str:
    """What a range error says the value must be: 'an integer' for an int key or value (`integer` None: judge
    by the value), else 'a finite number'."""
    return "an integer" if (is_integer(value) if integer is None else integer) else "a finite number"


def number(x) -> str:
    """A bound as the user would write it: 0 for 0.0, 1e-05, 2147483647."""
    return f"{x:g}" if isinstance(x, float) else str(x)


def range_error(name: str, value, requirement: str, why: str = "", *, integer: bool | None = None) -> str:
    """'<name> must be <an integer | a finite number> <requirement><why>, got <value>'."""
    return f"{name} must be {expected(value, integer)} {requirement}{why}, got {value!r}"


def unrepresentable(name: str, value, what: str | None = None) -> str | None:
    """The error for a number compiled code cannot hold — nan, ±inf, a float beyond float32's range, an int
    beyond int32's — or None when `value` fits (non-numbers are left to the type checks). The message starts
    with `what` (default: `name`), e.g. "environment 'penalty' parameter 'k'"."""
    what = what or name
    if is_integer(value) and not INT32_MIN <= value <= INT32_MAX:
        return f"{what} must be an integer in int32's range [{INT32_MIN}, {INT32_MAX}], got {value}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return f"{what} must be a finite number, got {value!r}"
        if abs(value) > FLOAT32_MAX:
            return (f"{what} must be a finite number within float32's range (|{name}| <= {FLOAT32_MAX:.4g}), "
                    f"got {value!r}")
    return None


def total_error(what: str, bound: float, names: str) -> str | None:
    """The error when a sum the code accumulates in float32 (an episode's return, a step's reward) can reach
    `bound` > float32's largest number, or None. `names` says which parameters make it that large."""
    if bound <= FLOAT32_MAX:
        return None
    return (f"{names} too large: {what} can reach {bound:.4g}, beyond float32's range ({FLOAT32_MAX:.4g}); "
            "use smaller values")
