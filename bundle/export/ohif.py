"""The bundle's DICOM-SEG seen in a real viewer: the OHIF viewer that MONAI Label 0.8.5 serves, in headless Chromium.

MONAI Label serves a built OHIF v3 at ``<server>/ohif/`` whose DICOMweb data source is MONAI Label's proxy to its
``--studies`` server (e.g. Orthanc). :func:`screenshot_segmentation` opens a study there (Playwright driving Debian's
``chromium``, WebGL through SwiftShader), loads the SEG series into the viewport (double-click on its thumbnail, then
the viewer's "Yes"), selects segment ``lesion 1`` in the segmentation panel (opening the collapsed panel), steps to ``slice`` with the arrow key and
saves a PNG. :func:`colour_fraction` measures the segment colour in it.

Needs ``pip install playwright==1.65.3`` (no browser download: it drives ``/usr/bin/chromium``) and Debian
``chromium``; neither is a dependency of the bundle. See docs/ecosystem.md.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["screenshot_segmentation", "colour_fraction"]

CHROMIUM_ARGS = ("--no-sandbox", "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader")


def colour_fraction(png: bytes, rgb: Sequence[int], tolerance: int = 60) -> float:
    """The share of a PNG's pixels within ``tolerance`` (sum of absolute channel differences) of ``rgb``."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.int32)
    return float((np.abs(pixels - np.asarray(rgb, dtype=np.int32)).sum(-1) <= tolerance).mean())


def screenshot_segmentation(
    server: str,
    study_uid: str,
    slice_number: int,
    output: str | Path,
    segment: str = "lesion 1",
    chromium: str = "/usr/bin/chromium",
    timeout_s: float = 120.0,
) -> Path:
    """
    Screenshot of OHIF (served by MONAI Label at ``server``) showing a study's SEG on one slice.

    Args:
        server: MONAI Label's address, e.g. ``http://127.0.0.1:8000``.
        study_uid: the StudyInstanceUID (its SEG series must be on MONAI Label's DICOMweb server).
        slice_number: the viewer's image number to show (1 = the first image OHIF shows).
        output: the PNG to write.
        segment: the segment to select in the segmentation panel. Defaults to ``"lesion 1"``.
        chromium: the browser executable. Defaults to Debian's.
        timeout_s: how long to wait for the study to appear. Defaults to 120 s.

    Returns:
        the PNG's path.

    Raises:
        RuntimeError: when Playwright is not installed or the viewer never lists the SEG series.
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise RuntimeError("screenshot_segmentation needs Playwright: pip install playwright==1.65.3") from e
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{server.rstrip('/')}/ohif/viewer?StudyInstanceUIDs={study_uid}")
            try:
                page.wait_for_selector("text=SEG", timeout=timeout_s * 1000)
            except Exception as e:
                raise RuntimeError(f"OHIF at {server} never listed a SEG series of study {study_uid}") from e
            time.sleep(3)
            page.get_by_text("SEG", exact=True).first.dblclick()
            time.sleep(8)
            page.get_by_role("button", name="Yes").first.click(timeout=10000)  # "open this segmentation?"
            time.sleep(8)
            target = page.get_by_text(segment, exact=True).first
            try:
                target.click(timeout=5000)
            except Exception:  # the segmentation panel is collapsed: its toggle is the top right corner's button
                page.mouse.click(1386, 64)
                time.sleep(3)
                target.click(timeout=10000)
            page.mouse.click(700, 500)  # focus the viewport
            for _ in range(slice_number - 1):
                page.keyboard.press("ArrowDown")
                time.sleep(0.15)
            time.sleep(5)
            page.screenshot(path=str(output))
        finally:
            browser.close()
    return output
