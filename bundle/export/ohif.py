"""The bundle's DICOM-SEG seen in a real viewer: the OHIF viewer that MONAI Label 0.8.5 serves, in headless Chromium.

MONAI Label serves a built OHIF v3 at ``<server>/ohif/`` whose DICOMweb data source is MONAI Label's proxy to its
``--studies`` server (e.g. Orthanc). :func:`open_study` opens a study there (Playwright driving Debian's ``chromium``,
WebGL through SwiftShader) and yields an :class:`OhifViewer` that loads the SEG series into the viewport
(double-click on its thumbnail, then the viewer's "Yes"), steps to an image (arrow keys, checked against the
viewport's ``I:n (n/N)`` overlay; OHIF numbers a stack's images in InstanceNumber order) and takes screenshots of the
viewport. :func:`colour_mask` and :func:`displayed_image_box` measure the segment colour in a screenshot and where
the image lies in it; ``tests/export/test_monailabel.py`` checks with them that the lesion is drawn on the right
images at the right place.

Needs ``pip install playwright==1.65.3`` (no browser download: it drives ``/usr/bin/chromium``) and Debian
``chromium``; see docs/ecosystem.md.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OhifViewer", "open_study", "screenshot_segmentation", "colour_mask", "colour_fraction",
           "displayed_image_box", "FIRST_SEGMENT_COLOUR"]  # fmt: skip

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ("--no-sandbox", "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader")
FIRST_SEGMENT_COLOUR = (221, 84, 84)  # OHIF v3's display colour of a SEG's first segment (seen in its screenshots)
_IMAGE_OVERLAY = re.compile(r"I:\s*(\d+)\s*\((\d+)/(\d+)\)")


def _rgb(png: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int32)


def colour_mask(png: bytes, rgb: Sequence[int], tolerance: int = 60) -> np.ndarray:
    """Boolean (rows, columns) mask of a PNG's pixels within ``tolerance`` (sum of absolute channel differences) of
    ``rgb``."""
    return np.abs(_rgb(png) - np.asarray(rgb, dtype=np.int32)).sum(-1) <= tolerance


def colour_fraction(png: bytes, rgb: Sequence[int], tolerance: int = 60) -> float:
    """The share of a PNG's pixels within ``tolerance`` of ``rgb`` (see :func:`colour_mask`)."""
    return float(colour_mask(png, rgb, tolerance).mean())


def displayed_image_box(png: bytes, dark: int = 8, share: float = 0.5) -> tuple[int, int, int, int]:
    """
    ``(top, bottom, left, right)`` pixel bounds (end exclusive) of the image a viewport screenshot shows on its black
    background: the rows and columns more than ``share`` of whose pixels are brighter than ``dark`` (overlay text
    covers too few pixels of a row or column to count).

    Raises:
        ValueError: when no row or column qualifies (a black screenshot).
    """
    bright = _rgb(png).max(-1) > dark
    rows, cols = np.flatnonzero(bright.mean(1) > share), np.flatnonzero(bright.mean(0) > share)
    if rows.size == 0 or cols.size == 0:
        raise ValueError("the screenshot shows no image (every row and column is mostly dark)")
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


