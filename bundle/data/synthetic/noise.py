"""Scanner noise of a host and mild per-case texture variation: estimate a scan's noise (std and in-plane
correlation), draw correlated noise like it, and vary a composed case so a network does not learn one scanner.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["estimate_noise", "correlated_noise", "vary_host"]


def estimate_noise(volume: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Noise std and in-plane correlation length of a scan, from differences inside a homogeneous region.

    Half the variance of ``x[i + 6] - x[i]`` (lag beyond the noise correlation) gives the noise variance;
    the lag-1 differences give the neighbour correlation ``rho``, turned into the sigma (voxels) of a Gaussian
    kernel that reproduces it (``rho = exp(-1 / (4 sigma^2))``). Edges are trimmed (5 robust stds).

    Args:
        volume: array (H, W, D).
        mask: bool (H, W, D), a homogeneous region (muscle/fat in CT, white matter in MR).

    Returns:
        ``(std, sigma_vox)``; ``(0.0, 0.0)`` when the mask has too few voxels.
    """

    def _robust_var(lag: int) -> float:
        vals = []
        for axis in (0, 1):
            a = np.moveaxis(volume, axis, 0)
            m = np.moveaxis(mask, axis, 0)
            both = m[lag:] & m[:-lag]
            vals.append((a[lag:] - a[:-lag])[both])
        d = np.concatenate(vals).astype(np.float64)
        if d.size < 100:
            return 0.0
        med = np.median(d)
        mad = 1.4826 * np.median(np.abs(d - med)) + 1e-6
        d = d[np.abs(d - med) < 5 * mad]
        return float(d.var())

    var_far, var_1 = _robust_var(6), _robust_var(1)
    if var_far <= 0:
        return 0.0, 0.0
    rho = 1.0 - var_1 / var_far
    sigma = float(np.sqrt(-1.0 / (4.0 * np.log(rho)))) if 0.02 < rho < 0.98 else (0.0 if rho <= 0.02 else 3.0)
    return float(np.sqrt(var_far / 2.0)), sigma


def correlated_noise(
    shape: tuple[int, ...], std: float, sigma_vox: float, rng: np.random.Generator
) -> np.ndarray:
    """Gaussian noise with in-plane Gaussian correlation (slices independent, as for thick-slice CT).

    Args:
        shape: output shape (H, W, D).
        std: target standard deviation.
        sigma_vox: in-plane correlation kernel sigma in voxels (0: white noise).
        rng: numpy Generator.

    Returns:
        float32 array of ``shape``.
    """
    noise = rng.standard_normal(shape, dtype=np.float32)
    if sigma_vox > 0.05:
        noise = ndimage.gaussian_filter(noise, sigma=(sigma_vox, sigma_vox, 0.0))
        # the exact std of white noise smoothed by a 2-D Gaussian kernel: 1 / (2 sqrt(pi) sigma)
        noise *= np.float32(2.0 * np.sqrt(np.pi) * sigma_vox)
    return noise * np.float32(std)


def vary_host(
    volume: np.ndarray, modality: str, rng: np.random.Generator, ct_noise_std: tuple[float, float] = (5.0, 25.0)
) -> tuple[np.ndarray, dict]:
    """Mild per-case variation of a host's texture so a network does not learn one scanner.

    CT: with p=0.5 an in-plane Gaussian blur (sigma 0.3-1.0 voxel, a softer kernel), with p=0.5 extra noise
    (std in ``ct_noise_std``, correlation 0-1 voxel) where the input is above -1000 HU (clipped outside air stays
    clean).
    MR: intensity scale 0.8-1.25, a smooth multiplicative bias field
    (up to +-15 %), with p=0.3 a blur, and Rician noise (1-4 % of the 99th percentile).

    Args:
        volume: array (H, W, D), the composed case (host + lesions).
        modality: ``"CT"`` or ``"MR"``.
        rng: numpy Generator.
        ct_noise_std: (min, max) std of the extra CT noise in HU. Defaults to (5, 25), for chest CT; head CT
            protocols are far less noisy (use about (1, 5)).

    Returns:
        ``(varied float32 volume, dict of the parameters drawn)``.

    Raises:
        ValueError: when ``modality`` is neither CT nor MR.
    """
    out = np.asarray(volume, dtype=np.float32).copy()
    params: dict = {}
    if modality == "CT":
        if rng.random() < 0.5:
            s = float(rng.uniform(0.3, 1.0))
            out = ndimage.gaussian_filter(out, sigma=(s, s, 0.0))
            params["blur_sigma_vox"] = round(s, 3)
        if rng.random() < 0.5:
            std, corr = float(rng.uniform(*ct_noise_std)), float(rng.uniform(0.0, 1.0))
            # not in the air the scanner clipped to -1024 HU: it holds no noise in the host either
            inside = np.asarray(volume) > -1000.0
            out += correlated_noise(out.shape, std, corr, rng) * inside
            params["noise_std"], params["noise_sigma_vox"] = round(std, 2), round(corr, 3)
        np.clip(out, -1024.0, 3071.0, out=out)
        return out, params
    if modality == "MR":
        scale = float(rng.uniform(0.8, 1.25))
        amp = float(rng.uniform(0.0, 0.15))
        # separable smooth bias: exp(amp * (gx(x) + gy(y) + gz(z)) / 3), each g a random low-frequency cosine mix
        gains = []
        for n in out.shape:
            t = np.linspace(0.0, np.pi, n)
            g = sum(rng.uniform(-1, 1) * np.cos(f * t + rng.uniform(0, 2 * np.pi)) for f in (0.5, 1.0, 1.5))
            gains.append(np.exp(amp * g / max(np.abs(g).max(), 1e-6) / 3.0).astype(np.float32))
        out *= np.float32(scale) * gains[0][:, None, None] * gains[1][None, :, None] * gains[2][None, None, :]
        params.update(scale=round(scale, 3), bias_amplitude=round(amp, 3))
        if rng.random() < 0.3:
            s = float(rng.uniform(0.3, 0.7))
            out = ndimage.gaussian_filter(out, sigma=s)
            params["blur_sigma_vox"] = round(s, 3)
        level = float(rng.uniform(0.01, 0.04)) * float(np.percentile(out, 99))
        n1 = rng.standard_normal(out.shape, dtype=np.float32) * np.float32(level)
        n2 = rng.standard_normal(out.shape, dtype=np.float32) * np.float32(level)
        out = np.sqrt((out + n1) ** 2 + n2**2)  # Rician magnitude noise
        params["rician_std"] = round(level, 3)
        return out.astype(np.float32), params
    raise ValueError(f"modality must be 'CT' or 'MR', got {modality!r}.")
