"""RISurConv invariance with random weights on real shapes: rotations (20 uniformly random),
point permutations and batch composition leave every logit unchanged up to rounding.

Reflections are NOT expected to be invariant (the RISP features use cross products and the
angular order has a handedness), so they are not tested as such. Inputs are rotated about the
origin: the shapes are unit-sphere normalised around their centroid, as the model expects.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facet3d.core.io.api import read
from facet3d.core.ops.rotations import random_rotations
from facet3d.core.ops.sampling import sample_mesh_surface
from facet3d.core.ops.transforms import normalize_unit_sphere
from facet3d.plugins.risurconv.models import build_model

MESHES = ("stanford-bunny.obj", "cow.obj", "spot.obj", "teapot.obj")


@pytest.fixture(scope="module")
def clouds(shared_data: Path):
    """4 shapes x 1024 surface samples with face normals, float64 [4, 1024, 3] each."""
    xs, ns = [], []
    for i, name in enumerate(MESHES):
        g = read(shared_data / "meshes" / name)
        s = sample_mesh_surface(g.vertices, g.faces, 1024, seed=i)
        xs.append(normalize_unit_sphere(torch.as_tensor(s.points, dtype=torch.float64), centre="mean").points)
        ns.append(torch.nn.functional.normalize(torch.as_tensor(s.normals, dtype=torch.float64), dim=-1))
    return torch.stack(xs), torch.stack(ns)


def _random_model(config, dtype, seed=0):
    """Random weights and random BatchNorm statistics (defaults would make BN an identity)."""
    torch.manual_seed(seed)
    model = build_model(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.running_mean.normal_(0, 0.2, generator=g)
                mod.running_var.uniform_(0.5, 2.0, generator=g)
                mod.weight.uniform_(0.5, 1.5, generator=g)
                mod.bias.normal_(0, 0.1, generator=g)
    return model.to(dtype).eval()


def _alone(model, x, n, *extra):
    """Each sample run on its own (batch of 1)."""
    return torch.cat([model(x[i:i + 1], n[i:i + 1], *(e[i:i + 1] for e in extra)) for i in range(len(x))])


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float64, 1e-9)])
def test_small_classifier_rotations_permutations_batches(clouds, dtype, tol):
    model = _random_model("small", dtype)
    x, n = (t.to(dtype) for t in clouds)
    # 20 random rotations, 5 batches of 4: every sample gets its own rotation and batch companions
    rots = random_rotations(20, generator=torch.Generator().manual_seed(7), dtype=torch.float64).reshape(5, 4, 3, 3)
    worst = 0.0
    with torch.inference_mode():
        base = _alone(model, x, n)                                   # [4, 40], each sample alone
        assert base.std() > 1e-3                                     # outputs are not trivially constant
        for R in rots:
            R = R.to(dtype)
            worst = max(worst, float((model(x @ R.transpose(1, 2), n @ R.transpose(1, 2)) - base).abs().max()))
        perm = torch.randperm(1024, generator=torch.Generator().manual_seed(1))
        worst = max(worst, float((model(x[:, perm], n[:, perm]) - base).abs().max()))
        order = [2, 0, 3, 1]                                         # batch order and companions
        worst = max(worst, float((model(x[order], n[order]) - base[order]).abs().max()))
        worst = max(worst, float((model(x[[0, 0, 1]], n[[0, 0, 1]]) - base[[0, 0, 1]]).abs().max()))
    assert worst <= tol, f"largest logit change {worst:.3g} > {tol:g}"


def test_official_classifier_rotation_permutation_batch(clouds):
    model = _random_model("modelnet40", torch.float32)
    x, n = (t.float() for t in clouds)
    R = random_rotations(4, generator=torch.Generator().manual_seed(11)).float()
    perm = torch.randperm(1024, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        alone = model(x[:1], n[:1])
        batch = model(x @ R.transpose(1, 2), n @ R.transpose(1, 2))  # rotated, in a batch of 4
        permuted = model(x[:1, perm], n[:1, perm])
    assert (batch[:1] - alone).abs().max() <= 1e-4
    assert (permuted - alone).abs().max() <= 1e-4


def test_official_classifier_rotation_float64(clouds):
    model = _random_model("scanobjectnn", torch.float64)
    x, n = clouds[0][:1], clouds[1][:1]
    R = random_rotations(1, generator=torch.Generator().manual_seed(13), dtype=torch.float64)[0]
    with torch.inference_mode():
        d = (model(x @ R.T, n @ R.T) - model(x, n)).abs().max()
    assert d <= 1e-9


def test_segmenter_rotation_and_permutation_equivariance(clouds):
    model = _random_model("partseg_small", torch.float32)
    x, n = (t[:2].float() for t in clouds)
    cat = torch.tensor([3, 7])
    R = random_rotations(2, generator=torch.Generator().manual_seed(17)).float()
    perm = torch.randperm(1024, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        base = _alone(model, x, n, cat)
        rot = model(x @ R.transpose(1, 2), n @ R.transpose(1, 2), cat)
        per = model(x[:, perm], n[:, perm], cat)
    assert (rot - base).abs().max() <= 1e-4
    assert (per - base[:, perm]).abs().max() <= 1e-4
