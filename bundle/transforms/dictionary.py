"""Dictionary wrappers (``...d``) of the array transforms in :mod:`bundle.transforms.array`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform

from bundle.transforms.array import BorderGaussianSmooth, ReplaceNonFinite, WindowIntensity

__all__ = [
    "ReplaceNonFinited",
    "ReplaceNonFiniteD",
    "ReplaceNonFiniteDict",
    "BorderGaussianSmoothd",
    "BorderGaussianSmoothD",
    "BorderGaussianSmoothDict",
    "WindowIntensityd",
    "WindowIntensityD",
    "WindowIntensityDict",
]


class ReplaceNonFinited(MapTransform):
    """
    Dictionary-based wrapper of :py:class:`bundle.transforms.ReplaceNonFinite`.

    Args:
        keys: keys of the images to clean. See also: ``monai.transforms.MapTransform``.
        value: the replacement; None uses the minimum of the finite voxels. Defaults to None.
        channel_wise: with ``value=None``, take the minimum of each channel separately. Defaults to False.
        allow_missing_keys: don't raise an exception if a key is missing. Defaults to False.

    Raises:
        ValueError: when ``value`` is not a finite number.
    """

    backend = ReplaceNonFinite.backend

    def __init__(
        self,
        keys: KeysCollection,
        value: float | None = None,
        channel_wise: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.replacer = ReplaceNonFinite(value=value, channel_wise=channel_wise)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.replacer(d[key])
        return d


ReplaceNonFiniteD = ReplaceNonFiniteDict = ReplaceNonFinited


class BorderGaussianSmoothd(MapTransform):
    """
    Dictionary-based wrapper of :py:class:`bundle.transforms.BorderGaussianSmooth`.

    Args:
        keys: keys of the images to smooth. See also: ``monai.transforms.MapTransform``.
        sigma: standard deviation in voxels, one or one per spatial axis. Defaults to 1.0.
        truncated: the kernel radius in standard deviations. Defaults to 4.0.
        padding_mode: ``scipy.ndimage`` boundary mode. Defaults to ``"nearest"``.
        num_threads: slabs filtered side by side; None uses ``torch.get_num_threads()``. Defaults to None.
        allow_missing_keys: don't raise an exception if a key is missing. Defaults to False.

    Raises:
        ValueError: see :py:class:`bundle.transforms.BorderGaussianSmooth`.
    """

    backend = BorderGaussianSmooth.backend

    def __init__(
        self,
        keys: KeysCollection,
        sigma: Sequence[float] | float = 1.0,
        truncated: float = 4.0,
        padding_mode: str = "nearest",
        num_threads: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.smoother = BorderGaussianSmooth(
            sigma=sigma, truncated=truncated, padding_mode=padding_mode, num_threads=num_threads
        )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.smoother(d[key])
        return d


BorderGaussianSmoothD = BorderGaussianSmoothDict = BorderGaussianSmoothd


class WindowIntensityd(MapTransform):
    """
    Dictionary-based wrapper of :py:class:`bundle.transforms.WindowIntensity`.

    Args:
        keys: keys of the images to window. See also: ``monai.transforms.MapTransform``.
        a_min: intensity mapped to 0.
        a_max: intensity mapped to 1.
        allow_missing_keys: don't raise an exception if a key is missing. Defaults to False.

    Raises:
        ValueError: see :py:class:`bundle.transforms.WindowIntensity`.
    """

    backend = WindowIntensity.backend

    def __init__(self, keys: KeysCollection, a_min: float, a_max: float, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.window = WindowIntensity(a_min=a_min, a_max=a_max)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.window(d[key])
        return d


WindowIntensityD = WindowIntensityDict = WindowIntensityd
