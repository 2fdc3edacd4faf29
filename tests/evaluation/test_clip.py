"""CLIP-F / CLIP-O with a tiny open_clip model saved to disk, against an independent computation;
the 36 CLIP-O cameras sit at the right azimuths, elevation and distance."""
import math

import pytest
import torch
import torch.nn.functional as F

from orster4d.cameras import OrbitTrajectory, camera_centers
from orster4d.evaluation.asset import render_asset
from orster4d.data.procedural_asset import write_procedural_asset
from orster4d.io.asset import read_asset
from orster4d.evaluation.clip_score import ClipScorer, clip_scores, orbit_cameras
from orster4d.evaluation.weights import load_clip

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073])
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711])


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from orster4d.generation.training.tiny_assets import make_tiny_clip

    d = tmp_path_factory.mktemp("clip") / "clip"
    make_tiny_clip(str(d), seed=int(torch.randint(0, 1000, ())))
    return d


def test_36_cameras_at_the_right_azimuths_and_distance(rng_seed):
    gen = torch.Generator().manual_seed(rng_seed)
    elev, radius = float(torch.rand((), generator=gen) * 50 - 10), float(torch.rand((), generator=gen) * 3 + 1)
    off = float(torch.rand((), generator=gen) * 360)
    centre = (torch.randn(3, generator=gen) * 0.3).tolist()
    traj = OrbitTrajectory(num_frames=4, elevation_deg=elev, radius=radius, azimuth_offset_deg=off, center=centre,
                           fov_deg=35.0, width=40, height=30)
    az, vm, K = orbit_cameras(traj)
    assert vm.shape == (36, 4, 4) and K.shape == (36, 3, 3)
    rel = camera_centers(vm.double()) - torch.tensor(centre, dtype=torch.float64)
    torch.testing.assert_close(rel.norm(dim=-1), torch.full((36,), radius, dtype=torch.float64), atol=1e-5, rtol=0)
    got_el = torch.rad2deg(torch.asin(rel[:, 2] / rel.norm(dim=-1)))
    torch.testing.assert_close(got_el, torch.full((36,), elev, dtype=torch.float64), atol=1e-4, rtol=0)
    # azimuth 0 is on the -y side, growing towards +x
    got_az = torch.rad2deg(torch.atan2(rel[:, 0], -rel[:, 1])) % 360
    want = (off + 10.0 * torch.arange(36, dtype=torch.float64)) % 360
    diff = (got_az - want + 180) % 360 - 180
    assert float(diff.abs().max()) < 1e-3
    # every camera looks at the centre (optical axis = third row of R)
    fwd = vm.double()[:, 2, :3]
    torch.testing.assert_close(fwd, -rel / rel.norm(dim=-1, keepdim=True), atol=1e-5, rtol=0)
    assert float(K[0, 0, 0]) == pytest.approx(0.5 * 40 / math.tan(math.radians(17.5)), rel=1e-6)


def _independent_embed(model, images):
    size = model.visual.image_size
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    x = F.interpolate(images.permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=False)
    x = (x - MEAN[:, None, None]) / STD[:, None, None]
    return model.encode_image(x)


def test_clip_scores_match_an_independent_computation(clip_dir, tmp_path, one_thread):
    import open_clip

    model = load_clip(clip_dir)
    traj = OrbitTrajectory(num_frames=3, width=32, height=32, radius=2.6)
    asset = read_asset(write_procedural_asset(tmp_path / "a", "waver", 1, num_gaussians=150, trajectory=traj))
    scorer = ClipScorer(model)
    prompt = "a small waving creature"
    with torch.no_grad():
        text = model.encode_text(open_clip.tokenize([prompt], context_length=model.context_length))[0]
        got = clip_scores(asset, scorer, scorer.condition(prompt=prompt), backend="cpu", num_views=8)
        az, vm, K = orbit_cameras(traj, 8)
        sims = []
        for i in range(asset.num_frames):
            imgs = render_asset(asset, asset.times[i:i + 1].expand(8), vm, K, 32, 32, backend="cpu")
            sims.append(F.cosine_similarity(_independent_embed(model, imgs), text[None], dim=-1))
        sims = torch.stack(sims)  # [T, 8]
    assert got["clip_o"] == pytest.approx(float(sims.mean()), abs=1e-5)
    assert got["clip_f"] == pytest.approx(float(sims[:, 0].mean()), abs=1e-5)
    # an image condition: the front render itself scores 1 against its own front view
    front = render_asset(asset, asset.times[:1], vm[:1], K[:1], 32, 32, backend="cpu")[0]
    emb = scorer.condition(image=front)
    with torch.no_grad():
        again = clip_scores(asset, scorer, emb, backend="cpu", num_views=8)
        own = F.cosine_similarity(_independent_embed(model, front[None]), scorer.embed_images(front[None]), dim=-1)
    assert float(own) == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= again["clip_o"] <= 1.0 and -1.0 <= again["clip_f"] <= 1.0 + 1e-6
    with pytest.raises(ValueError, match="one prompt or one image"):
        scorer.condition(prompt="x", image=front)
