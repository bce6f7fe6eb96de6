"""Screenshot of the OHIF viewer (served by MONAI Label) showing a study's lesion SEG on one slice.

Usage (from the bundle root; MONAI Label running with a DICOMweb ``--studies`` server that holds the study and the SEG
that ``python -m scripts.pacs`` stored)::

    python -m scripts.ohif_screenshot --server http://127.0.0.1:8199 --study_uid <StudyInstanceUID> --slice_number 46 \
        --output docs/figures/ohif_seg.png

Prints the share of pixels in the segment colour. Needs ``pip install playwright==1.65.3`` and Debian ``chromium``.
See :py:mod:`bundle.export.ohif`.
"""

from __future__ import annotations

import json
from pathlib import Path

import fire

from bundle.export.ohif import FIRST_SEGMENT_COLOUR, colour_fraction, screenshot_segmentation
from bundle.io.errors import install_excepthook


def main(server: str, study_uid: str, slice_number: int, output: str = "runs/ohif/ohif_seg.png",
         segment: str = "lesion 1", colour: tuple = FIRST_SEGMENT_COLOUR) -> None:  # fmt: skip
    """
    Args:
        server: MONAI Label's address.
        study_uid: the study.
        slice_number: the viewer's image number to show.
        output: the PNG. Defaults to runs/ohif/ohif_seg.png.
        segment: the segment selected. Defaults to "lesion 1".
        colour: the segment's display colour in OHIF. Defaults to (221, 84, 84), its first segment's.
    """
    install_excepthook()
    path = screenshot_segmentation(server, str(study_uid), int(slice_number), output, segment)
    print(json.dumps({"png": str(path), "segment_colour_fraction": colour_fraction(Path(path).read_bytes(), colour, 90)}))


if __name__ == "__main__":
    fire.Fire(main)
