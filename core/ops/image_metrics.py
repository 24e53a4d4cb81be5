"""Image quality metrics used by fitting: PSNR and SSIM (differentiable, torch).

SSIM follows Wang et al. 2004 as 3DGS/nerfstudio compute it: an 11x11 Gaussian window with
sigma 1.5, C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = 1, zero padding ("same" size, as 3DGS's
training loss) or "valid" windows only (as skimage / most evaluation scripts; ``valid=True``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["psnr", "ssim", "gaussian_window"]

def psnr(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Peak signal-to-noise ratio in dB for images in [0, 1].

    pred, target: Tensor  # [..., H, W, C] (any layout; compared elementwise)
    mask: Tensor          # optional, broadcastable to pred; the mean runs over mask > 0 only
    returns a 0-d tensor (inf for identical images)
    """
    err = (pred - target) ** 2
    if mask is not None:
        m = mask.expand_as(err).to(err.dtype)
        mse = (err * m).sum() / m.sum().clamp_min(1)
    else:
        mse = err.mean()
    return -10.0 * torch.log10(mse)

def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float32, device=None) -> Tensor:
    """Normalised 1-D Gaussian ``[size]``."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return (g / g.sum()).to(dtype=dtype, device=device)

def _blur(x: Tensor, g: Tensor, pad: int) -> Tensor:
    """Separable Gaussian blur of ``x [B, C, H, W]`` (depthwise)."""
    C = x.shape[1]
    k = g.numel()
    x = F.conv2d(x, g.view(1, 1, 1, k).expand(C, 1, 1, k), padding=(0, pad), groups=C)
    return F.conv2d(x, g.view(1, 1, k, 1).expand(C, 1, k, 1), padding=(pad, 0), groups=C)

def ssim(pred: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5, valid: bool = False,
         reduction: str = "mean") -> Tensor:
    """Structural similarity of images in [0, 1], differentiable.

    pred, target: Tensor  # [H, W, C] or [B, H, W, C] (channels last, as renders are)
    valid: bool           # True: only windows fully inside the image; False: zero padding (3DGS loss)
    reduction: "mean" -> 0-d tensor, "none" -> the SSIM map [B, C, H', W']
    """
    if pred.shape != target.shape:
        raise ValueError(f"ssim: shapes differ {tuple(pred.shape)} vs {tuple(target.shape)}")
    x = pred if pred.ndim == 4 else pred[None]
    y = target if target.ndim == 4 else target[None]
    x, y = x.permute(0, 3, 1, 2), y.permute(0, 3, 1, 2)
    g = gaussian_window(window, sigma, x.dtype, x.device)
    pad = 0 if valid else window // 2
    mu_x, mu_y = _blur(x, g, pad), _blur(y, g, pad)
    sxx = _blur(x * x, g, pad) - mu_x ** 2
    syy = _blur(y * y, g, pad) - mu_y ** 2
    sxy = _blur(x * y, g, pad) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    m = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return m.mean() if reduction == "mean" else m

