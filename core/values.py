"""Parsing the small values users type (image sizes, axes, devices), for the CLI and pipeline steps alike.

Each raises `UsageError` naming ``what`` (a flag such as ``--size``, or ``render: size``).
"""

from __future__ import annotations

import re

from facet3d.core.errors import UsageError

__all__ = ["parse_size", "parse_axis", "check_device", "auto_device"]

DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def parse_size(text: str, what: str = "--size") -> tuple[int, int]:
    """``"WxH"`` -> ``(H, W)`` (positive integers)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text or ""))
    if not m or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
        raise UsageError(f"{what} {text!r}: expected WIDTHxHEIGHT with positive integers, e.g. 256x256")
    return int(m.group(2)), int(m.group(1))


def parse_axis(text: str, what: str = "--up") -> tuple[float, float, float]:
    """``x|y|z`` with an optional sign -> the unit axis."""
    m = re.fullmatch(r"([+-]?)([xyz])", str(text or "").strip().lower())
    if not m:
        raise UsageError(f"{what} {text!r}: expected x, y or z (optionally with a sign)")
    axis = [0.0, 0.0, 0.0]
    axis["xyz".index(m.group(2))] = -1.0 if m.group(1) == "-" else 1.0
    return axis[0], axis[1], axis[2]


def check_device(device: str, what: str = "device") -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (lower-cased), else a UsageError; imports no torch."""
    text = str(device or "").strip().lower()
    if not DEVICE.fullmatch(text):
        raise UsageError(f"{what} must be auto, cpu, cuda or cuda:N, got '{device}'")
    return text


def auto_device(device: str) -> str:
    """A checked device string with ``auto`` made ``cuda`` when a GPU is present, else ``cpu``."""
    text = check_device(device)
    if text != "auto":
        return text
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
