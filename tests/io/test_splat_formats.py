"""``.splat`` and ``.splatv`` read back by parsers written here with ``struct`` (not the writers' numpy layouts)."""
import json
import math
import struct

import numpy as np
import pytest
import torch

from orster4d.io.splat import write_splat
from orster4d.io.splatv import write_splatv


def random_gaussians(n, gen):
    means = torch.randn(n, 3, generator=gen)
    quats = torch.randn(n, 4, generator=gen)
    scales = torch.rand(n, 3, generator=gen) * 0.1 + 0.005
    opac = torch.rand(n, generator=gen)
    colors = torch.rand(n, 3, generator=gen)
    return means, quats, scales, opac, colors


def parse_splat(path):
    raw = path.read_bytes()
    assert len(raw) % 32 == 0
    recs = []
    for off in range(0, len(raw), 32):
        vals = struct.unpack_from("<6f8B", raw, off)
        recs.append((vals[0:3], vals[3:6], vals[6:10], vals[10:14]))
    return recs


def test_splat_records(tmp_path, rng_seed):
    gen = torch.Generator().manual_seed(rng_seed)
    n = 257
    means, quats, scales, opac, colors = random_gaussians(n, gen)
    path = tmp_path / "a.splat"
    assert write_splat(path, means, quats, scales, opac, colors) == n
    recs = parse_splat(path)
    assert len(recs) == n
    # match every record to its Gaussian by position (exact float32)
    key = {tuple(np.float32(means[i].numpy())): i for i in range(n)}
    importance = []
    qn = quats / quats.norm(dim=-1, keepdim=True)
    for pos, sc, rgba, rot in recs:
        i = key[tuple(np.float32(pos))]
        np.testing.assert_allclose(sc, scales[i].numpy(), rtol=1e-6)
        want = [*colors[i].tolist(), float(opac[i])]
        assert all(abs(b / 255.0 - w) <= 0.5 / 255 + 1e-6 for b, w in zip(rgba, want)), (rgba, want)
        decoded = (np.array(rot) - 128.0) / 128.0
        assert np.abs(decoded - np.clip(qn[i].numpy(), -1, 127 / 128)).max() <= 0.5 / 128 + 1e-6
        importance.append(float(opac[i]) * float(scales[i].prod()))
    assert all(a >= b - 1e-12 for a, b in zip(importance, importance[1:])), "records not in decreasing importance"


def test_splat_rejects_log_scales(tmp_path):
    means, quats, scales, opac, colors = random_gaussians(4, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="scales must be > 0"):
        write_splat(tmp_path / "a.splat", means, quats, scales.log(), opac, colors)
    with pytest.raises(ValueError, match="quats must have shape"):
        write_splat(tmp_path / "a.splat", means, quats[:, :3], scales, opac, colors)


def half(bits):
    return struct.unpack("<e", struct.pack("<H", bits))[0]


def parse_splatv(path):
    """Returns the header and per-splat dicts decoded from the 16-word records."""
    raw = path.read_bytes()
    magic, jlen = struct.unpack_from("<II", raw, 0)
    assert magic == 0x674B
    header = json.loads(raw[8:8 + jlen].decode("utf-8"))
    body = raw[8 + jlen:]
    assert len(body) == header[0]["size"] == header[0]["texwidth"] * header[0]["texheight"] * 16
    splats = []
    for off in range(0, len(body), 64):
        w = struct.unpack_from("<16I", body, off)
        if w == (0,) * 16:
            continue  # texture padding
        h2 = lambda u: (half(u & 0xFFFF), half(u >> 16))  # noqa: E731
        pos = struct.unpack("<3f", struct.pack("<3I", *w[0:3]))
        quat = h2(w[3]) + h2(w[4])
        scale = h2(w[5]) + h2(w[6])[:1]
        rgba = struct.unpack("<4B", struct.pack("<I", w[7]))
        motion = sum((h2(w[8 + k]) for k in range(4)), ()) + h2(w[12])[:1]
        omega = h2(w[13]) + h2(w[14])
        center, tscale = h2(w[15])
        splats.append(dict(pos=np.array(pos), quat=np.array(quat), scale=np.array(scale), rgba=rgba,
                           motion=np.array(motion), omega=np.array(omega), center=center, tscale=tscale))
    return header, splats


def at_time(s, t):
    """The splaTV viewer's reading of one splat at time t: position, unit quaternion, temporal opacity factor."""
    dt = t - s["center"]
    m = s["motion"]
    pos = s["pos"] + m[0:3] * dt + m[3:6] * dt ** 2 + m[6:9] * dt ** 3
    q = s["quat"] + s["omega"] * dt
    return pos, q / np.linalg.norm(q), math.exp(-((dt / s["tscale"]) ** 2))


