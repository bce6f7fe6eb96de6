"""One-line error reporting: a readable line for any exception (the innermost cause, the MONAI transform that
raised), the ``sys.excepthook`` the command lines install so a bad input prints ``error: <one line>`` instead of a
traceback, and the record of a case that failed to load."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["describe_exception", "error_record", "install_excepthook", "one_line_excepthook"]

logger = logging.getLogger(__name__)

# MONAI's `apply_transform` re-raises as RuntimeError("applying transform <pkg.Name object at 0x...>") from the cause
_TRANSFORM_RE = re.compile(r"applying transform <(?:[\w.]+\.)?(\w+) object")
_TRACEBACK = "Traceback (most recent call last):"
_CHAINED = ("The above exception was the direct cause", "During handling of the above exception")


def describe_exception(exc: BaseException, max_chars: int = 400) -> str:
    """
    One readable line for an exception: the innermost cause's type and message, prefixed with the name of the
    MONAI transform that failed when MONAI's ``apply_transform`` wrapped it. No traceback: tracebacks embedded in
    the message (MONAI ``LoadImage`` lists every reader's) are reduced to their last lines.

    Args:
        exc: the exception (with its ``__cause__`` / ``__context__`` chain).
        max_chars: the line is cut to this many characters (with "..."). Default 400.

    Returns:
        e.g. ``"LoadImaged: RuntimeError: cannot find a suitable reader ..."``.

    """
    chain: list[BaseException] = [exc]
    while len(chain) < 32:
        last = chain[-1]
        inner = last.__cause__ or (None if last.__suppress_context__ else last.__context__)
        if inner is None:  # ``raise ... from None`` marks a message that already says everything
            break
        chain.append(inner)
    transform = ""
    for e in chain:  # the innermost "applying transform" names the transform that raised, not its Compose
        found = _TRANSFORM_RE.search(str(e))
        if found:
            transform = found.group(1)
    root = chain[-1]
    text = str(root)
    if _TRACEBACK in text:  # e.g. MONAI LoadImage appends every reader's traceback: keep their last lines
        head, *blocks = text.split(_TRACEBACK)
        finals: list[str] = []
        for block in blocks:
            lines = [ln.strip() for ln in block.splitlines() if ln.strip() and not ln[0].isspace()]
            if lines and lines[-1].startswith(_CHAINED):
                continue  # the cause of the exception whose traceback follows: keep only that outer one
            if lines and lines[-1] not in finals:
                finals.append(lines[-1])
        text = f"{head.strip().splitlines()[0] if head.strip() else ''} ({'; '.join(finals)})"
    message = " ".join(text.split()) or "(no message)"
    line = f"{transform + ': ' if transform else ''}{type(root).__name__}: {message}"
    return line if len(line) <= max_chars else line[: max_chars - 3] + "..."


def one_line_excepthook(
    exc_type: type[BaseException], exc: BaseException, traceback: TracebackType | None
) -> None:
    """
    ``sys.excepthook`` that prints ``error: <one line>`` (see :func:`describe_exception`) to stderr instead of a
    traceback; the traceback goes to this module's logger at DEBUG. ``KeyboardInterrupt`` keeps Python's default.
    The interpreter still exits with status 1.
    """
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, traceback)
        return
    logger.debug("uncaught exception", exc_info=(exc_type, exc, traceback))
    sys.stderr.write(f"error: {describe_exception(exc, max_chars=1000)}\n")
    sys.stderr.flush()


def install_excepthook() -> None:
    """
    Make uncaught exceptions print one line (:func:`one_line_excepthook`), e.g. as the first ``initialize`` step of
    a bundle config, so that ``python -m monai.bundle run`` reports a bad ``--dataset_dir``, a weights file of
    another architecture or an override of the wrong type as ``error: ...`` and exit status 1, not as a traceback
    of MONAI's config machinery.
    """
    sys.excepthook = one_line_excepthook


def error_record(
    item: Mapping[str, Any] | str, exc: BaseException, image_key: str = "image", case_key: str = "case"
) -> dict[str, str]:
    """
    The record of a failed case: ``{"case": ..., "image": <path>, "error": "<path>: <one-line reason>"}``.

    Args:
        item: the datalist entry (``{image_key: path, case_key: name}``) or a bare path.
        exc: what was raised.
        image_key: key of the input path in ``item``. Default ``"image"``.
        case_key: key of the case name in ``item``; when absent the name is the file name without extensions.

    """
    data = {image_key: item} if isinstance(item, str) else dict(item)
    path = str(data.get(image_key, ""))
    case = data.get(case_key) or Path(path).name.split(".")[0] or path
    return {"case": str(case), "image": path, "error": f"{path}: {describe_exception(exc)}"}
