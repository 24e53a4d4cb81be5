"""RISurConv datasets: every layout on small generated folders, caching, augmentation, synthetic shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facet3d.core.errors import InputError, UsageError
from facet3d.plugins.risurconv.data import open_dataset
from facet3d.plugins.risurconv.data import cache as cache_mod
from facet3d.plugins.risurconv.data.common import augment, fps_numpy, prepare_geometry

CUBE_OFF = """OFF
8 12 0
0 0 0
1 0 0
1 1 0
0 1 0
0 0 1
1 0 1
1 1 1
0 1 1
3 0 2 1
3 0 3 2
3 4 5 6
3 4 6 7
3 0 1 5
3 0 5 4
3 1 2 6
3 1 6 5
3 2 3 7
3 2 7 6
3 3 0 4
3 3 4 7
"""


def _sphere_rows(n: int, rng) -> np.ndarray:
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    return np.concatenate([p * 2 + 5, p], axis=1)  # off-centre, radius 2: the loader must normalise


def _check_sample(xyz, nrm, n):
    assert xyz.shape == (n, 3) and nrm.shape == (n, 3)
    assert xyz.dtype == np.float32 and nrm.dtype == np.float32
    assert np.linalg.norm(xyz, axis=1).max() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(np.linalg.norm(nrm, axis=1), 1.0, atol=1e-5)


def test_modelnet40_resampled_layout_and_cache(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "modelnet40_normal_resampled"
    classes = ["airplane", "night_stand"]  # a class name with an underscore
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in (1, 2, 3):
            np.savetxt(root / c / f"{c}_{i:04d}.txt", _sphere_rows(100, rng), delimiter=",", fmt="%.6f")
    (root / "modelnet40_shape_names.txt").write_text("\n".join(classes) + "\n")
    (root / "modelnet40_train.txt").write_text("airplane_0001\nairplane_0002\nnight_stand_0001\nnight_stand_0002\n")
    (root / "modelnet40_test.txt").write_text("airplane_0003\nnight_stand_0003\n")
    cache = tmp_path / "cache"
    ds = open_dataset(tmp_path, "modelnet40", "train", 64, cache_dir=cache)  # finds the sub-folder
    assert cache_mod.LAST["hit"] is False and len(list(cache.glob("*.npz"))) == 1
    assert len(ds) == 4 and ds.class_names == classes and ds.labels.tolist() == [0, 0, 1, 1]
    xyz, nrm, label = ds[2]
    _check_sample(xyz, nrm, 64)
    assert label == 1
    again = open_dataset(root, "modelnet40", "train", 64, cache_dir=cache)
    assert cache_mod.LAST["hit"] is True
    np.testing.assert_array_equal(again.xyz, ds.xyz)
    # other parameters -> another cache entry; a rewritten source file -> a miss
    open_dataset(root, "modelnet40", "train", 32, cache_dir=cache)
    assert cache_mod.LAST["hit"] is False
    np.savetxt(root / "airplane" / "airplane_0001.txt", _sphere_rows(120, rng), delimiter=",", fmt="%.6f")
    open_dataset(root, "modelnet40", "train", 64, cache_dir=cache)
    assert cache_mod.LAST["hit"] is False
    assert len(open_dataset(root, "modelnet40", "test", 64, cache_dir=cache)) == 2


def test_modelnet_off_layout(tmp_path):
    for c in ("box", "crate"):
        for split in ("train", "test"):
            d = tmp_path / c / split
            d.mkdir(parents=True)
            (d / f"{c}_0001.off").write_text(CUBE_OFF)
    (tmp_path / "box" / "train" / "broken.off").write_text("OFF\n3 1 0\n0 0 0\n")  # skipped with a warning
    ds = open_dataset(tmp_path, "modelnet-off", "train", 128, cache_dir=tmp_path / ".c")
    assert len(ds) == 2 and ds.class_names == ["box", "crate"]
    xyz, nrm, _ = ds[0]
    _check_sample(xyz, nrm, 128)
    # face normals of a cube: axis-aligned; points on the faces (|coordinate| max along the normal)
    assert np.allclose(np.abs(nrm).max(1), 1.0, atol=1e-5)


def test_modelnet_off_real_meshes(shared_data, tmp_path):
    ds = open_dataset(shared_data / "modelnet", "modelnet-off", "all", 256, cache_dir=tmp_path)
    assert ds.class_names == ["chair", "toilet"] and len(ds) == 2
    for i in range(2):
        _check_sample(*ds[i][:2], 256)


def test_scanobjectnn_variants_and_oriented_normals(tmp_path):
    import h5py

    from facet3d.core.ops.normals import neighbour_sign_agreement

    rng = np.random.default_rng(1)
    clouds = np.stack([_sphere_rows(300, rng)[:, :3] * (i + 1) for i in range(3)]).astype(np.float32)
    for folder, name in (("main_split", "training_objectdataset_augmentedrot_scale75.h5"),
                         ("main_split_nobg", "test_objectdataset.h5")):
        (tmp_path / folder).mkdir(exist_ok=True)
        with h5py.File(tmp_path / folder / name, "w") as f:
            f["data"] = clouds
            f["label"] = np.array([0, 3, 14])
    ds = open_dataset(tmp_path, "scanobjectnn", "train", 128, cache_dir=tmp_path / "c")  # PB_T50_RS default
    assert len(ds) == 3 and ds.labels.tolist() == [0, 3, 14] and ds.num_classes == 15
    xyz, nrm, _ = ds[0]
    _check_sample(xyz, nrm, 128)
    assert neighbour_sign_agreement(xyz, nrm) > 0.95
    assert np.mean(np.einsum("ij,ij->i", xyz, nrm) > 0) > 0.95  # outward on a sphere
    assert len(open_dataset(tmp_path, "scanobjectnn", "test", 128, variant="OBJ_ONLY", cache_dir=tmp_path / "c")) == 3
    with pytest.raises(InputError, match="OBJ_BG"):
        open_dataset(tmp_path, "scanobjectnn", "test", 128, variant="OBJ_BG", cache_dir=tmp_path / "c")
    with pytest.raises(UsageError, match="unknown variant"):
        open_dataset(tmp_path, "scanobjectnn", "test", 128, variant="nope")


def test_shapenet_part_layout(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "shapenetcore_partanno_segmentation_benchmark_v0_normal"
    (root / "train_test_split").mkdir(parents=True)
    (root / "synsetoffset2category.txt").write_text("Airplane\t02691156\nBag\t02773838\n")
    lists = {"train": [], "val": [], "test": []}
    for syn, parts, split in (("02691156", [0, 1, 2, 3], "train"), ("02773838", [4, 5], "val"), ("02773838", [4, 5], "test")):
        (root / syn).mkdir(exist_ok=True)
        token = f"tok{len(lists[split])}{split}"
        rows = np.concatenate([_sphere_rows(80, rng), rng.choice(parts, (80, 1))], axis=1)
        np.savetxt(root / syn / f"{token}.txt", rows, fmt="%.6f")
        lists[split].append(f"shape_data/{syn}/{token}")
    for s, v in lists.items():
        (root / "train_test_split" / f"shuffled_{s}_file_list.json").write_text(json.dumps(v))
    ds = open_dataset(tmp_path, "shapenet-part", "train", 128, task="segmentation", cache_dir=tmp_path / "c")
    assert len(ds) == 2 and ds.split == "trainval" and ds.labels.tolist() == [0, 1]
    xyz, nrm, cat, parts = ds[0]
    _check_sample(xyz, nrm, 128)  # 80 points -> 128 with repeats
    assert set(parts.tolist()) <= {0, 1, 2, 3} and ds.category_parts["Table"] == [47, 48, 49]
    assert len(open_dataset(root, "shapenet-part", "test", 64, task="segmentation", cache_dir=tmp_path / "c")) == 1
    with pytest.raises(UsageError, match="no classification labels"):
        open_dataset(root, "shapenet-part", "test", 64)


def test_folder_of_any_format(tmp_path, sample_data):
    import shutil

    for c, srcs in {"mesh": ["meshes/fuze.obj", "meshes/featuretype.STL"], "scan": ["scans/bunny.pcd", "scans/milk.pcd"]}.items():
        (tmp_path / "data" / c).mkdir(parents=True)
        for s in srcs:
            shutil.copy(sample_data / s, tmp_path / "data" / c)
    (tmp_path / "data" / "scan" / "bad.ply").write_text("ply\nformat ascii 1.0\nelement vertex 5\nend_header\n1 2\n")
    ds = open_dataset(tmp_path / "data", "folder", "all", 128, cache_dir=tmp_path / "c")
    assert ds.class_names == ["mesh", "scan"] and len(ds) == 4  # bad.ply skipped
    for i in range(4):
        _check_sample(*ds[i][:2], 128)
    assert len(open_dataset(tmp_path / "data", "folder", "train", 128, cache_dir=tmp_path / "c")) == 4
    with pytest.raises(InputError, match="no readable file"):
        open_dataset(tmp_path / "data", "folder", "test", 128, cache_dir=tmp_path / "c")


def test_synthetic_classification_and_segmentation():
    ds = open_dataset(None, "synthetic", "train", 128, samples_per_class=2)
    assert ds.name == "synthetic" and ds.num_classes == 8 and len(ds) == 16
    _check_sample(*ds[0][:2], 128)
    test = open_dataset(None, "synthetic", "test", 128, samples_per_class=2)
    assert not np.allclose(test.xyz[0], ds.xyz[0])  # different splits, different shapes
    again = open_dataset(None, "synthetic", "train", 128, samples_per_class=2)
    np.testing.assert_array_equal(again.xyz, ds.xyz)  # reproducible
    # upright by default: the cylinder's caps have normals along +-z
    cyl = ds.xyz[ds.labels == 2][0], ds.normals[ds.labels == 2][0]
    assert np.isclose(np.abs(cyl[1][:, 2]), 1.0, atol=1e-5).any()
    seg = open_dataset(None, "synthetic", "train", 128, task="segmentation", samples_per_class=2)
    xyz, nrm, cat, parts = seg[0]
    assert seg.num_classes == 4 and len(seg.part_names) == 8
    for i in range(len(seg)):
        c = seg.class_names[seg.labels[i]]
        assert set(np.unique(seg.parts[i])) <= set(seg.category_parts[c])
    assert len(set(np.unique(seg.parts[0]))) == 2  # both parts of a cylinder are sampled


def test_augmentation_matches_recipe():
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(256, 3)).astype(np.float32)
    nrm = np.tile(np.array([0, 0, 1], np.float32), (256, 1))
    part = np.arange(256)
    for seed in range(20):
        a, n, (p,) = augment(xyz, nrm, np.random.default_rng(seed), [part])
        kept = p == np.arange(256)
        assert a.shape == xyz.shape and kept.sum() >= 256 * 0.125 - 10
        # kept points: x * s + t with one scale and shift
        s = np.std(a[kept], axis=0) / np.std(xyz[kept], axis=0)
        assert 0.8 - 1e-4 <= s.mean() <= 1.25 + 1e-4
        t = a[kept].mean(0) - s.mean() * xyz[kept].mean(0)
        assert np.all(np.abs(t) <= 0.1 + 1e-4)
        assert (p[~kept] == 0).all()
    ds = open_dataset(None, "synthetic", "train", 64, samples_per_class=1, augment=True)
    a1, a2 = ds[0][0], ds[0][0]
    np.testing.assert_array_equal(a1, a2)  # same epoch: same augmentation
    ds.set_epoch(1)
    assert not np.array_equal(ds[0][0], a1)


def test_prepare_geometry_fps_and_small_clouds():
    from facet3d.core.io.record import Geometry

    rng = np.random.default_rng(3)
    p = rng.normal(size=(500, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    xyz, nrm = prepare_geometry(Geometry(vertices=p), 64)
    _check_sample(xyz, nrm, 64)
    # FPS start is independent of point order
    perm = rng.permutation(500)
    assert set(map(tuple, p[fps_numpy(p, 32)].round(6))) == set(map(tuple, p[perm][fps_numpy(p[perm], 32)].round(6)))
    xyz, nrm = prepare_geometry(Geometry(vertices=p[:20]), 64)  # fewer points than asked: repeats
    _check_sample(xyz, nrm, 64)