def test_splatv_exact_motion(tmp_path, rng_seed):
    """Motion of the form the format stores (cubic centre path, linear quaternion, fixed scale) comes back."""
    gen = torch.Generator().manual_seed(rng_seed)
    T, n = 6, 40
    times = torch.linspace(0, 1, T)
    p0, _, scales, opac, colors = random_gaussians(n, gen)
    c = torch.randn(3, n, 3, generator=gen) * 0.2
    dt = (times - 0.5)[:, None, None]
    means = p0[None] + c[0] * dt + c[1] * dt ** 2 + c[2] * dt ** 3
    q0 = torch.randn(n, 4, generator=gen)
    q0 = q0 / q0.norm(dim=-1, keepdim=True)
    w = torch.randn(n, 4, generator=gen) * 0.3
    quats = q0[None] + w[None] * dt
    err = write_splatv(tmp_path / "a.splatv", means, quats, scales[None].expand(T, n, 3), opac, colors, times)
    assert err["position_max"] < 2e-3 and err["rotation_rms_deg"] < 0.5 and err["log_scale_rms"] < 1e-3, err
    header, splats = parse_splatv(tmp_path / "a.splatv")
    assert header[0]["type"] == "splat" and header[0]["cameras"] == []
    assert len(splats) == n
    for i in range(n):
        s = min(splats, key=lambda s: np.abs(s["pos"] - p0[i].numpy()).max())
        for f in range(T):
            pos, q, wt = at_time(s, float(times[f]))
            np.testing.assert_allclose(pos, means[f, i].numpy(), atol=3e-3)
            qt = (quats[f, i] / quats[f, i].norm()).numpy()
            assert abs(abs(np.dot(q, qt)) - 1) < 1e-3
            assert wt > 0.99
        np.testing.assert_allclose(s["scale"], scales[i].numpy(), rtol=2e-3)
        assert abs(s["rgba"][3] / 255 - float(opac[i])) <= 0.5 / 255 + 1e-6


def test_splatv_procedural_error_and_segments(tmp_path, rng_seed):
    """On a procedural object the reported error is the parsed file's; more segments fit better."""
    from orster4d.cameras import OrbitTrajectory
    from orster4d.data.procedural import make_object

    T = 8
    traj = OrbitTrajectory(num_frames=T)
    g = make_object("walker", rng_seed % 100, 300).gaussians(traj.times())
    n = g["means"].shape[1]
    errs = {}
    for seg in (1, 4):
        path = tmp_path / f"s{seg}.splatv"
        errs[seg] = write_splatv(path, g["means"], g["quats"], g["scales"], g["opacities"], g["colors"], traj.times(),
                                 segments=seg, trajectory=traj)
        header, splats = parse_splatv(path)
        assert len(splats) == seg * n and len(header[0]["cameras"]) == T
        cam = header[0]["cameras"][1]
        vm = traj.viewmats()[1].double().numpy()
        np.testing.assert_allclose(np.array(cam["rotation"]), vm[:3, :3].T, atol=1e-6)
        np.testing.assert_allclose(np.array(cam["position"]), -vm[:3, :3].T @ vm[:3, 3], atol=1e-6)
        # recompute the position RMS from the parsed file: the copy with the largest temporal weight per Gaussian
        d2 = []
        for f in range(T):
            t = float(traj.times()[f])
            evals = [at_time(s, t) for s in splats]
            for i in range(n):
                best = max(range(seg), key=lambda k: evals[k * n + i][2])
                d2.append(float(((evals[best * n + i][0] - g["means"][f, i].numpy()) ** 2).sum()))
        assert math.isclose(math.sqrt(np.mean(d2)), errs[seg]["position_rms"], rel_tol=1e-3, abs_tol=1e-6)
    assert errs[4]["position_rms"] < errs[1]["position_rms"], errs


def test_splatv_rejects_bad_input(tmp_path):
    means, quats, scales, opac, colors = random_gaussians(5, torch.Generator().manual_seed(0))
    T = 3
    m, q, s = means[None].expand(T, 5, 3), quats[None].expand(T, 5, 4), scales[None].expand(T, 5, 3)
    with pytest.raises(ValueError, match="strictly increasing"):
        write_splatv(tmp_path / "a.splatv", m, q, s, opac, colors, torch.tensor([0.0, 0.5, 0.5]))
    with pytest.raises(ValueError, match="segments"):
        write_splatv(tmp_path / "a.splatv", m, q, s, opac, colors, torch.linspace(0, 1, T), segments=4)
    with pytest.raises(ValueError, match="opacities"):
        write_splatv(tmp_path / "a.splatv", m, q, s, opac[:4], colors, torch.linspace(0, 1, T))
