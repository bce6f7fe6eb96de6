"""Converters for real data sets into the bundle's decathlon-style datalist: LIDC-IDRI (DICOM + readers' XML),
ISLES'22 (BIDS NIfTI) and any MSD-style ``dataset.json``. See ``docs/converters.md``.

- ``common``: what every converter shares (:py:class:`ConversionError`, :py:class:`ConversionReport`, NIfTI
  reading and grid checks, lesion records from a mask, size bands, case-by-case conversion);
- ``split``: the patient-level split stratified by size band and the datalist it writes;
- ``decathlon``: MSD ``dataset.json``; ``isles``: ISLES'22;
- ``lidc_xml``: the LIDC readers' XML; ``lidc_consensus``: rasterised nodules -> consensus lesions;
  ``lidc``: LIDC-IDRI series folders -> NIfTI images, consensus labels and the datalist.
"""

from __future__ import annotations

from bundle.data.converters.common import (
    SIZE_BANDS_MM,
    ConversionError,
    ConversionReport,
    check_geometry,
    lesion_records_from_mask,
    size_band,
)
from bundle.data.converters.decathlon import convert_decathlon
from bundle.data.converters.isles import convert_isles, find_isles_cases
from bundle.data.converters.lidc import convert_lidc, find_lidc_cases
from bundle.data.converters.lidc_xml import read_lidc_xml
from bundle.data.converters.split import patient_band, stratified_split

__all__ = [
    "SIZE_BANDS_MM",
    "ConversionError",
    "ConversionReport",
    "check_geometry",
    "convert_decathlon",
    "convert_isles",
    "convert_lidc",
    "find_isles_cases",
    "find_lidc_cases",
    "lesion_records_from_mask",
    "patient_band",
    "read_lidc_xml",
    "size_band",
    "stratified_split",
]
