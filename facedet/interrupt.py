"""Ctrl-C during training: finish the step under way, save last.pt, stop; a second Ctrl-C stops at once.

    ctrl_c = CtrlC()
    with ctrl_c:                      # SIGINT now sets ctrl_c.requested instead of raising
        for batch in batches:
            step(batch)
            if ctrl_c.requested:      # the loop stops between steps: last.pt resumes exactly
                break
"""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from tqdm import tqdm

from facedet import distributed as dist


class CtrlC:
    """Inside `with`: the first SIGINT sets `requested`; the second raises KeyboardInterrupt.

    Under DDP every rank would have to agree on the step to stop after, so there Ctrl-C stops
    at once (Python's own handler stays, as a second Ctrl-C does here) and last.pt resumes after
    the last step that rank 0 completed. Signals reach the main thread only: in any other thread
    the handler is not installed either.
    """

    def __init__(self) -> None:
        self.requested = False
        self._owner: int | None = None  # the process that installed the handler
        self._previous = None           # the handler to put back on leaving

    def __enter__(self) -> CtrlC:
        if dist.world_size() == 1 and threading.current_thread() is threading.main_thread():
            self._owner = os.getpid()
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._owner is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._owner = None

    def _handle(self, signum, frame) -> None:
        if os.getpid() != self._owner:  # a data-loader worker (forked with this handler): the trainer decides
            return
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("Ctrl-C: stopping after this step to save last.pt (Ctrl-C again to stop at once)")


def interrupted_note(last: Path, epoch: int, batch: int, mid_step: bool) -> str:
    """The line printed after a stop: where it stopped (epoch counted from 1) and how to resume.
    `mid_step`: a second Ctrl-C cut an optimisation step short."""
    cut = "; the update under way when it stopped may be repeated" if mid_step else ""
    return (f"interrupted at epoch {epoch + 1}, after batch {batch}: saved {last} "
            f"(resume with train.resume={last}{cut})")
