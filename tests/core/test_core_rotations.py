"""Rotations and rigid transforms against independent numpy / scipy answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from facet3d.core.errors import GeometryError
from facet3d.core.ops import rotations as rot
from facet3d.core.ops import transforms as tf


def _gen(seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_random_rotations_are_rotations():
    R = rot.random_rotations(2000, generator=_gen(), dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64).expand_as(R)
    assert torch.allclose(R @ R.transpose(1, 2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(2000, dtype=torch.float64), atol=1e-12)


def test_random_rotations_are_haar_uniform():
    n = 20000
    R = rot.random_rotations(n, generator=_gen(1), dtype=torch.float64).numpy()
    # E[R] = 0 under the Haar measure; entries have variance 1/3 -> standard error sqrt(1/(3n))
    assert np.abs(R.mean(0)).max() < 5 * math.sqrt(1 / (3 * n))
    # rotation angle density (1 - cos t) / pi on [0, pi]: compare binned histogram, chi-square
    theta = np.arccos(np.clip((np.trace(R, axis1=1, axis2=2) - 1) / 2, -1, 1))
    edges = np.linspace(0, math.pi, 21)
    cdf = lambda t: (t - np.sin(t)) / math.pi  # noqa: E731
    expected = n * np.diff(cdf(edges))
    observed, _ = np.histogram(theta, edges)
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < 45  # 19 dof: p ~ 1e-3
    # independent angle estimator agrees
    assert np.allclose(rot.rotation_angle(torch.as_tensor(R)).numpy(), theta, atol=1e-6)


def test_random_rotations_reproducible():
    a = rot.random_rotations(5, generator=_gen(7))
    b = rot.random_rotations(5, generator=_gen(7))
    assert torch.equal(a, b)


def test_random_rotation_about_axis():
    axis = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)
    R = rot.random_rotation_about_axis(axis, 500, generator=_gen(2), dtype=torch.float64)
    u = axis / axis.norm()
    assert torch.allclose(R @ u, u.expand(500, 3), atol=1e-12)  # axis is fixed
    ang = rot.rotation_angle(R)
    assert ang.max() <= math.pi + 1e-9 and ang.mean() > 1.2  # uniform on [0, pi] -> mean pi/2
    with pytest.raises(GeometryError):
        rot.random_rotation_about_axis([0.0, 0.0, 0.0])


def test_conversions_match_scipy():
    q = rot.random_quaternions(300, generator=_gen(3), dtype=torch.float64)
    R = rot.quaternion_to_matrix(q)
    ref = Rotation.from_quat(q[:, [1, 2, 3, 0]].numpy()).as_matrix()  # scipy is (x, y, z, w)
    assert np.allclose(R.numpy(), ref, atol=1e-12)
    assert torch.allclose(rot.matrix_to_quaternion(R), q, atol=1e-10)
    aa = rot.matrix_to_axis_angle(R)
    assert np.allclose(aa.numpy(), Rotation.from_matrix(ref).as_rotvec(), atol=1e-8)
    assert torch.allclose(rot.axis_angle_to_matrix(aa), R, atol=1e-10)
    assert torch.allclose(rot.quaternion_to_axis_angle(rot.axis_angle_to_quaternion(aa)), aa, atol=1e-10)


def test_conversion_edge_cases():
    # identity, tiny and 180-degree rotations (Shepperd branch) survive the round trip
    aa = torch.tensor([[0.0, 0, 0], [1e-9, 0, 0], [math.pi, 0, 0], [0, math.pi, 0], [0, 0, math.pi],
                       [math.pi / math.sqrt(2), math.pi / math.sqrt(2), 0]], dtype=torch.float64)
    R = rot.axis_angle_to_matrix(aa)
    ref = Rotation.from_rotvec(aa.numpy()).as_matrix()
    assert np.allclose(R.numpy(), ref, atol=1e-12)
    assert torch.allclose(rot.axis_angle_to_matrix(rot.matrix_to_axis_angle(R)), R, atol=1e-9)


def test_quaternion_multiply_composes():
    g = _gen(4)
    a, b = rot.random_quaternions(50, generator=g, dtype=torch.float64), rot.random_quaternions(
        50, generator=g, dtype=torch.float64)
    Rab = rot.quaternion_to_matrix(rot.quaternion_multiply(a, b))
    assert torch.allclose(Rab, rot.quaternion_to_matrix(a) @ rot.quaternion_to_matrix(b), atol=1e-12)
    ident = rot.quaternion_multiply(a, rot.quaternion_invert(a))
    assert torch.allclose(ident, torch.tensor([1.0, 0, 0, 0], dtype=torch.float64).expand(50, 4), atol=1e-12)


def test_transform_points_and_normals_numpy_and_torch():
    rng = np.random.default_rng(0)
    P = rng.normal(size=(100, 3))
    Nn = rng.normal(size=(100, 3))
    Nn /= np.linalg.norm(Nn, axis=1, keepdims=True)
    R = Rotation.random(random_state=1).as_matrix()
    t = np.array([1.0, -2.0, 3.0])
    out = tf.transform_points(P, R, t)
    assert isinstance(out, np.ndarray)
    assert np.allclose(out, (R @ P.T).T + t)
    T = tf.make_transform(R, t)
    assert np.allclose(tf.transform_points(P, matrix=T), out)
    assert torch.allclose(tf.transform_points(torch.as_tensor(P), matrix=torch.as_tensor(T)), torch.as_tensor(out))
    assert np.allclose(tf.transform_normals(Nn, R), (R @ Nn.T).T)
    # non-uniform scale: normals stay perpendicular to transformed tangent vectors
    S = np.diag([2.0, 0.5, 1.0])
    tangent = np.cross(Nn, rng.normal(size=(100, 3)))
    n2 = tf.transform_normals(Nn, S)
    assert np.abs(np.einsum("ij,ij->i", n2, tangent @ S.T)).max() < 1e-12
    assert np.allclose(np.linalg.norm(n2, axis=1), 1)
    Ri, ti = tf.invert_transform(R, t)
    assert np.allclose(tf.transform_points(out, Ri, ti), P)


def test_batched_transform_broadcasts():
    P = torch.randn(4, 10, 3, dtype=torch.float64)
    R = rot.random_rotations(4, generator=_gen(5), dtype=torch.float64)
    t = torch.randn(4, 3, dtype=torch.float64)
    out = tf.transform_points(P, R, t)
    for b in range(4):
        assert torch.allclose(out[b], P[b] @ R[b].T + t[b])


def test_normalize_unit_sphere_roundtrip():
    rng = np.random.default_rng(2)
    P = rng.normal(size=(500, 3)) * [3, 1, 0.2] + [10, -4, 2]
    for centre in ("bbox", "mean"):
        n = tf.normalize_unit_sphere(P, centre=centre)
        assert np.isclose(np.linalg.norm(n.points, axis=1).max(), 1.0)
        assert np.allclose(tf.denormalize(n.points, n.centre, n.scale), P)
    assert np.allclose(tf.normalize_unit_sphere(P).centre, (P.min(0) + P.max(0)) / 2)
    batch = torch.as_tensor(np.stack([P, P * 2]))
    nb = tf.normalize_unit_sphere(batch)
    assert torch.allclose(nb.scale[1], 2 * nb.scale[0]) and torch.allclose(nb.points[0], nb.points[1])
    with pytest.raises(GeometryError):
        tf.normalize_unit_sphere(np.ones((5, 3)))
    with pytest.raises(GeometryError):
        tf.normalize_unit_sphere(np.array([[0.0, np.nan, 0.0], [1.0, 1.0, 1.0]]))
    with pytest.raises(GeometryError):
        tf.normalize_unit_sphere(np.zeros((0, 3)))


def test_rotation_6d_round_trip_and_layout():
    R = rot.random_rotations(500, generator=_gen(5), dtype=torch.float64)
    d6 = rot.matrix_to_rotation_6d(R)
    assert d6.shape == (500, 6)
    assert torch.equal(d6[:, :3], R[:, 0]) and torch.equal(d6[:, 3:], R[:, 1])  # the first two rows
    assert torch.allclose(rot.rotation_6d_to_matrix(d6), R, atol=1e-12)
    # leading batch dimensions pass through
    assert rot.rotation_6d_to_matrix(d6.reshape(5, 100, 6)).shape == (5, 100, 3, 3)


def test_rotation_6d_of_non_orthonormal_input_is_a_rotation():
    d6 = torch.randn(1000, 6, generator=_gen(6), dtype=torch.float64) * 3.0
    R = rot.rotation_6d_to_matrix(d6)
    eye = torch.eye(3, dtype=torch.float64).expand_as(R)
    assert torch.allclose(R @ R.transpose(1, 2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(1000, dtype=torch.float64), atol=1e-12)
    # Gram-Schmidt: the first row keeps the first vector's direction, the second stays in their plane
    a1, a2 = d6[:, :3], d6[:, 3:]
    assert torch.allclose(R[:, 0], a1 / a1.norm(dim=1, keepdim=True), atol=1e-12)
    assert torch.allclose(torch.linalg.cross(a1, a2) / torch.linalg.cross(a1, a2).norm(dim=1, keepdim=True),
                          R[:, 2], atol=1e-10)


def test_rotation_6d_closed_form():
    # rows (cos t, -sin t, 0) and (sin t, cos t, 0), scaled and skewed, are the rotation about z by t
    t = torch.linspace(-3.0, 3.0, 13, dtype=torch.float64)
    c, s = torch.cos(t), torch.sin(t)
    r1 = torch.stack([c, -s, torch.zeros_like(t)], -1)
    r2 = torch.stack([s, c, torch.zeros_like(t)], -1)
    R = rot.rotation_6d_to_matrix(torch.cat([2.5 * r1, 0.4 * r2 + 0.9 * r1], -1))
    ref = Rotation.from_rotvec(np.stack([np.zeros(13), np.zeros(13), t.numpy()], -1)).as_matrix()
    assert np.allclose(R.numpy(), ref, atol=1e-12)
    # two known orthonormal rows of a general rotation give back that rotation (third row = r1 x r2)
    Q = torch.as_tensor(Rotation.from_rotvec([0.3, -1.2, 0.7]).as_matrix())
    assert torch.allclose(rot.rotation_6d_to_matrix(torch.cat([Q[0], Q[1]])), Q, atol=1e-12)


def test_rotation_between_is_the_smallest_turn():
    """a -> b exactly, a proper rotation, by the angle between them about a x b (the smallest turn);
    opposite vectors give a half turn."""
    from facet3d.core.ops.rotations import rotation_between, rotation_angle, matrix_to_axis_angle

    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        a, b = torch.randn(2, 3, generator=g, dtype=torch.float64)
        a, b = a / a.norm(), b / b.norm()
        R = rotation_between(a, b)
        assert torch.allclose(R @ a, b, atol=1e-12)
        assert torch.allclose(R @ R.T, torch.eye(3, dtype=torch.float64), atol=1e-12)
        assert abs(float(torch.det(R)) - 1) < 1e-12
        assert float(rotation_angle(R)) == pytest.approx(math.acos(float(a @ b)), abs=1e-9)
        axis = matrix_to_axis_angle(R)
        assert float(axis @ a) == pytest.approx(0, abs=1e-9) and float(axis @ b) == pytest.approx(0, abs=1e-9)
    a = torch.tensor([0.0, 0, 1], dtype=torch.float64)
    R = rotation_between(a, -a)
    assert torch.allclose(R @ a, -a) and float(rotation_angle(R)) == pytest.approx(math.pi)
