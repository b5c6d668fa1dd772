"""Progress reports of long calls: ``verbose`` and ``progress=`` callbacks.

The CPU sweep (:func:`nwattn._cpu.sweep.sweep`) runs its work in chunks of
a fraction of a second and calls ``progress(done, total)`` between them,
with the numbers of (query, key) pairs done and in all; the same pauses let
a Ctrl-C through. This module turns those calls into what a user sees:

* :class:`ProgressReporter` prints a line on stderr with the percentage
  done, the time elapsed and an estimate of the time left, at most every
  ``interval`` seconds, and always the last line (100 %);
* :func:`progress_callback` combines a user's callback and ``verbose`` into
  the one callable (a :class:`Progress`, or ``None``) a backend takes;
* :class:`EvaluationLog` prints one numbered line per evaluation of an
  objective (the bandwidth search).

``verbose`` follows scikit-learn's convention: 0 (the default) is silent,
1 reports progress. Nothing here is called when ``verbose`` is 0 and no
callback is given: a backend then gets ``progress=None`` and pays nothing.
"""

import sys
from time import perf_counter as _clock

__all__ = ["ProgressReporter", "Progress", "progress_callback", "EvaluationLog", "check_verbose"]

#: Least time between two progress lines, in seconds: a few lines a second
#: at most, however short the chunks of work.
INTERVAL = 0.5


def check_verbose(verbose):
    """Validate ``verbose`` (a non-negative integer or a bool) and return it as an int.

    Examples
    --------
    >>> from nwattn._progress import check_verbose
    >>> check_verbose(True), check_verbose(2)
    (1, 2)
    """
    try:
        value = int(verbose)
    except (TypeError, ValueError):
        value = None
    if value is None or value != verbose or value < 0:
        raise ValueError(f"verbose must be a non-negative integer, got {verbose!r}")
    return value


