"""The inference command's console: one live progress bar over cases on a terminal, one result line per case, and
``--quiet``.

- :func:`case_bar`: a tqdm bar over cases on stderr, only when stderr is a terminal (a log file, pipe or CI console
  gets no bar: the result lines are its progress);
- :func:`case_result_line`: the one line that reports a finished case (``[2/5] Chest_CT: done, 5 lesions in 29.4 s,
  58 % of windows skipped``);
- :func:`configure_console`: ``configs/inference.json``'s ``console`` step (``--quiet True``: nothing but errors).

Used by :py:class:`bundle.engines.evaluator.LesionInferenceEvaluator`.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm

__all__ = ["case_bar", "case_result_line", "configure_console"]


def configure_console(quiet: bool = False) -> None:
    """
    The inference command's console (``configs/inference.json``: the ``console`` step of ``initialize``, from
    ``--quiet``). ``quiet=False`` changes nothing.

    ``quiet=True`` prints nothing but errors: ``logging.disable(logging.WARNING)`` drops every log record of the
    process at WARNING and below, and Python warnings are ignored. The whole process, on purpose: MONAI's loggers
    (``monai.bundle.scripts``' input summary, ``monai.data`` readers) have their own stdout handlers, their own
    levels and no propagation, and modules imported later create more, so levels set one logger at a time would miss
    some. The evaluator's bar is off through its ``progress`` argument (``"$not @quiet"``). A failed case still ends
    the command with status 1 and its one line on stderr (``sys.exit``, not logging).

    Raises:
        TypeError: When ``quiet`` is not a bool (``--quiet maybe``).

    """
    if not isinstance(quiet, bool):  # "--quiet maybe" arrives as a (truthy) string
        raise TypeError(f"quiet must be True or False, got quiet={quiet!r} ({type(quiet).__name__}).")
    if quiet:
        logging.disable(logging.WARNING)
        warnings.simplefilter("ignore")


def case_result_line(record: Mapping[str, Any], index: int, total: int | None) -> tuple[int, str]:
    """(log level, one line) for a case's record: ``[2/5] Chest_CT: done, 5 lesions in 29.4 s, 58 % of windows
    skipped`` (INFO; the windows part only with routing statistics), ``... skipped, ...`` (INFO) or ``... failed
    after 0.3 s: <reason>`` (WARNING)."""
    where = f"[{index}/{total}] {record['case']}" if total else f"[{index}] {record['case']}"
    seconds = float(record.get("seconds", 0.0))
    if record["status"] == "failed":
        return logging.WARNING, f"{where}: failed after {seconds:.1f} s: {record.get('error')}"
    if record["status"] == "skipped":
        return logging.INFO, f"{where}: skipped, its lesions.json exists (overwrite=False)"
    n = int(record.get("n_lesions", 0))
    line = f"{where}: done, {n} lesion{'' if n == 1 else 's'} in {seconds:.1f} s"
    fraction = record.get("skipped_fraction")
    if fraction is not None:
        line += f", {100.0 * float(fraction):.0f} % of windows skipped"
    return logging.INFO, line


class _AboveBar:
    """A console stream whose writes first lift the live tqdm bars off the terminal and redraw them after, so a log
    line printed during a case lands above the bar instead of being glued to it."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        with tqdm.external_write_mode(file=self.stream):
            written = self.stream.write(text)
            self.stream.flush()
        return written

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextmanager
def case_bar(enabled: bool, total: int | None) -> Iterator[tqdm | None]:
    """
    One live progress bar over cases on stderr, only when ``enabled`` and stderr is a terminal; else None.

    Not ignite's ``ProgressBar``: it opens its bar at the first ``ITERATION_COMPLETED`` (nothing shows during the
    first case) with ``initial=1``, then draws it again for ``set_description`` and for ``close``, each draw a
    ``\\r``-separated copy that a log file or CI console keeps (three copies on one line per case). Here the bar opens
    before the first case, shows the case being processed, advances once per case and is removed at the end
    (``leave=False``: the per-case result lines and the summary line are the record). A log file, pipe or CI console
    gets no bar: the per-case result line (INFO, numbered ``[i/n]``) is its progress. While the bar is live, the
    root logger's console handlers write through :class:`_AboveBar`.

    Args:
        enabled: show the bar (on a terminal).
        total: the number of cases, None when unknown.

    Yields:
        the tqdm bar (``set_postfix_str`` the case being processed, ``update(1)`` after each case), or None.
    """
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    bar = tqdm(total=total, desc="cases", unit="case", file=sys.stderr, leave=False, dynamic_ncols=True)
    swapped = [
        (handler, handler.setStream(_AboveBar(handler.stream)))
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.stderr)
    ]
    try:
        yield bar
    finally:
        for handler, stream in swapped:
            handler.setStream(stream)
        bar.close()
