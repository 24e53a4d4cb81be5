"""The static HTML pages (core.report), the preview pictures (core.preview) and the demo's index.html."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from facet3d.core.preview import preview_views
from facet3d.core.report import Section, pictures_in, scalar_metrics, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")


def _loaded(page) -> tuple[int, int]:
    """(pictures, pictures that did not load) as a real browser counts them (the page's own script)."""
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--allow-file-access-from-files",
                        "--virtual-time-budget=3000", "--dump-dom", page.resolve().as_uri()],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r'<body data-images="(\d+)" data-broken="(\d+)"', r.stdout)
    assert m, r.stdout[:500] + r.stderr[-1000:]
    return int(m.group(1)), int(m.group(2))


def test_metrics_flatten_and_pictures_are_found(tmp_path):
    assert scalar_metrics({"a": 1, "b": {"c": 0.5, "d": [1, 2], "e": {"f": "x"}}, "g": True}) == \
        {"a": 1, "b.c": 0.5, "b.e.f": "x", "g": True}
    for i in range(30):
        Image.new("RGB", (4, 4)).save(tmp_path / f"it{i:03d}.png")
    found = pictures_in(tmp_path, limit=6)
    assert [p.name for p in found] == ["it000.png", "it001.png", "it002.png", "it027.png", "it028.png", "it029.png"]


@needs_chromium
def test_a_browser_counts_broken_pictures(tmp_path):
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "good.png")
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "sub" / "also good.png")  # spaces survive the link
    page = write_report(tmp_path / "index.html", "t", [
        Section("a", pictures=[tmp_path / "good.png", tmp_path / "sub" / "also good.png"], metrics={"x": 1.5},
                commands=["facet3d x <y>"], status="ok")])
    assert _loaded(page) == (2, 0)
    assert "facet3d x &lt;y&gt;" in page.read_text()  # escaped
    page = write_report(tmp_path / "index.html", "t", [Section("a", pictures=[tmp_path / "good.png",
                                                                              tmp_path / "missing.png"])])
    assert _loaded(page) == (2, 1)


def test_mesh_previews_are_shaded_not_silhouettes():
    import trimesh

    s = trimesh.creation.icosphere(3)
    img = preview_views(s.vertices, s.faces, views=1, size=(96, 96))
    inside = img[(img < 250).any(-1)]
    assert len(inside) > 1500  # the sphere covers a good part of the view
    grey = inside.mean(-1)
    # head light: bright in the middle, darker toward the silhouette, many levels in between
    assert len(np.unique(grey.round())) > 20 and grey.max() - grey.min() > 80
    centre = img[44:52, 44:52].mean()
    rim = img[(img < 250).any(-1)].mean()
    assert centre > rim + 10
    pts = preview_views(s.vertices, None, np.tile([[1.0, 0, 0]], (len(s.vertices), 1)), views=2, size=(64, 64))
    assert pts.shape == (64, 128, 3)
    red = (pts[..., 0] > 150) & (pts[..., 1] < 60)
    assert red[:, :64].sum() > 50 and red[:, 64:].sum() > 50  # the points, in their colour, in both views


@needs_chromium
def test_demo_writes_a_page_whose_pictures_all_load(cli, tmp_path):
    out = tmp_path / "demo"
    r = cli("demo", "--only", "convert", "--only", "risurconv", "--only", "triangle-splatting", "--quick",
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    page = out / "index.html"
    assert f"open {page}" in r.stdout.replace("\n", "")
    text = page.read_text()
    for step in ("convert", "risurconv", "triangle-splatting"):
        assert f"<h2>{step}" in text
    assert "facet3d render" in text and "facet3d classify" in text  # the commands that made them
    n, broken = _loaded(page)
    pictures = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert broken == 0 and n == len(pictures) >= 4, (n, broken, pictures)
    assert "risurconv/lollipop_parts.png" in pictures and "convert/stanford-bunny_views.png" in pictures
    report = json.loads((out / "demo_report.json").read_text())
    assert [s["status"] for s in report] == ["ok"] * 3