def _duration(seconds):
    """``seconds`` as ``12.3s``, ``4m05s`` or ``1h02m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class ProgressReporter:
    """A ``progress(done, total)`` callable that prints rate-limited lines on stderr.

    Each line reads ``[label]  42.0%  elapsed 1.3s  left ~1.8s``: the
    share done, the time since the reporter was made (or since its first
    call, with ``start=False``) and the time left if the rest goes at the
    rate so far. A line is printed when at least ``interval`` seconds have
    passed since the last one, and always when ``done == total``, so every
    report ends with a line at 100 %.

    Parameters
    ----------
    label : str
        What is running, printed in brackets at the start of each line.
    interval : float, default=None
        Least time between two lines, in seconds; ``None`` is
        :data:`INTERVAL` (half a second).
    stream : file-like, default=None
        Where to write; ``None`` is :data:`sys.stderr` at the time of each
        line (so that pytest's and other redirections see it).

    Examples
    --------
    >>> import sys
    >>> from nwattn._progress import ProgressReporter
    >>> report = ProgressReporter("demo", interval=60, stream=sys.stdout)
    >>> report(50, 100)  # less than a minute after the start: no line
    >>> report(100, 100)  # doctest: +ELLIPSIS
    [demo] 100.0%  elapsed ...s  left ~0.0s
    """

    def __init__(self, label, *, interval=None, stream=None):
        self.label = label
        self.interval = float(INTERVAL if interval is None else interval)
        self.stream = stream
        self._start = _clock()
        self._last = self._start

    def __call__(self, done, total):
        now = _clock()
        final = done >= total
        if not final and now - self._last < self.interval:
            return
        self._last = now
        elapsed = now - self._start
        share = 1.0 if total <= 0 else min(1.0, done / total)
        if share > 0:
            left = f"~{_duration(elapsed * (1.0 - share) / share)}"
        else:
            left = "?"
        stream = self.stream if self.stream is not None else sys.stderr
        print(f"[{self.label}] {100.0 * share:5.1f}%  elapsed {_duration(elapsed)}  "
              f"left {left}", file=stream, flush=True)


class Progress:
    """A call's progress callback: a user's ``progress``, a reporter, or both.

    Made by :func:`progress_callback`. Calling it passes ``(done, total)``
    on, the user's callback first, so that an exception it raises (to
    cancel the call) stops the work before a line is printed.
    :meth:`finish` makes the final call when the computation did not (a
    problem with no pairs, a device that reports nothing), so every report
    ends at ``done == total``.
    """

    def __init__(self, callbacks):
        self._callbacks = callbacks
        self.final = False

    def __call__(self, done, total):
        self.final = done >= total
        for cb in self._callbacks:
            cb(done, total)

    def finish(self, total):
        """Call ``self(total, total)`` unless the last call already said so."""
        if not self.final:
            self(total, total)


def progress_callback(verbose=0, progress=None, label="nwattn"):
    """The one callback a backend gets for ``verbose`` and a user's ``progress``.

    Parameters
    ----------
    verbose : int, default=0
        0: no report; 1 or more: a :class:`ProgressReporter` named ``label``.
    progress : callable, default=None
        The user's ``progress(done, total)``, called with the numbers of
        (query, key) pairs done and in all. An exception it raises stops
        the computation and propagates (a way to cancel it).
    label : str, default="nwattn"
        Name of the call in the printed lines.

    Returns
    -------
    Progress or None
        ``None`` when there is nothing to report, so that the backend
        skips the calls altogether.

    Examples
    --------
    >>> from nwattn._progress import progress_callback
    >>> progress_callback() is None
    True
    >>> seen = []
    >>> cb = progress_callback(progress=lambda done, total: seen.append(done))
    >>> cb(3, 10)
    >>> cb.finish(10)  # the computation stopped short of a final call
    >>> seen
    [3, 10]
    """
    verbose = check_verbose(verbose)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable progress(done, total), got {progress!r}")
    if isinstance(progress, Progress) and verbose == 0:
        return progress  # passed down from a higher-level call
    callbacks = [] if progress is None else [progress]
    if verbose > 0:
        callbacks.append(ProgressReporter(label))
    return Progress(callbacks) if callbacks else None


class EvaluationLog:
    """Numbered lines on stderr, one per evaluation of an objective, with its time.

    Parameters
    ----------
    label : str
        Printed in brackets at the start of each line.
    verbose : int, default=1
        0 makes :meth:`evaluation` and :meth:`done` do nothing.
    stream : file-like, default=None
        Where to write; ``None`` is :data:`sys.stderr` at the time of each
        line.

    Examples
    --------
    >>> import sys
    >>> from nwattn._progress import EvaluationLog
    >>> log = EvaluationLog("search", stream=sys.stdout)
    >>> log.evaluation("h=0.5", 0.25, 0.01)  # doctest: +ELLIPSIS
    [search] evaluation 1  h=0.5  score 0.25  0.01s  (total ...s)
    """

    def __init__(self, label, verbose=1, *, stream=None):
        self.label = label
        self.verbose = check_verbose(verbose)
        self.stream = stream
        self.count = 0
        self._start = _clock()

    def _print(self, text):
        stream = self.stream if self.stream is not None else sys.stderr
        print(f"[{self.label}] {text}", file=stream, flush=True)

    def evaluation(self, what, score, seconds):
        """Report one evaluation: ``what`` was evaluated, scored ``score`` in ``seconds``."""
        self.count += 1
        if self.verbose:
            total = _clock() - self._start
            self._print(f"evaluation {self.count}  {what}  score {score:.6g}  "
                        f"{seconds:.2f}s  (total {_duration(total)})")

    def done(self, text):
        """Report the end of the search: ``text`` and the evaluations made."""
        if self.verbose:
            self._print(f"{text}  after {self.count} evaluations in "
                        f"{_duration(_clock() - self._start)}")
