"""`facet3d demo` step "risurconv": rotation-invariant classification and part segmentation.

Uses the tiny checkpoints shipped in ``sample_data/risurconv/`` (trained by this project's own
``facet3d train classifier|segmenter --format synthetic`` command; their JSON says how):
1. classify every sample mesh/scan (the classes are the synthetic primitives, so a bunny gets its
   closest primitive — the point is that real files of any format go through the pipeline);
2. generate held-out synthetic shapes, write each upright and randomly rotated (SO(3)) as PLY,
   classify both: the predictions agree because the model is rotation invariant;
3. segment one rotated synthetic shape and write a PLY with a ``part`` property and colours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facet3d.core.errors import Facet3DError, InputError

CLASSIFIER = "risurconv/classifier_synthetic_tiny.safetensors"
SEGMENTER = "risurconv/segmenter_synthetic_tiny.safetensors"


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def run(ctx) -> dict[str, Any]:
    """The demo step (ctx: facet3d.core.specs.DemoContext)."""
    from facet3d.core.io.api import write
    from facet3d.core.io.record import Geometry
    from facet3d.plugins.risurconv.checkpoint import load_model
    from facet3d.plugins.risurconv.data.synthetic import CLASSES, make_shape
    from facet3d.plugins.risurconv.predict import classify_file, seg_mapping, segment_file

    sample, out = Path(ctx.sample_dir), Path(ctx.out_dir)
    ckpt = sample / CLASSIFIER
    if not ckpt.is_file():
        raise InputError(f"{ckpt}: the demo checkpoint is missing")
    model, meta = load_model(ckpt)
    n = int(meta.get("num_points", 1024))
    names = list(meta["class_names"])
    tw = meta.get("trained_with")
    summary: dict[str, Any] = {"checkpoint": str(ckpt), "trained_with": tw.get("command") if isinstance(tw, dict) else tw}

    # 1. real sample files (any format facet3d reads)
    files = sorted(p for d in ("meshes", "scans") for p in (sample / d).glob("*")
                   if p.suffix.lower() in (".obj", ".stl", ".pcd", ".ply", ".off"))
    if ctx.quick:
        files = files[:2]
    real = {}
    for p in files:
        try:
            r = classify_file(model, p, n, names, top_k=3)
            real[p.name] = {"label": r["label"], "prob": round(r["prob"], 4)}
        except Facet3DError as exc:
            real[p.name] = {"error": str(exc)}
    summary["sample_files"] = real

    # 2. held-out synthetic shapes, upright vs randomly rotated
    per_class = 1 if ctx.quick else 2
    shapes_dir = out / "shapes"
    shapes_dir.mkdir(exist_ok=True)
    rows, agree, correct = [], 0, 0
    for ci, cname in enumerate(CLASSES):
        for j in range(per_class):
            rng = np.random.default_rng([7, ci, j])
            xyz, nrm, _ = make_shape(cname, n, rng)
            R = _rotation(rng)
            preds = []
            for tag, (p, q) in {"upright": (xyz, nrm), "rotated": (xyz @ R.T, nrm @ R.T)}.items():
                path = shapes_dir / f"{cname}_{j}_{tag}.ply"
                write(path, Geometry(vertices=p.astype(np.float32), normals=q.astype(np.float32)))
                preds.append(classify_file(model, path, n, names, top_k=1)["label"])
            agree += preds[0] == preds[1]
            correct += (preds[0] == cname) + (preds[1] == cname)
            rows.append({"shape": f"{cname}_{j}", "upright": preds[0], "rotated": preds[1]})
    total = len(rows)
    summary["synthetic"] = {"shapes": total, "accuracy_upright_and_rotated": round(correct / (2 * total), 4),
                            "rotation_agreement": round(agree / total, 4), "predictions": rows}

    # 3. part segmentation of one rotated synthetic shape
    seg_ckpt = sample / SEGMENTER
    if seg_ckpt.is_file():
        seg, smeta = load_model(seg_ckpt)
        sn = int(smeta.get("num_points", 1024))
        rng = np.random.default_rng(11)
        xyz, nrm, _ = make_shape("lollipop", sn, rng)
        R = _rotation(rng)
        src = out / "lollipop_rotated.ply"
        write(src, Geometry(vertices=(xyz @ R.T).astype(np.float32), normals=(nrm @ R.T).astype(np.float32)))
        cats, cp, part_names = seg_mapping(smeta)
        res = segment_file(seg, src, out / "lollipop_parts.ply", sn, cats, cp, part_names, category=None)
        summary["segmentation"] = {k: res[k] for k in ("category", "part_counts", "out")}
        from facet3d.core.io.api import read
        from facet3d.core.preview import save_preview

        save_preview(out / "lollipop_parts.png", read(out / "lollipop_parts.ply"), up=tuple(R[:, 2]))  # parts' colours
    summary["commands"] = [f"facet3d classify {files[0] if files else 'SHAPE'} --ckpt {ckpt} --top-k 3",
                           f"facet3d segment OUT/lollipop_rotated.ply --ckpt {seg_ckpt} --out OUT/lollipop_parts.ply"]
    return summary
