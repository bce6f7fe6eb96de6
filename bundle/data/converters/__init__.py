"""Converters for real data sets into the bundle's decathlon-style datalist: LIDC-IDRI (DICOM + readers' XML),
ISLES'22 (BIDS NIfTI) and any MSD-style ``dataset.json``. See ``docs/converters.md``."""

from __future__ import annotations

from bundle.data.converters.decathlon import (
    SIZE_BANDS_MM,
    ConversionError,
    ConversionReport,
    check_geometry,
    convert_decathlon,
    lesion_records_from_mask,
    patient_band,
    size_band,
    stratified_split,
)
from bundle.data.converters.isles import convert_isles, find_isles_cases
from bundle.data.converters.lidc import convert_lidc, find_lidc_cases, read_lidc_xml

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
