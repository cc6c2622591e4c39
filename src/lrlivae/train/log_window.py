"""What the training loop reports and when: the means of a logging window of steps (with its speed), the
progress bar's loss figures, and the steps at which it calls on_epoch (epoch ends, at most MAX_EPOCH_CALLS
times a run, and the last step)."""
from __future__ import annotations

import time

MAX_EPOCH_CALLS = 20  # on_epoch calls per run, at most (plus the last step)


class LogWindow:
    """Sums of an iteration's scalars over one logging window, and its speed."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count, self.t0 = 0, time.perf_counter()

    def add(self, scalars: dict) -> None:
        for k, v in scalars.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.count += 1

    def mean(self) -> dict:
        out = {k: v / self.count for k, v in self.sums.items()}
        out["_it_per_s"] = self.count / max(1e-9, time.perf_counter() - self.t0)
        return out


class EpochCalls:
    """When the loop calls on_epoch (validation figures and image grids for the tracker): at epoch ends, but
    no more than MAX_EPOCH_CALLS times a run (a small set's epochs are a few steps long), and at the last
    step."""

    def __init__(self, steps: int, start: int):
        self.steps, self.gap, self.last = steps, max(1, steps // MAX_EPOCH_CALLS), start

    def due(self, step: int, epoch_done: bool) -> bool:
        """Whether to call on_epoch after `step` (counted as a call when it is)."""
        if (epoch_done and step - self.last >= self.gap) or step == self.steps:
            self.last = step
            return True
        return False


def history_row(step: int, logged: dict) -> dict:
    """The checkpoint history's row of a logging window: its loss terms and discriminator figures."""
    return {"step": step, **{k: float(v) for k, v in logged.items() if k.startswith(("loss/", "d/"))}}


def bar_postfix(logged: dict) -> dict:
    """The progress bar's figures: the classification, reconstruction and KL losses, 3 digits."""
    return {k.split("/")[-1]: f"{v:.3g}" for k, v in logged.items() if k.startswith("loss/")
            and k.endswith(("cls", "rec", "kl"))}
