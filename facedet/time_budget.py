"""train.minutes: the run's length from a time budget, so that its schedule fits the time.

    python -m facedet.train --config objects.yaml data.root=FOLDER train.minutes=9

Steps cost what the machine gives them, so the number of steps that fit N minutes is measured,
not guessed: the run times its first steps (after the very first, which also pays for starting
the data workers), sizes itself to the steps that fit the budget, and from then on the
warm-up and the cosine decay are laid out over that many steps. After every epoch it sizes
itself again from the time really left and the wall time per step so far, so validations
and slower stretches shorten the run instead of overrunning it; if a step still ends past the
deadline, training stops there. The run ends with a validation and the calibration, each one
pass over the validation photos: a tenth of the budget is kept for them, or, once a validation
has been timed, twice its time if that is more. The clock starts when the trainer is built:
reading the data set and building the model come before, and the calibration after the last
validation may take longer than kept on a busy machine, so the whole command takes somewhat
more than N minutes (BENCHMARKS.md gives measured wall times).
"""
from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING

from facedet.optim import warmup_note

if TYPE_CHECKING:  # for the annotation only: the trainer imports this module
    from facedet.trainer import Trainer

TIMING_STEPS = 5  # steps timed (after the first) before the run is sized
RESERVE = 0.1  # share of the budget kept for the final validation, checkpoints and calibration (at least)


class TimeBudget:
    """Sizes `trainer`'s run to `minutes` of wall time from now (see the module docstring)."""

    def __init__(self, minutes: float, clock=time.perf_counter) -> None:
        self.minutes, self.clock = minutes, clock
        self.start = clock()
        self.end = self.start + 60.0 * minutes
        self.deadline = self.end - 60.0 * minutes * RESERVE  # training ends by here
        self.first_step_end: float | None = None  # the timing starts when the first step ends
        self.steps = 0  # steps taken in this process (a resumed run counts from its own start)
        self.sized = False

    def steps_left(self, seconds_per_step: float) -> int:
        """How many more steps of `seconds_per_step` end before the deadline."""
        return max(0, math.floor((self.deadline - self.clock()) / seconds_per_step))

    def after_step(self, trainer: Trainer) -> None:
        """Called after every step: time the first steps, then size the run; stop at the deadline."""
        self.steps += 1
        now = self.clock()
        if self.steps == 1:
            self.first_step_end = now
        if now > self.deadline and trainer.iteration < trainer.total_iters:
            print(f"train.minutes={self.minutes:g}: time is up after step {trainer.iteration} of "
                  f"{trainer.total_iters}; stopping here", file=sys.stderr, flush=True)
            trainer.set_length(trainer.iteration)
            self.sized = True
        elif not self.sized and self.steps == 1 + TIMING_STEPS:
            per_step = (now - self.first_step_end) / TIMING_STEPS
            total = trainer.iteration + self.steps_left(per_step)
            trainer.set_length(total)
            self.sized = True
            print(f"train.minutes={self.minutes:g}: {per_step:.2f} s per step over steps 2-{self.steps}, so the run "
                  f"is {total} steps ({trainer.epochs} epochs), its schedule laid out over them; "
                  f"{RESERVE:.0%} of the time is kept for the last validation and the calibration",
                  file=sys.stderr, flush=True)
            note = warmup_note(trainer.cfg.train, total)
            if note:
                print(note, file=sys.stderr, flush=True)

    def after_epoch(self, trainer: Trainer) -> None:
        """Called after every epoch, before its validation: size the rest of the run to the time left."""
        if not self.sized or trainer.iteration >= trainer.total_iters:
            return
        kept = max(60.0 * self.minutes * RESERVE, 2 * trainer.validation_time)  # the last validation + calibration
        self.deadline = self.end - kept
        per_step = (self.clock() - self.start) / self.steps  # everything so far, validations included
        trainer.set_length(trainer.iteration + self.steps_left(per_step))
