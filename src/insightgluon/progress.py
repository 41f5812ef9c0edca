"""Progress of long work: a bar on a terminal, log lines everywhere else.

Jobs run under ``nohup`` or with their output in a file see no terminal, and a
progress bar there is either hidden or a wall of carriage returns. Every long
loop in the toolkit therefore reports through :class:`Progress`: on a terminal
it is a ``tqdm`` bar; otherwise it logs one line about every 10% of the work
(or every 30 s when the total is unknown or the work is slow) with the count,
the rate and the ETA, e.g.::

    align: 2311/7701 img (30%)  19.7 img/s  elapsed 0:01:57  ETA 0:04:33
"""
import logging
import sys
import time
from typing import Iterable, Iterator, Optional, TypeVar

logger = logging.getLogger("insightgluon.progress")

T = TypeVar("T")

# Log mode: a line at each tenth of the work, and at least every 30 s ...
EVERY_FRACTION = 0.1
EVERY_SECONDS = 30.0
# ... but nothing for work that is over before this, so short loops stay silent.
QUIET_SECONDS = 5.0


def on_terminal(stream=None) -> bool:
    """Whether ``stream`` (default ``sys.stderr``, where logs and bars go) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def format_seconds(seconds: float) -> str:
    """``H:MM:SS``."""
    seconds = int(max(0.0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Count work done; show it as a bar on a terminal or as periodic log lines.

    Parameters
    ----------
    total : int, optional
        Units of work expected (None: unknown, no percentage or ETA).
    desc : str
        Name of the work, the start of every line (``"align"``, ``"lfw"``).
    unit : str
        Name of one unit (``"img"``, ``"pair"``, ``"batch"``).
    initial : int
        Units already done (a resumed job).
    enabled : bool
        False shows nothing at all.
    bar : bool, optional
        Force the bar (True) or the log lines (False); default: bar on a terminal.
    leave : bool
        Keep the finished bar on screen.
    every_fraction, every_seconds, quiet_seconds : float, optional
        Log mode: a line each ``every_fraction`` of ``total`` (0: never by
        fraction) and after ``every_seconds`` without a line, none before
        ``quiet_seconds`` have passed (defaults: the module's constants).
    """

    def __init__(self, total: Optional[int] = None, desc: str = "", unit: str = "it", initial: int = 0,
                 enabled: bool = True, bar: Optional[bool] = None, leave: bool = True,
                 every_fraction: Optional[float] = None, every_seconds: Optional[float] = None,
                 quiet_seconds: Optional[float] = None):
        self.total = total if total else None
        self.desc, self.unit = desc, unit
        self.n = self._start = initial
        self.every_fraction = EVERY_FRACTION if every_fraction is None else every_fraction
        self.every_seconds = EVERY_SECONDS if every_seconds is None else every_seconds
        self.quiet_seconds = QUIET_SECONDS if quiet_seconds is None else quiet_seconds
        self._tic = self._last_line = time.monotonic()
        self._next_fraction = self.every_fraction
        self._lines = 0
        self._bar = None
        self._log = enabled and not (on_terminal() if bar is None else bar)
        if enabled and not self._log:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=initial, desc=desc or None, unit=unit,
                             leave=leave, dynamic_ncols=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Account ``n`` more units of work."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._log:
            self._maybe_log()

    def set_postfix(self, **values) -> None:
        """Extra figures shown after the bar (terminal only; log lines have their own callers)."""
        if self._bar is not None:
            self._bar.set_postfix(refresh=False, **values)

    def touch(self) -> None:
        """The caller just logged a line of its own: restart the 30 s clock."""
        self._last_line = time.monotonic()

    def close(self) -> None:
        """Finish: close the bar, or log a last line when lines were logged before."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._log and self._lines:
            elapsed = time.monotonic() - self._tic
            logger.info("%s: done, %d %s in %s (%s)", self.desc or "progress", self.n, self.unit,
                        format_seconds(elapsed), self._rate(elapsed))
            self._log = False

    # ------------------------------------------------------------------
    def _maybe_log(self) -> None:
        now = time.monotonic()
        elapsed = now - self._tic
        if elapsed < self.quiet_seconds:
            return
        due = now - self._last_line >= self.every_seconds
        if self.total and self.every_fraction > 0 and self.n / self.total + 1e-9 >= self._next_fraction:
            due = True
        if due:
            if self.total and self.every_fraction > 0:
                # The next tenth, skipping one that is closer than half a tenth (no twin lines).
                fraction = self.n / self.total
                self._next_fraction = (int(fraction / self.every_fraction + 1e-9) + 1) * self.every_fraction
                if self._next_fraction - fraction < self.every_fraction / 2:
                    self._next_fraction += self.every_fraction
            self._lines += 1
            self._last_line = now
            logger.info("%s", self.line(elapsed))

    def _rate(self, elapsed: float) -> str:
        rate = (self.n - self._start) / max(elapsed, 1e-9)
        return f"{rate:.1f} {self.unit}/s" if rate >= 1 else f"{1 / max(rate, 1e-9):.1f} s/{self.unit}"

    def line(self, elapsed: float) -> str:
        """The log line for ``elapsed`` seconds of work: count, percentage, rate, ETA."""
        head = f"{self.desc or 'progress'}: {self.n}"
        if self.total:
            head += f"/{self.total} {self.unit} ({100.0 * self.n / self.total:.0f}%)"
        else:
            head += f" {self.unit}"
        text = f"{head}  {self._rate(elapsed)}  elapsed {format_seconds(elapsed)}"
        done = self.n - self._start
        if self.total and done > 0:
            text += f"  ETA {format_seconds((self.total - self.n) * elapsed / done)}"
        return text


def progress(iterable: Iterable[T], total: Optional[int] = None, **options) -> Iterator[T]:
    """Iterate over ``iterable`` while reporting through a :class:`Progress` (same options)."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(total=total, **options) as bar:
        for item in iterable:
            yield item
            bar.update(1)
