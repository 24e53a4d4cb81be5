"""Decoding ROMP-style centre + parameter maps into bodies: known bodies written into maps come back
exactly (parameters and, through the model, vertices), the camera <-> translation conversion agrees
with an independent pinhole projection, and the peak finder thresholds, suppresses and batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facet3d.core.errors import UsageError
from facet3d.core.ops.rotations import axis_angle_to_matrix
from facet3d.plugins.mesh_recovery.body.romp import (ROMP_FOCAL, ParamLayout, batch_persons, camera_to_transl,
                                                    decode_maps, encode_maps, find_centres, transl_to_camera)
from facet3d.plugins.mesh_recovery.body.skeleton import skeleton_of
from facet3d.plugins.mesh_recovery.body.smpl import SMPLBody

F64 = torch.float64
IMAGE, MAP = 512, 64
CELL = IMAGE / MAP


@pytest.fixture(scope="module")
def smpl(tmp_path_factory):
    from test_mr_body_model import synthetic_model

    arrays = synthetic_model(n_verts=300)
    arrays["v_template"] = arrays["v_template"] * [0.2, 0.8, 0.1]  # tall along y, about a body's size
    path = tmp_path_factory.mktemp("romp") / "m.npz"
    np.savez(path, **arrays)
    return SMPLBody.from_file(path, dtype=F64)


def _transl_at(cell, depth, focal=ROMP_FOCAL):
    """The translation whose point projects (pinhole, principal point at the image centre) to the
    middle of ``cell`` at ``depth`` metres: computed here without the module's formula."""
    u, v = (cell[1] + 0.5) * CELL, (cell[0] + 0.5) * CELL
    return torch.tensor([(u - IMAGE / 2) * depth / focal, (v - IMAGE / 2) * depth / focal, depth], dtype=F64)


def _people(model, cells, seed):
    """Random plausible bodies (poses from the skeleton's sampler) centred on ``cells``."""
    sk = skeleton_of(model)
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=g, dtype=F64)  # noqa: E731
    people = []
    for cell in cells:
        pose = torch.zeros(model.num_joints, 3, dtype=F64)
        pose[sk.free] = sk.sample_pose(g)
        axis = torch.randn(3, generator=g, dtype=F64)
        if model.betas_range is None:
            betas = torch.randn(model.num_betas, generator=g, dtype=F64).clamp(-2, 2)
        else:
            lo, hi = model.betas_range
            betas = lo + 0.1 + (hi - lo - 0.2) * r(model.num_betas)
        people.append({"betas": betas, "global_orient": axis / axis.norm() * (0.3 + 2.2 * r(())),
                       "body_pose": pose[1:].reshape(-1), "transl": _transl_at(cell, 3.0 + 5.0 * r(())),
                       "cell": cell})
    return people


def _check_recovered(model, people, decoded, atol=1e-5):
    assert len(decoded) == len(people)
    by_cell = {p["cell"]: p for p in decoded}
    assert set(by_cell) == {p["cell"] for p in people}
    for truth in people:
        got = by_cell[truth["cell"]]
        assert got["score"] == pytest.approx(1.0)
        for key in ("betas", "global_orient", "body_pose", "transl"):
            torch.testing.assert_close(got[key], truth[key], rtol=0, atol=atol)
    ordered = [by_cell[p["cell"]] for p in people]
    want = model(**batch_persons(people))
    out = model(**batch_persons(ordered))
    torch.testing.assert_close(out.vertices, want.vertices, rtol=0, atol=1e-5)
    return ordered


@pytest.mark.parametrize("radius", [0, 1])
def test_known_bodies_come_back_exactly(smpl, radius):
    layout = ParamLayout.from_model(smpl)
    # SMPL's free joints: 19 (no feet, no hands) + root -> 3 + 20 * 6 + 10 channels
    assert layout.joints == (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21)
    assert layout.channels == 133 and layout.betas == slice(123, 133)
    people = _people(smpl, [(10, 12), (30, 40), (50, 20)], seed=0)
    centre, params = encode_maps(people, layout, MAP, IMAGE, ROMP_FOCAL, radius=radius, dtype=F64)
    assert centre.shape == (1, MAP, MAP) and params.shape == (133, MAP, MAP)
    assert all(float(centre[0, r, c]) == 1.0 for r, c in (p["cell"] for p in people))
    decoded = decode_maps(centre[None], params[None], layout, image_size=IMAGE, focal=ROMP_FOCAL)
    assert len(decoded) == 1
    ordered = _check_recovered(smpl, people, decoded[0])
    for got in ordered:  # joints outside the layout stay at rest
        assert torch.equal(got["body_pose"].reshape(-1, 3)[[9, 10, 21, 22]], torch.zeros(4, 3, dtype=F64))
        r, c = got["cell"]
        assert got["centre_xy"] == ((c + 0.5) * CELL, (r + 0.5) * CELL)
    if radius:  # a neighbouring cell reads the same person
        r, c = people[1]["cell"]
        torch.testing.assert_close(params[:, r + 1, c - 1], params[:, r, c], rtol=0, atol=0)


