"""Camera conventions: OpenCV <-> Blender/NeRF conversions, look-at, orbital trajectories."""
import json
import math

import pytest
import torch

from orster4d.cameras import (OrbitTrajectory, camera_centers, fov_from_intrinsics, intrinsics_from_fov, look_at,
                              orbit_cameras, orbit_viewmats, rigid_inverse, transform_matrix_to_viewmat,
                              viewmat_to_transform_matrix)


def _random_rigid(n, dtype=torch.float64):
    q = torch.nn.functional.normalize(torch.randn(n, 4, dtype=dtype), dim=-1)
    w, x, y, z = q.unbind(-1)
    R = torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                     2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                     2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(n, 3, 3)
    M = torch.zeros(n, 4, 4, dtype=dtype)
    M[:, :3, :3] = R
    M[:, :3, 3] = 3 * torch.randn(n, 3, dtype=dtype)
    M[:, 3, 3] = 1
    return M


def test_transform_matrix_round_trip(rng_seed):
    c2w = _random_rigid(16)
    vm = transform_matrix_to_viewmat(c2w)
    torch.testing.assert_close(viewmat_to_transform_matrix(vm), c2w)
    vm2 = _random_rigid(16)
    torch.testing.assert_close(transform_matrix_to_viewmat(viewmat_to_transform_matrix(vm2)), vm2)
    torch.testing.assert_close(rigid_inverse(vm2), torch.linalg.inv(vm2))


def test_conversion_matches_axis_conventions(rng_seed):
    # A Blender camera at c looking along its -z with +y up: a world point in front of it (along
    # its -z axis) must land on the OpenCV +z axis, and its +y (up) must become OpenCV -y.
    c2w = _random_rigid(4)
    vm = transform_matrix_to_viewmat(c2w)
    centre = c2w[:, :3, 3]
    front = centre - 2.0 * c2w[:, :3, 2]
    up = centre + 1.5 * c2w[:, :3, 1]
    to_cam = lambda p: (vm[:, :3, :3] @ p[..., None])[..., 0] + vm[:, :3, 3]  # noqa: E731
    torch.testing.assert_close(to_cam(front), torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64).expand(4, 3))
    torch.testing.assert_close(to_cam(up), torch.tensor([0.0, -1.5, 0.0], dtype=torch.float64).expand(4, 3))
    torch.testing.assert_close(camera_centers(vm), centre)


def test_look_at_projects_target_to_centre(rng_seed):
    eye = 4 * torch.randn(8, 3, dtype=torch.float64)
    target = torch.randn(8, 3, dtype=torch.float64)
    vm = look_at(eye, target)
    pc = (vm[:, :3, :3] @ target[..., None])[..., 0] + vm[:, :3, 3]
    torch.testing.assert_close(pc[:, :2], torch.zeros(8, 2, dtype=torch.float64))
    torch.testing.assert_close(pc[:, 2], (target - eye).norm(dim=-1))
    # world up (z) points to image up (-y) for a point above the target
    above = target + torch.tensor([0, 0, 0.1], dtype=torch.float64)
    pa = (vm[:, :3, :3] @ above[..., None])[..., 0] + vm[:, :3, 3]
    assert bool((pa[:, 1] < 0).all())
    torch.testing.assert_close(camera_centers(vm), eye)
    with pytest.raises(ValueError, match="parallel"):
        look_at(torch.tensor([0.0, 0.0, 3.0]), torch.zeros(3))


def test_intrinsics_fov_round_trip():
    fov = 20 + 100 * torch.rand(()).item()
    K = intrinsics_from_fov(fov, 64, 48)
    assert K[0, 2] == 32 and K[1, 2] == 24 and K[0, 0] == K[1, 1]
    assert math.isclose(fov_from_intrinsics(K, 64), fov, rel_tol=1e-5)
    with pytest.raises(ValueError, match="fov_x_deg"):
        intrinsics_from_fov(190, 64, 64)


def test_orbit_trajectory_follows_spec(tmp_path):
    T = int(torch.randint(2, 20, ()).item())
    el = float(torch.empty(()).uniform_(-30, 60))
    r = float(torch.empty(()).uniform_(1, 5))
    centre = torch.randn(3).tolist()
    tr = OrbitTrajectory(num_frames=T, elevation_deg=el, radius=r, center=centre, width=40, height=30)
    i = torch.arange(T, dtype=torch.float64)
    torch.testing.assert_close(tr.azimuths_deg(), 360 * i / T)
    torch.testing.assert_close(tr.times(), (i / (T - 1)).float())
    c = camera_centers(tr.viewmats().double()) - torch.tensor(centre, dtype=torch.float64)
    torch.testing.assert_close(c.norm(dim=-1), torch.full((T,), r, dtype=torch.float64), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.rad2deg(torch.asin(c[:, 2] / r)), torch.full((T,), el, dtype=torch.float64),
                               rtol=1e-4, atol=1e-3)
    # azimuth 0 on the -y side, then towards +x
    assert c[0, 1] < 0 and abs(float(c[0, 0])) < 1e-5
    if T >= 4:
        assert c[1, 0] > 0
    assert tr.Ks().shape == (T, 3, 3)
    tr.save(tmp_path / "trajectory.json")
    tr2 = OrbitTrajectory.load(tmp_path / "trajectory.json")
    assert tr2 == tr
    torch.testing.assert_close(tr2.viewmats(), tr.viewmats())
    torch.testing.assert_close(orbit_viewmats(tr.azimuths_deg(), el, r, centre), tr.viewmats())


def test_trajectory_bad_files(tmp_path):
    p = tmp_path / "trajectory.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="trajectory.json"):
        OrbitTrajectory.load(p)
    p.write_text(json.dumps({"num_frames": 4, "wobble": 1}))
    with pytest.raises(ValueError, match="wobble"):
        OrbitTrajectory.load(p)
    with pytest.raises(ValueError, match="num_frames"):
        OrbitTrajectory(num_frames=0)


def test_orbit_cameras_place_and_aim(rng_seed):
    az = 360 * torch.rand(3, 5, dtype=torch.float64)
    el, radius, fov, w, h = 30 * torch.rand(()).item(), 1 + 4 * torch.rand(()).item(), 50.0, 64, 48
    centre = torch.randn(3, dtype=torch.float64)
    vm, K = orbit_cameras(az, el, radius, fov, w, h, center=centre.tolist(), dtype=torch.float64)
    assert vm.shape == (3, 5, 4, 4) and K.shape == (3, 5, 3, 3)
    a, e = torch.deg2rad(az), math.radians(el)  # azimuth 0 on -y, towards +x as it grows
    expect = centre + radius * torch.stack([math.cos(e) * a.sin(), -math.cos(e) * a.cos(),
                                            torch.full_like(a, math.sin(e))], -1)
    torch.testing.assert_close(camera_centers(vm), expect)
    pc = (vm[..., :3, :3] @ centre[:, None])[..., 0] + vm[..., :3, 3]  # the centre projects to the image centre
    pix = (K @ pc[..., None])[..., 0]
    torch.testing.assert_close(pix[..., :2] / pix[..., 2:], torch.tensor([w / 2, h / 2], dtype=torch.float64).expand(3, 5, 2))
    assert math.isclose(fov_from_intrinsics(K[0, 0], w), fov, rel_tol=1e-9)
    with pytest.raises(ValueError, match="radius"):
        orbit_cameras([0.0], 10.0, 0.0, fov, w, h)