class OhifViewer:
    """One study open in OHIF's viewer (a Playwright ``Page``); made by :func:`open_study`."""

    def __init__(self, page: Any, timeout_s: float) -> None:
        self.page, self.timeout_s = page, timeout_s

    def viewport_box(self) -> dict[str, float]:
        """The viewport canvas's ``{"x", "y", "width", "height"}`` on the page."""
        return self.page.locator("canvas").first.bounding_box()

    def load_segmentation(self, series: str = "SEG") -> None:
        """Load the study's SEG series into the viewport: double-click its thumbnail, answer the viewer's "Yes"."""
        self.page.get_by_text(series, exact=True).first.dblclick()
        self.page.get_by_role("button", name="Yes").first.click(timeout=self.timeout_s * 1000)
        time.sleep(3)  # the labelmap is built after the answer; nothing on the page says when it is drawn

    def select_segment(self, segment: str) -> None:
        """Select a segment by name in the segmentation panel (opening the panel when it is collapsed)."""
        target = self.page.get_by_text(segment, exact=True).first
        try:
            target.click(timeout=5000)
        except Exception:  # the panel is collapsed: its toggle is the top right corner's button
            self.page.mouse.click(1386, 64)
            time.sleep(3)
            target.click(timeout=10000)

    def image_number(self) -> tuple[int, int]:
        """``(n, N)`` of the viewport's ``I:n (n/N)`` overlay."""
        found = _IMAGE_OVERLAY.search(self.page.inner_text("body"))
        if found is None:
            raise RuntimeError("OHIF's viewport shows no image number overlay (I:n (n/N))")
        return int(found.group(2)), int(found.group(3))

    def go_to_image(self, number: int, settle_s: float = 1.0) -> None:
        """Step the viewport to image ``number`` (1 = the first) with the arrow keys; waits until the overlay says
        so, then ``settle_s`` for the drawing."""
        box = self.viewport_box()
        self.page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # keyboard focus
        current, total = self.image_number()
        if not 1 <= number <= total:
            raise ValueError(f"image {number} is outside the series' 1..{total}")
        for _ in range(abs(number - current)):
            self.page.keyboard.press("ArrowDown" if number > current else "ArrowUp")
        deadline = time.monotonic() + self.timeout_s
        while self.image_number()[0] != number:
            if time.monotonic() > deadline:
                raise RuntimeError(f"OHIF did not reach image {number} (it shows {self.image_number()[0]})")
            time.sleep(0.1)
        time.sleep(settle_s)

    def screenshot(self, path: str | Path | None = None, viewport_only: bool = True) -> bytes:
        """PNG bytes of the viewport (or the whole page); also written to ``path`` when given."""
        clip = self.viewport_box() if viewport_only else None
        return self.page.screenshot(path=None if path is None else str(path), clip=clip)


@contextmanager
def open_study(
    server: str, study_uid: str, chromium: str = CHROMIUM, timeout_s: float = 120.0, size: tuple[int, int] = (1400, 900)
) -> Iterator[OhifViewer]:
    """
    Open a study in OHIF (served by MONAI Label at ``server``) in headless Chromium; the browser is closed on exit.

    Args:
        server: MONAI Label's address, e.g. ``http://127.0.0.1:8000``.
        study_uid: the StudyInstanceUID (its SEG series must be on MONAI Label's DICOMweb server).
        chromium: the browser executable. Defaults to Debian's.
        timeout_s: how long to wait for the study to appear, and for each step after. Defaults to 120 s.
        size: the browser window (width, height). Defaults to 1400 x 900.

    Raises:
        RuntimeError: when Playwright is not installed or the viewer never lists a SEG series of the study.
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise RuntimeError("the OHIF viewer check needs Playwright: pip install playwright==1.65.3") from e
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page(viewport={"width": size[0], "height": size[1]})
            page.goto(f"{server.rstrip('/')}/ohif/viewer?StudyInstanceUIDs={study_uid}")
            try:
                page.wait_for_selector("text=SEG", timeout=timeout_s * 1000)
            except Exception as e:
                raise RuntimeError(f"OHIF at {server} never listed a SEG series of study {study_uid}") from e
            hide = page.get_by_role("button", name="Confirm and Hide")  # the "investigational use only" banner
            if hide.count():
                hide.first.click()
            yield OhifViewer(page, timeout_s)
        finally:
            browser.close()


def screenshot_segmentation(
    server: str,
    study_uid: str,
    image_number: int,
    output: str | Path,
    segment: str = "lesion 1",
    chromium: str = CHROMIUM,
    timeout_s: float = 120.0,
) -> Path:
    """
    Screenshot (whole page) of OHIF showing a study's SEG on one image, with ``segment`` selected in its panel.

    Args:
        server: MONAI Label's address.
        study_uid: the StudyInstanceUID.
        image_number: the viewer's image number to show (1 = the first image OHIF shows).
        output: the PNG to write.
        segment: the segment to select in the segmentation panel. Defaults to ``"lesion 1"``.
        chromium: the browser executable. Defaults to Debian's.
        timeout_s: see :func:`open_study`.

    Returns:
        the PNG's path.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open_study(server, study_uid, chromium, timeout_s) as viewer:
        viewer.load_segmentation()
        viewer.select_segment(segment)
        viewer.go_to_image(image_number, settle_s=5.0)
        viewer.screenshot(output, viewport_only=False)
    return output
