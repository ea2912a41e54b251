"""The text of the panel's details area: what a run did, on what, how long it took, or its full error."""

from __future__ import annotations

import time


def run_report(state, model_label: str, input_name: str) -> str:
    """One block per run: when, input, model, settings, device and timings (or the whole error text)."""
    lines = [f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {input_name}, model {model_label}"]
    if state.cancelled:
        lines.append("Cancelled; the scene was left as it was.")
    elif state.error:
        lines.append("Failed:")
        lines.append(state.error)
    elif state.engine_result is not None:
        result = state.engine_result
        settings = ", ".join(f"{key} {value}" for key, value in result.settings.items())
        lines.append(f"Made by {result.algorithm_name} on {result.device or 'an unreported device'}")
        lines.append(f"Settings: {settings}")
        timings = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in result.timings.items())
        if timings:
            lines.append(f"Timings: {timings}")
    if state.seconds is not None:
        lines.append(f"Wall time: {state.seconds:.1f} s")
    return "\n".join(lines)
