"""PSNR / SSIM against naive numpy answers (per-window loops) and closed forms."""

import math

import numpy as np
import pytest
import torch

from facet3d.core.ops.image_metrics import psnr, ssim


def _naive_ssim(x: np.ndarray, y: np.ndarray, valid: bool) -> float:
    """Direct per-pixel weighted statistics over an 11x11 Gaussian window (sigma 1.5)."""
    r = np.arange(11) - 5.0
    g = np.exp(-r ** 2 / 4.5)
    w2 = np.outer(g, g) / np.outer(g, g).sum()
    H, W, C = x.shape
    vals = []
    rows = range(5, H - 5) if valid else range(H)
    cols = range(5, W - 5) if valid else range(W)
    xp = np.pad(x, ((5, 5), (5, 5), (0, 0)))
    yp = np.pad(y, ((5, 5), (5, 5), (0, 0)))
    for c in range(C):
        for i in rows:
            for j in cols:
                a = xp[i:i + 11, j:j + 11, c]
                b = yp[i:i + 11, j:j + 11, c]
                mx, my = (w2 * a).sum(), (w2 * b).sum()
                vx = (w2 * a * a).sum() - mx ** 2
                vy = (w2 * b * b).sum() - my ** 2
                cxy = (w2 * a * b).sum() - mx * my
                c1, c2 = 1e-4, 9e-4
                vals.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


@pytest.mark.parametrize("valid", [False, True])
def test_ssim_matches_naive_window_loop(valid):
    rng = np.random.default_rng(0)
    x = rng.random((19, 23, 2))
    y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1)
    got = float(ssim(torch.tensor(x), torch.tensor(y), valid=valid))
    assert got == pytest.approx(_naive_ssim(x, y, valid), abs=1e-10)


@pytest.mark.slow
def test_ssim_identity_and_gradient():
    x = torch.rand(2, 16, 16, 3, dtype=torch.float64, requires_grad=True)
    assert float(ssim(x, x.detach())) == pytest.approx(1.0, abs=1e-12)
    y = torch.rand(2, 16, 16, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: ssim(a, y), (x,), eps=1e-6, atol=1e-6)


def test_psnr_closed_form_and_mask():
    a = torch.zeros(4, 4, 3)
    b = torch.full((4, 4, 3), 0.1)
    assert float(psnr(a, b)) == pytest.approx(20.0, abs=1e-4)  # mse 0.01 -> 20 dB
    mask = torch.zeros(4, 4, 1)
    mask[:2] = 1
    b2 = b.clone()
    b2[2:] = 1.0  # errors outside the mask are ignored
    assert float(psnr(a, b2, mask)) == pytest.approx(20.0, abs=1e-4)
    assert math.isinf(float(psnr(a, a)))
