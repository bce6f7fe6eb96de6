"""A MONAI Dataset that turns a case that fails to load or transform into an error record
(:py:func:`bundle.io.errors.error_record`), so one bad case never stops a batch run."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from monai.data import Dataset

from bundle.io.errors import error_record

__all__ = ["SafeDataset"]

logger = logging.getLogger(__name__)


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
