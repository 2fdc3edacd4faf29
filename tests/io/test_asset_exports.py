"""Asset folders: reading them, the SuperSplat PLY sequence, the whole export step, and MP4 turntables."""
import json
import re

import numpy as np
import pytest
import torch

from orster4d.data.procedural_asset import write_procedural_asset
from orster4d.io.asset import export_asset, export_supersplat_sequence, read_asset, rgb_to_sh_dc, sh_dc_to_rgb
from orster4d.io.ply import write_ply
from orster4d.io.video import mp4_available, read_video_frame_count, write_gif, write_mp4

# SuperSplat treats a multi-file drop as one animation when every name matches this with the same
# prefix (group 1), and orders the frames by the number (group 2).
SUPERSPLAT_SEQUENCE = re.compile(r"(.*?)(\d+)(?:\.compressed)?\.ply$")


@pytest.fixture
def asset(tmp_path, rng_seed):
    return write_procedural_asset(tmp_path / "asset", family="bird", seed=rng_seed % 1000, num_frames=5,
                                  num_gaussians=200, size=64)


def test_read_asset_matches_the_object(asset, rng_seed):
    from orster4d.cameras import OrbitTrajectory
    from orster4d.data.procedural import make_object

    a = read_asset(asset)
    traj = OrbitTrajectory(num_frames=5, width=64, height=64)
    g = make_object("bird", rng_seed % 1000, 200).gaussians(traj.times())
    assert a.num_frames == 5 and a.num_gaussians == g["means"].shape[1]
    torch.testing.assert_close(a.means, g["means"])
    torch.testing.assert_close(a.scales, g["scales"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(a.colors, g["colors"].expand(5, -1, -1), rtol=0, atol=1e-6)
    torch.testing.assert_close(a.opacities, g["opacities"].expand(5, -1), rtol=0, atol=1e-6)
    qn = g["quats"] / g["quats"].norm(dim=-1, keepdim=True)
    torch.testing.assert_close(a.quats, qn, rtol=0, atol=1e-6)
    torch.testing.assert_close(a.times, traj.times())
    assert a.trajectory.to_dict() == traj.to_dict() and a.background == (1.0, 1.0, 1.0)


def test_sh_dc_round_trip(rng_seed):
    rgb = torch.rand(100, 3)
    torch.testing.assert_close(sh_dc_to_rgb(rgb_to_sh_dc(rgb)), rgb)


def test_read_asset_errors(tmp_path, asset):
    with pytest.raises(ValueError, match="no 'gaussians/'"):
        read_asset(tmp_path / "nothing")
    (asset / "gaussians" / "t_0002.ply").unlink()
    with pytest.raises(ValueError, match="without gaps"):
        read_asset(asset)
    n = 3
    write_ply(asset / "gaussians" / "t_0002.ply", torch.zeros(n, 3), torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
              torch.zeros(n, 3), torch.zeros(n), torch.zeros(n, 1, 3))
    with pytest.raises(ValueError, match="all frames must match"):
        read_asset(asset)


def test_supersplat_sequence(asset):
    paths = export_supersplat_sequence(asset)
    src = sorted((asset / "gaussians").glob("t_*.ply"))
    assert len(paths) == len(src) == 5
    names = [p.name for p in paths]
    matches = [SUPERSPLAT_SEQUENCE.match(n.lower()) for n in names]
    assert all(matches) and len({m.group(1) for m in matches}) == 1
    by_number = sorted(paths, key=lambda p: int(SUPERSPLAT_SEQUENCE.match(p.name).group(2)))
    for i, p in enumerate(by_number):
        assert p.read_bytes() == (asset / "gaussians" / f"t_{i:04d}.ply").read_bytes()
    assert set((asset / "supersplat").iterdir()) == set(paths)  # nothing else in the drop folder
    with pytest.raises(ValueError, match="prefix"):
        export_supersplat_sequence(asset, prefix="f1_")


def test_export_asset(asset):
    out = export_asset(asset, splat_frame=2, splatv_segments=2)
    assert out["splat"].stat().st_size == 32 * read_asset(asset).num_gaussians
    assert out["splatv"].is_file() and len(out["supersplat"]) == 5
    saved = json.loads((asset / "splatv_error.json").read_text())
    assert saved == out["splatv_error"] and saved["segments"] == 2
    with pytest.raises(ValueError, match="unknown export formats"):
        export_asset(asset, formats=("splat", "obj"))
    with pytest.raises(ValueError, match="splat_frame"):
        export_asset(asset, splat_frame=5)


def test_reading_and_exporting_an_asset_imports_no_higher_layer(asset):
    """io stands below the two halves: reading and exporting an asset load only io and the shared
    modules (``Asset.canonical`` / ``deformation_field`` import ``recon`` when called)."""
    import os
    import subprocess
    import sys

    import orster4d

    code = ("import sys; from orster4d.io.asset import export_asset, read_asset; "
            f"a = read_asset({str(asset)!r}); a.colors; export_asset(a.folder); "
            "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('orster4d.')}))")
    root = os.path.dirname(os.path.dirname(orster4d.__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    loaded = set(eval(out.stdout.strip().splitlines()[-1]))
    assert "io" in loaded and loaded <= {"io", "cameras", "sh", "quaternions"}, loaded


def test_mp4_and_gif(tmp_path, rng_seed):
    ok, why = mp4_available()
    assert ok, why  # imageio-ffmpeg is a dependency: a default install writes MP4
    # smooth random images (H.264 keeps them close); odd sizes are padded to even for yuv420p
    frames = torch.nn.functional.interpolate(torch.rand(7, 3, 3, 4), size=(33, 45), mode="bilinear",
                                             align_corners=True).permute(0, 2, 3, 1)
    write_mp4(tmp_path / "a.mp4", frames, fps=12)
    write_gif(tmp_path / "a.gif", frames, fps=12)
    assert read_video_frame_count(tmp_path / "a.mp4") == 7
    assert read_video_frame_count(tmp_path / "a.gif") == 7
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(tmp_path / "a.mp4"))
    meta = next(reader)
    assert tuple(meta["size"]) == (46, 34)
    first = np.frombuffer(next(reader), np.uint8).reshape(34, 46, 3)[:33, :45]
    assert np.abs(first / 255.0 - frames[0].numpy()).mean() < 0.03  # lossy, but close on smooth images
