"""The trainer's progress lines on stderr, and a heartbeat for steps that can block for a long time.

Standard library only: `modelops train` prints its first lines before pandas, scikit-learn or MLflow are
imported (on a busy machine, right after installation, those imports and the first contact with the
tracking server take a minute or more, and a silent terminal looks like a hang).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator

Progress = Callable[[str], None]

#: seconds between "still ..." lines while a step blocks
HEARTBEAT_SECONDS = 10.0


def stderr_progress(prefix: str = "modelops train") -> Progress:
    start = time.monotonic()

    def say(message: str) -> None:
        print(f"[{prefix} +{time.monotonic() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    return say


@contextlib.contextmanager
def waiting(say: Progress, what: str, every: float | None = None) -> Iterator[None]:
    """Say `what` now and, while the block runs, `still <what> (N s)` every `every` seconds."""
    every = HEARTBEAT_SECONDS if every is None else every
    say(f"{what} ...")
    done = threading.Event()
    start = time.monotonic()

    def beat() -> None:
        while not done.wait(every):
            say(f"still {what} ({time.monotonic() - start:.0f} s)")

    thread = threading.Thread(target=beat, name="progress-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
