"""Array transforms that MONAI lacks or that MONAI's version does not suit (channel-first in, tensors out).

Everything else the preprocessing needs is MONAI's own (``ScaleIntensityRange`` for the min-max and MRI
scalings, ``ClipIntensityPercentiles``,
``ScaleIntensity``, ``Spacing``, ...): see :mod:`bundle.transforms.presets`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import Transform
from monai.utils import TransformBackends, convert_data_type, convert_to_dst_type, convert_to_tensor, look_up_option
from scipy import ndimage

__all__ = ["ReplaceNonFinite", "BorderGaussianSmooth", "WindowIntensity"]

_SCIPY_PADDING_MODES = ("nearest", "reflect", "mirror", "constant", "wrap")


class ReplaceNonFinite(Transform):
    """
    Replace NaN, +Inf and -Inf voxels by a finite value.

    Run it first, before any resampling or smoothing spreads a non-finite voxel over its neighbours. Integer
    images cannot hold non-finite values and are returned unchanged.

    Args:
        value: the replacement. Defaults to None: the minimum of the finite voxels (of the channel with
            ``channel_wise=True``), 0.0 where no voxel is finite. For CT pass the window minimum (e.g. -1000 HU).
        channel_wise: with ``value=None``, take the minimum of each channel (axis 0) separately. Defaults to False.

    Raises:
        ValueError: when ``value`` is not a finite number.

    Example::

        ReplaceNonFinite(value=-1000.0)(torch.tensor([[float("nan"), 3.0, float("inf")]]))  # [[-1000., 3., -1000.]]
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, value: float | None = None, channel_wise: bool = False) -> None:
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
            raise ValueError(f"value must be a finite number or None, got value={value!r}.")
        self.value = value
        self.channel_wise = channel_wise

    def _fill_value(self, img_t: torch.Tensor, finite: torch.Tensor) -> torch.Tensor:
        """The replacement for ``img_t``: a scalar tensor, or ``(C, 1, ..., 1)`` with ``channel_wise``."""
        if self.value is not None:
            return torch.as_tensor(self.value, dtype=img_t.dtype, device=img_t.device)
        masked = torch.where(finite, img_t, torch.full_like(img_t, torch.inf))
        if self.channel_wise and img_t.ndim > 1:
            fill = masked.reshape(img_t.shape[0], -1).amin(dim=1)  # (C,)
            fill = fill.reshape((-1,) + (1,) * (img_t.ndim - 1))  # (C, 1, ..., 1)
        else:
            fill = masked.amin()
        return torch.where(torch.isfinite(fill), fill, torch.zeros_like(fill))

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """
        Args:
            img: channel-first image, shape ``(C, spatial_1[, spatial_2, ...])``.

        Returns:
            the image with every non-finite voxel replaced, same shape and dtype (a tensor, MetaTensor kept).
        """
        img = convert_to_tensor(img, track_meta=get_track_meta())
        img_t = convert_to_tensor(img, track_meta=False)
        if not (torch.is_floating_point(img_t) or torch.is_complex(img_t)):
            return img
        # a finite sum means every voxel is finite (a NaN or Inf voxel makes the sum NaN or Inf; only an overflow of
        # huge finite values makes it Inf without one, and then the full check below runs); it needs no image-sized
        # temporary, where ``isfinite`` of a 600-slice CT allocates about 1 GB
        if bool(torch.isfinite(img_t.sum())):
            return img
        finite = torch.isfinite(img_t)
        if bool(finite.all()):
            return img
        out = torch.where(finite, img_t, self._fill_value(img_t, finite).to(img_t.dtype))
        return convert_to_dst_type(out, dst=img)[0]


class BorderGaussianSmooth(Transform):
    """
    Gaussian smoothing of each channel that repeats the border voxels instead of padding with zeros.

    Same role as MONAI's ``GaussianSmooth``, which we do not use on CT volumes for two reasons: it pads with
    zeros, so on HU values the first and last slices through the lungs are blended with 0 HU (water) and look like
    ground glass, and its grouped ``conv3d`` is slow on CPU (a (1, 539, 539, 127) volume took 25 s with MONAI's,
    1.3 s with this one, 2 threads). The kernel is the sampled, normalised Gaussian of ``scipy.ndimage``.

    Args:
        sigma: standard deviation in voxels, one for all spatial axes or one per axis; 0 leaves an axis alone.
            Defaults to 1.0.
        truncated: the kernel radius in standard deviations. Defaults to 4.0.
        padding_mode: ``scipy.ndimage`` boundary mode: ``"nearest"`` (repeat the border voxel), ``"reflect"``,
            ``"mirror"``, ``"constant"`` (zeros) or ``"wrap"``. Defaults to ``"nearest"``.
        num_threads: threads that filter slabs of the longest spatial axis side by side (scipy releases the GIL in
            its 1-D correlations); each slab carries a halo of the kernel radius, so the result is the one-call
            result exactly. None uses ``torch.get_num_threads()``, like the network. Defaults to None.

    Raises:
        ValueError: when a sigma is negative or not finite, ``truncated <= 0``, ``padding_mode`` is unknown,
            ``num_threads < 1``, or (at call time) the number of sigmas does not match the spatial dimensions.
    """

    backend = [TransformBackends.NUMPY]

    def __init__(
        self,
        sigma: Sequence[float] | float = 1.0,
        truncated: float = 4.0,
        padding_mode: str = "nearest",
        num_threads: int | None = None,
    ) -> None:
        sigmas = tuple(float(s) for s in (sigma if isinstance(sigma, Sequence) else (sigma,)))
        if not sigmas or not all(math.isfinite(s) and s >= 0 for s in sigmas):
            raise ValueError(f"sigma must be finite numbers >= 0, got sigma={sigma!r}.")
        if not (math.isfinite(truncated) and truncated > 0):
            raise ValueError(f"truncated must be a finite number > 0, got truncated={truncated!r}.")
        self.sigma = sigmas
        self.truncated = float(truncated)
        self.padding_mode = look_up_option(padding_mode, _SCIPY_PADDING_MODES)
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got num_threads={num_threads!r}.")
        self.num_threads = num_threads

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """
        Args:
            img: channel-first image, shape ``(C, spatial_1[, spatial_2, ...])``.

        Returns:
            the smoothed image, same shape, float32 unless the input is float64 (a tensor, MetaTensor kept).
        """
        img = convert_to_tensor(img, track_meta=get_track_meta())
        spatial_dims = img.ndim - 1
        if len(self.sigma) not in (1, spatial_dims):
            raise ValueError(
                f"sigma must have 1 or {spatial_dims} values for an image with {spatial_dims} spatial dims, "
                f"got sigma={self.sigma!r}."
            )
        sigmas = self.sigma * spatial_dims if len(self.sigma) == 1 else self.sigma
        img_np = convert_data_type(img, np.ndarray)[0]
        if img_np.dtype != np.float64:
            img_np = img_np.astype(np.float32, copy=False)
        threads = self.num_threads if self.num_threads is not None else torch.get_num_threads()
        out = _gaussian_filter_slabs(img_np, (0.0, *sigmas), self.padding_mode, self.truncated, threads)
        return convert_to_dst_type(out, dst=img, dtype=out.dtype)[0]


