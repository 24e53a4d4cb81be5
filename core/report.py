"""A static HTML page for a folder of results (``facet3d demo``, ``fit`` and ``train`` runs): `write_report`.

One self-contained ``index.html`` beside the results: no server, no network, no scripts from elsewhere.
Each `Section` shows its pictures (relative links to the PNG / JPEG files in the folder), its metrics as a
table, the commands that made them and its status. A few lines of inline script count the pictures
that did not load and say so at the top of the page (and as ``data-broken`` on ``<body>`` for tests).
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Section", "write_report", "pictures_in", "scalar_metrics", "run_report"]

PICTURE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".gif")

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
header{background:#1d232b;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#b8c0cc}main{padding:12px 28px 40px;max-width:1400px}
section{background:#fff;border:1px solid #dde1e6;border-radius:8px;margin:16px 0;padding:14px 18px}
section h2{margin:0 0 4px;font-size:18px}.desc{color:#5a6472;margin:0 0 10px}
.status{font-size:12px;font-weight:600;padding:2px 8px;border-radius:10px;margin-left:8px;vertical-align:2px}
.ok{background:#dff3e4;color:#17692c}.failed{background:#fde2e1;color:#a1251b}
figure{display:inline-block;margin:6px 12px 6px 0;vertical-align:top}
figure img{max-width:100%;max-height:360px;border:1px solid #e3e6ea;border-radius:4px;background:#fff}
figcaption{font-size:12px;color:#5a6472;max-width:520px;word-break:break-all}
table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border-bottom:1px solid #eceff2;padding:3px 12px 3px 0;
text-align:left}th{color:#5a6472;font-weight:500}pre{background:#f1f3f5;padding:8px 10px;border-radius:4px;
overflow-x:auto;font-size:13px}.error{color:#a1251b}#broken{display:none;background:#fde2e1;color:#a1251b;
padding:8px 28px}
"""

_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.images, bad = 0;
  for (var i = 0; i < imgs.length; i++) { if (!imgs[i].complete || imgs[i].naturalWidth === 0) bad++; }
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-broken', bad);
  if (bad) { var b = document.getElementById('broken'); b.textContent = bad + ' picture(s) did not load';
             b.style.display = 'block'; }
});
"""


@dataclass
class Section:
    title: str
    description: str = ""
    pictures: list = field(default_factory=list)  # paths (absolute or relative to the page), or (path, caption)
    metrics: dict = field(default_factory=dict)  # name -> scalar
    commands: list = field(default_factory=list)  # shell lines
    status: str | None = None  # "ok" / "failed" / None
    error: str | None = None


def pictures_in(folder: str | Path, limit: int = 24) -> list[Path]:
    """The pictures under ``folder`` (recursive, sorted; at most ``limit``, the last of a numbered series
    kept when there are more, e.g. the latest training previews)."""
    found = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in PICTURE_EXTS and p.is_file())
    if len(found) <= limit:
        return found
    return found[: limit // 2] + found[-(limit - limit // 2):]


def scalar_metrics(summary: Any, prefix: str = "", depth: int = 2) -> dict[str, Any]:
    """The numbers, short strings and flags of a (nested) summary dict, keys joined with '.'."""
    out: dict[str, Any] = {}
    if not isinstance(summary, dict):
        return out
    for k, v in summary.items():
        key = f"{prefix}{k}"
        if isinstance(v, bool) or isinstance(v, (int, float)) or (isinstance(v, str) and len(v) <= 120):
            out[key] = v
        elif isinstance(v, dict) and depth > 0:
            out.update(scalar_metrics(v, key + ".", depth - 1))
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _section_html(s: Section, page_dir: Path) -> str:
    parts = [f"<section><h2>{html.escape(s.title)}"]
    if s.status:
        parts.append(f'<span class="status {html.escape(s.status)}">{html.escape(s.status)}</span>')
    parts.append("</h2>")
    if s.description:
        parts.append(f'<p class="desc">{html.escape(s.description)}</p>')
    if s.error:
        parts.append(f'<p class="error">{html.escape(s.error)}</p>')
    for pic in s.pictures:
        path, caption = (pic if isinstance(pic, tuple) else (pic, None))
        p = Path(path)
        rel = os.path.relpath(p if p.is_absolute() else page_dir / p, page_dir)
        rel = Path(rel).as_posix()
        cap = caption or rel
        parts.append(f'<figure><a href="{html.escape(rel)}"><img src="{html.escape(rel)}" alt="{html.escape(cap)}" '
                     f'loading="eager"></a><figcaption>{html.escape(cap)}</figcaption></figure>')
    if s.metrics:
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
                       for k, v in s.metrics.items())
        parts.append(f"<table>{rows}</table>")
    if s.commands:
        parts.append("<pre>" + html.escape("\n".join(s.commands)) + "</pre>")
    parts.append("</section>")
    return "".join(parts)


def write_report(path: str | Path, title: str, sections: list[Section], subtitle: str = "") -> Path:
    """Write the page (atomic) and return its path; pictures are linked relative to it."""
    from facet3d.core.io.api import atomic_output

    path = Path(path)
    body = "".join(_section_html(s, path.parent) for s in sections)
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_CSS}</style></head>'
            f'<body><header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>'
            f'<div id="broken"></div><main>{body}</main><script>{_SCRIPT}</script></body></html>')
    with atomic_output(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return path


def run_report(run_dir: str | Path, title: str, command: str | None = None, metrics_files=("metrics.json",),
               description: str = "", metrics: dict | None = None) -> Path:
    """``index.html`` for a training / fitting run folder: its pictures (curves, confusion matrices,
    previews), the numbers of its metrics JSON files and the command that made it."""
    run = Path(run_dir)
    metrics = scalar_metrics(metrics or {})
    for name in metrics_files:
        f = run / name
        if f.is_file():
            try:
                data = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            metrics.update(scalar_metrics(data if isinstance(data, dict) else {}))
    section = Section(title, description, pictures=pictures_in(run), metrics=metrics,
                      commands=[command] if command else [])
    return write_report(run / "index.html", title, [section], subtitle=str(run.resolve()))