def test_camera_and_translation_follow_a_pinhole_of_that_focal():
    g = torch.Generator().manual_seed(3)
    transl = torch.cat([torch.rand(50, 2, generator=g, dtype=F64) * 4 - 2,
                        torch.rand(50, 1, generator=g, dtype=F64) * 10 + 2], 1)
    cam = transl_to_camera(transl, ROMP_FOCAL, IMAGE)
    torch.testing.assert_close(camera_to_transl(cam, ROMP_FOCAL, IMAGE), transl, rtol=0, atol=1e-12)
    s, t = cam[:, :1], cam[:, 1:]

    def pinhole(points):  # [N, 3] camera frame -> pixels, principal point at the image centre
        return ROMP_FOCAL * points[:, :2] / points[:, 2:] + IMAGE / 2

    # the translation point lands on the camera's centre (weak-perspective offset t, in [-1, 1] units)
    torch.testing.assert_close(pinhole(transl), (t + 1) * IMAGE / 2, rtol=0, atol=1e-9)
    # and points at its depth project identically both ways: the weak-perspective scale matches
    offset = torch.rand(50, 2, generator=g, dtype=F64) - 0.5
    moved = transl + torch.cat([offset, torch.zeros(50, 1, dtype=F64)], 1)
    torch.testing.assert_close(pinhole(moved), (s * offset + t + 1) * IMAGE / 2, rtol=0, atol=1e-9)
    # ROMP's numbers: 443.4 px at 512 px is a 60 degree field of view, depth = 1 / (s tan 30 deg)
    assert 2 * ROMP_FOCAL / IMAGE == pytest.approx(1 / math.tan(math.radians(30)), rel=1e-4)
    # another focal / image size scales depth only
    t2 = camera_to_transl(cam, 1000.0, 256)
    torch.testing.assert_close(t2[:, :2], transl[:, :2], rtol=0, atol=1e-12)
    torch.testing.assert_close(t2[:, 2], transl[:, 2] * (2000 / 256) / (2 * ROMP_FOCAL / IMAGE), rtol=1e-12,
                               atol=0)
    with pytest.raises(UsageError, match="in front"):
        transl_to_camera(torch.tensor([0.0, 0.0, -1.0], dtype=F64))


def test_decoded_translation_projects_into_its_centre_cell(smpl):
    layout = ParamLayout.from_model(smpl)
    people = _people(smpl, [(5, 60), (40, 8)], seed=1)
    for p in people:  # centre from the projection, not given
        del p["cell"]
    decoded = decode_maps(*[m[None] for m in encode_maps(people, layout, dtype=F64)], layout)[0]
    assert len(decoded) == 2
    for got in decoded:
        xy = ROMP_FOCAL * got["transl"][:2] / got["transl"][2] + IMAGE / 2
        assert torch.allclose(xy, torch.tensor(got["centre_xy"], dtype=F64), atol=1e-9)  # the cell's middle
        s, tx, ty = got["camera"].tolist()
        assert (math.floor((tx + 1) / 2 * MAP), math.floor((ty + 1) / 2 * MAP)) == got["cell"][::-1]


def _maps(peaks, channels, size=16):
    centre = torch.zeros(1, 1, size, size)
    params = torch.zeros(1, channels, size, size)
    for k, ((r, c), v) in enumerate(peaks.items()):
        centre[0, 0, r, c] = v
        params[0, 0, r, c] = 1.0 + k  # camera scale: tells the people apart
    return centre, params