def _gaussian_filter_slabs(
    x: np.ndarray, sigmas: Sequence[float], mode: str, truncate: float, threads: int, min_voxels: int = 1 << 20
) -> np.ndarray:
    """``ndimage.gaussian_filter(x, sigmas, mode=mode, truncate=truncate)`` computed on ``threads`` slabs of the
    longest axis at once. Each slab is filtered with ``radius`` extra voxels on both sides (scipy's kernel radius
    on that axis, ``int(truncate * sigma + 0.5)``), so every kept voxel sees the neighbours the one-call filter gives
    it and the result is the same to the bit. Small volumes (under ``min_voxels``), one thread, or ``"wrap"`` with a
    kernel along the cut axis (a slab would wrap onto its own far end, not the volume's): a single call."""
    axis = int(np.argmax(x.shape))
    radius = int(truncate * float(sigmas[axis]) + 0.5)
    n = x.shape[axis]
    parts = min(threads, n // max(1, 4 * radius + 1))
    if parts < 2 or x.size < min_voxels or (radius > 0 and "wrap" in mode):
        return ndimage.gaussian_filter(x, sigma=sigmas, mode=mode, truncate=truncate)
    out = np.empty_like(x)
    bounds = np.linspace(0, n, parts + 1).astype(int)

    def slab(start: int, stop: int) -> None:
        lo, hi = max(0, start - radius), min(n, stop + radius)
        index = [slice(None)] * x.ndim
        index[axis] = slice(lo, hi)
        filtered = ndimage.gaussian_filter(x[tuple(index)], sigma=sigmas, mode=mode, truncate=truncate)
        index[axis] = slice(start - lo, stop - lo)
        kept = filtered[tuple(index)]
        index[axis] = slice(start, stop)
        out[tuple(index)] = kept

    with ThreadPoolExecutor(parts) as pool:
        list(pool.map(slab, bounds[:-1], bounds[1:]))  # list() re-raises a slab's exception
    return out


class WindowIntensity(Transform):
    """
    The intensity window ``[a_min, a_max] -> [0, 1]``, clipped: the values of MONAI's
    ``ScaleIntensityRange(a_min, a_max, b_min=0.0, b_max=1.0, clip=True)`` to the bit for float32, float64 and integer
    inputs (tested; half-precision inputs are computed in float32 here, in half precision by MONAI).

    MONAI's version makes a whole-volume temporary for each of its five steps; for a float32 volume (the CT
    preprocessing's) this is one subtraction and two in-place passes (about 0.03 s instead of 0.12 s on the embedded CT
    on 2 threads). Unlike MONAI's, the output keeps the input's type (numpy in, numpy out; a MetaTensor stays one).

    Args:
        a_min: intensity mapped to 0 (e.g. -1000 HU).
        a_max: intensity mapped to 1 (e.g. 400 HU).

    Raises:
        ValueError: when ``a_min >= a_max`` or either is not finite.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, a_min: float, a_max: float) -> None:
        if not (math.isfinite(a_min) and math.isfinite(a_max) and a_min < a_max):
            raise ValueError(f"a_min must be smaller than a_max (both finite), got a_min={a_min!r} a_max={a_max!r}.")
        self.a_min, self.a_max = float(a_min), float(a_max)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """
        Args:
            img: any shape; computed in float64 for a float64 input, else in float32.

        Returns:
            the windowed image in [0, 1], float32 (MONAI's default ``dtype``), of the input's type (a MetaTensor
            keeps its metadata).
        """
        img_t = convert_to_tensor(img, track_meta=False)
        out = torch.sub(img_t.to(torch.float64 if img_t.dtype == torch.float64 else torch.float32), self.a_min)
        out.div_(self.a_max - self.a_min).clamp_(0.0, 1.0)  # divided by the width, as MONAI does
        return convert_to_dst_type(out, dst=img, dtype=torch.float32)[0]
