"""A MONAI Dataset that turns a case that fails to load or transform into an error record, so one bad case never
stops a batch run; and the one-line error reporting that the command lines use (:func:`describe_exception`,
:func:`install_excepthook`)."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from monai.data import Dataset

__all__ = ["SafeDataset", "describe_exception", "error_record", "one_line_excepthook", "install_excepthook"]

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


class SafeDataset(Dataset):
    """
    :py:class:`monai.data.Dataset` whose items never raise: if loading or transforming case ``index`` raises,
    the item is the error record ``{"case": ..., "image": <path>, "error": "<path>: <one-line reason>"}`` (see
    :py:func:`error_record`) and the traceback is logged at DEBUG. Out-of-range indices still raise
    ``IndexError``, so iteration ends normally.

    With a ``DataLoader`` use ``batch_size=1`` (error records and loaded cases do not collate together).

    Args:
        data: the datalist, e.g. ``[{"image": path, "case": name}, ...]``.
        transform: a callable, sequence of callables or None, as in :py:class:`monai.data.Dataset`.
        image_key: key of the input path in each entry. Default ``"image"``.
        case_key: key of the case name in each entry. Default ``"case"``.

    """

    def __init__(
        self,
        data: Sequence,
        transform: Sequence[Callable] | Callable | None = None,
        image_key: str = "image",
        case_key: str = "case",
    ) -> None:
        super().__init__(data=data, transform=transform)
        self.image_key = image_key
        self.case_key = case_key

    def _transform(self, index: int) -> Any:
        data_i = self.data[index]  # outside the try: IndexError must still end iteration
        try:
            return self.transform(data_i)
        except Exception as exc:  # one bad case must never stop the run
            record = error_record(data_i, exc, self.image_key, self.case_key)
            logger.debug("case %s failed to load", record["case"], exc_info=exc)
            return record
