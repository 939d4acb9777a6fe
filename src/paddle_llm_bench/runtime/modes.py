"""Execution modes: how the model's forward runs under ``generate()`` (``core.config.MODES``).

``eager`` is the forward as written. The others replace it with ``paddle.jit.to_static(model.forward, ...)``:
AST mode (``full_graph=True``) translates the forward's source into a static program, SOT mode
(``full_graph=False``, Paddle 3's default) translates its bytecode and falls back to eager code where it
cannot, and ``cinn`` compiles the AST program with the CINN backend. A static program is built per input
shape: ``generate()`` calls the forward with a new key/value-cache length at every decoding step, so the
first generation of a case compiles one program per step (what ``first_generation_ms`` shows) and later
generations of the same shapes reuse them. No input specs are given: the forward takes the cache as a
nested structure whose dynamic dimensions ``InputSpec`` cannot describe in PaddleNLP 3.0.0b4, so shapes are
specialized, as a user converting ``model.forward`` gets them.

Whether a build runs a mode is probed once per session on the probe's micro model (as dtypes are), so a
Paddle that fixes SOT, or gains CINN, gets measured. A build without CINN would silently run AST to_static
under ``backend="CINN"``: that is refused by name, not measured as CINN.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from paddle_llm_bench.runtime.device import Device, import_paddle
from paddle_llm_bench.runtime.models import LoadedModel, probe_generate, working_probe

TO_STATIC_SETTINGS: dict[str, dict[str, Any]] = {
    "to_static": {"full_graph": True},
    "sot": {"full_graph": False},
    "cinn": {"full_graph": True, "backend": "CINN"},
}


class ModeMismatch(AssertionError):
    """A converted forward generated other tokens than eager code for the same inputs: its figures are of
    another computation."""


class ModeUnavailable(RuntimeError):
    """This build of Paddle cannot run the mode at all (no CINN): the message says why."""


def convert(model: Any, mode: str) -> None:
    """Make ``model``'s forward run in ``mode`` (``eager`` puts the forward as written back)."""
    if mode == "eager":
        model.__dict__.pop("forward", None)
        return
    eager = type(model).forward.__get__(model)
    paddle = import_paddle()
    if mode == "cinn" and not paddle.is_compiled_with_cinn():
        raise ModeUnavailable(
            f"this Paddle {paddle.__version__} build has no CINN (paddle.is_compiled_with_cinn() is False): "
            "backend='CINN' would run AST to_static without it"
        )
    model.forward = paddle.jit.to_static(eager, **TO_STATIC_SETTINGS[mode])


def use_mode(loaded: LoadedModel, mode: str) -> None:
    """The loaded model's forward in ``mode``; each mode's converted forward is made once per loaded model and
    kept (with the programs it compiled) for the next case of the same mode."""
    model = loaded.model
    if mode == "eager":
        convert(model, "eager")
        return
    converted = loaded.converted_forwards.get(mode)
    if converted is None:
        convert(model, mode)  # assigned as a user would: PaddleNLP's __setattr__ may wrap it, once
        loaded.converted_forwards[mode] = model.__dict__["forward"]
    else:
        model.__dict__["forward"] = converted  # as it was: assigning again would wrap the wrapper


@functools.cache
def mode_unsupported_reason(device: Device, mode: str, cache_dir: Path) -> str | None:
    """None if generation in ``mode`` works on ``device``, else the real error: the probe's micro model
    converted and generating 2 tokens in float32 (once per session, seconds for the static modes)."""
    if mode == "eager":
        return None
    paddle = import_paddle(cache_dir)
    where = f"{device.describe()} with Paddle {paddle.__version__}"
    directory = working_probe(device, cache_dir)
    try:
        probe_generate(device, directory, "float32", lambda model: convert(model, mode))
    except Exception as error:  # noqa: BLE001 - whatever the conversion raised is the reason, in its own words
        return f"{mode} generation does not run on {where}: {_error_summary(error)}"
    return None


def _error_summary(error: BaseException) -> str:
    """Type, first line and, when the first line is only a heading (SOT's "In simulate execution:"), the last."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    text = f"{type(error).__name__}: {lines[0]}"
    if len(lines) > 1 and lines[0].endswith(":"):
        text += f" ... {lines[-1]}"
    return text[:600]