def test_threshold_drops_low_peaks_and_all_zero_gives_nobody(smpl):
    layout = ParamLayout.from_model(smpl)
    centre, params = _maps({(2, 2): 0.9, (2, 10): 0.3, (10, 5): 0.2}, layout.channels)
    kept = decode_maps(centre, params, layout)[0]
    assert [p["cell"] for p in kept] == [(2, 2), (2, 10)]  # best first
    assert [p["score"] for p in kept] == pytest.approx([0.9, 0.3])
    assert [p["cell"] for p in decode_maps(centre, params, layout, threshold=0.5)[0]] == [(2, 2)]
    assert len(decode_maps(centre, params, layout, max_people=1)[0]) == 1
    zeros = torch.zeros(2, 1, 16, 16)
    assert decode_maps(zeros, torch.zeros(2, layout.channels, 16, 16), layout) == [[], []]


@pytest.mark.parametrize("kernel", [3, 5])
def test_nms_keeps_one_of_two_adjacent_cells(smpl, kernel):
    layout = ParamLayout.from_model(smpl)
    centre, params = _maps({(7, 7): 0.8, (7, 8): 0.9, (8, 8): 0.6, (7, 14): 0.7}, layout.channels)
    got = decode_maps(centre, params, layout, nms_kernel=kernel)[0]
    assert [p["cell"] for p in got] == [(7, 8), (7, 14)]
    assert got[0]["camera"][0] == 2.0  # the parameters of the cell that won
    scores, rows, cols = find_centres(centre, nms_kernel=kernel)[0]
    assert rows.tolist() == [7, 7] and cols.tolist() == [8, 14]


def test_batch_of_two_images_decodes_independently(smpl):
    layout = ParamLayout.from_model(smpl)
    a = _people(smpl, [(3, 3), (20, 50)], seed=4)
    b = _people(smpl, [(60, 30)], seed=5)
    maps = [encode_maps(p, layout, dtype=F64) for p in (a, b)]
    centre = torch.stack([m[0] for m in maps])
    params = torch.stack([m[1] for m in maps])
    both = decode_maps(centre, params, layout)
    assert len(both) == 2
    _check_recovered(smpl, a, both[0])
    _check_recovered(smpl, b, both[1])
    alone = decode_maps(centre[1:], params[1:], layout)[0]
    assert [p["cell"] for p in alone] == [p["cell"] for p in both[1]]
    torch.testing.assert_close(alone[0]["transl"], both[1][0]["transl"], rtol=0, atol=0)


def test_romp_layout_and_refusals(smpl):
    romp = ParamLayout.from_model(smpl, joints=range(22))  # ROMP's 22 joints: root + body 1..21
    assert romp.channels == 145 and romp.camera == slice(0, 3) and romp.rotations == slice(3, 135)
    people = _people(smpl, [(32, 32)], seed=6)
    got = decode_maps(*[m[None] for m in encode_maps(people, romp, dtype=F64)], romp)[0]
    _check_recovered(smpl, people, got)
    assert torch.equal(got[0]["body_pose"][-6:], torch.zeros(6, dtype=F64))  # hands padded with rest
    with pytest.raises(UsageError, match="channels"):
        decode_maps(torch.zeros(1, 1, 8, 8), torch.zeros(1, 10, 8, 8), romp)
    with pytest.raises(UsageError, match="shares"):
        encode_maps(people + people, romp)
    with pytest.raises(UsageError, match="outside"):
        encode_maps([dict(people[0], cell=(64, 0))], romp)
    with pytest.raises(UsageError, match="root"):
        ParamLayout((1, 2), 24, 10)


def test_anny_bodies_come_back_and_the_root_lands_on_the_centre():
    pytest.importorskip("anny")
    from facet3d.plugins.mesh_recovery.body.models import load_body_model

    anny = load_body_model("anny", F64)
    layout = ParamLayout.from_model(anny)
    assert len(layout.joints) == 22 and layout.channels == 3 + 22 * 6 + 6 and layout.betas_range == (-0.5, 0.5)
    people = _people(anny, [(16, 20), (44, 48)], seed=7)
    decoded = decode_maps(*[m[None] for m in encode_maps(people, layout, dtype=F64)], layout)[0]
    ordered = _check_recovered(anny, people, decoded)
    # Anny's transl is its root joint: the root projects to the middle of the centre cell
    root = anny(**batch_persons(ordered)).joints[:, 0]
    xy = ROMP_FOCAL * root[:, :2] / root[:, 2:] + IMAGE / 2
    torch.testing.assert_close(xy, torch.tensor([p["centre_xy"] for p in ordered], dtype=F64), rtol=0, atol=1e-6)
    assert torch.allclose(axis_angle_to_matrix(ordered[0]["global_orient"]),
                          axis_angle_to_matrix(people[0]["global_orient"]), atol=1e-9)
