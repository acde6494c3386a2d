"""Signals: SIGTERM stops a run as Ctrl-C does (keeping what is done), the exit status says which signal it
was, and the writing of summaries is never cut in half."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import NoReturn


def stop_on_signal(signum, frame):  # SIGTERM (cluster pre-emption, `kill`): stop like Ctrl-C, keeping what is done
    raise KeyboardInterrupt(signum)


def exit_as_signalled(err: KeyboardInterrupt) -> NoReturn:
    """Exit with the status the signal would have given (130 Ctrl-C, 143 SIGTERM), without a traceback."""
    sys.exit(128 + (err.args[0] if err.args and isinstance(err.args[0], int) else signal.SIGINT))


class Held:
    """The signals caught while `signals_held` held them."""

    def __init__(self) -> None:
        self.caught: list[int] = []


def note_signals() -> Held:
    """From now until the process exits, Ctrl-C and SIGTERM are only noted in the returned `Held`: for a run
    whose results and summaries are all written (its last log lines, Hydra's and W&B's teardown), which a signal
    can no longer make incomplete, so it exits 0 as its summaries say."""
    held = Held()
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, lambda signum, frame: held.caught.append(signum))
    return held


@contextlib.contextmanager
def signals_held(reraise: bool = True):
    """Ctrl-C and SIGTERM wait for the block (results being recorded, summaries and W&B runs being written),
    then stop the process as they would have (`reraise`), or are only noted in the yielded `Held` for the
    caller to decide: a signal must not leave some results or points half written."""
    held = Held()
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set from there
        yield held
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: held.caught.append(signum)) for s in signals}
    try:
        yield held
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if held.caught and reraise:
        raise KeyboardInterrupt(held.caught[0])
