"""Shared tiny models and images for the FastVGGT tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FOUNTAIN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "multiview" / "strecha_fountain-P11" / "images"
REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip("../shared/reference is not present")
    return REFERENCE


@pytest.fixture(scope="session")
def fountain() -> list[Path]:
    files = [FOUNTAIN / f"{n}.jpg" for n in ("0001", "0004", "0008")]
    if not all(f.is_file() for f in files):
        pytest.skip("../shared/data fountain-P11 images are not present")
    return files


@pytest.fixture(scope="session")
def tiny_model():
    import torch

    from facet3d.plugins.fastvggt.model import build_model

    torch.manual_seed(0)
    return build_model("tiny")


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, tiny_model):
    from facet3d.plugins.fastvggt.checkpoint import save_model

    return save_model(tiny_model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """Three small RGB photos (140x98) and one RGBA, one of another size, one unreadable."""
    from PIL import Image

    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (98, 140, 3), dtype=np.uint8)).save(d / f"im{i}.png")
    odd = tmp_path_factory.mktemp("odd")
    Image.fromarray(rng.integers(0, 255, (140, 98, 3), dtype=np.uint8)).save(odd / "tall.png")
    (odd / "broken.jpg").write_bytes(b"not an image at all")
    return d, odd
