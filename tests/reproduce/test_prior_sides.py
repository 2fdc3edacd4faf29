"""The construction's per-side prior switch (``prior_sides``, ``orster4d-construct --prior-sides``):
the tokens of a side switched off do not reach the fitted field, those of the other side do."""
import json

import pytest
import torch

from orster4d.cli.construct import main as construct_cli
from orster4d.data import generate_scene
from orster4d.recon import ConstructConfig, InputError, construct
from orster4d.recon.config import select_prior_sides
from orster4d.recon.deformation import DeformationField

SIZE, FRAMES = 16, 4
FLAGS = dict(coarse_iters=2, fine_iters=4, init_points=100, max_sh_degree=0, coarse_batch=2, hexplane_channels=4,
             hexplane_resolution=[4, 4], mlp_width=8, lambda_lpips=0.0, hexplane_backend="grid_sample",
             rasterizer_backend="cpu", eval_max_frames=4, lr_mlp=1e-2, exports=[], tensorboard=False,
             preview_every=0, checkpoint_every=0, progress=False)


@pytest.fixture(scope="module")
def scene(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("scene")
    generate_scene(root, "waver", seed=3, num_frames=FRAMES, width=SIZE, height=SIZE, num_views=2,
                   num_gaussians=150, radius=2.6, backend="cpu")
    g = torch.Generator().manual_seed(0)
    base = {"spatial": torch.randn(6, 5, generator=g), "temporal": torch.randn(FRAMES, 3, generator=g)}
    files = {}
    for name, change in (("base", None), ("spatial", "spatial"), ("temporal", "temporal")):
        p = {k: v.clone() for k, v in base.items()}
        if change:
            p[change] = torch.randn(p[change].shape, generator=g) * 3
        files[name] = root / f"priors_{name}.pt"
        torch.save(p, files[name])
    return root, files


def _fit(scene, tmp_path, priors, sides):
    root, files = scene
    out = tmp_path / f"{priors}_{'_'.join(sides)}"
    cfg = ConstructConfig(input=str(root / "orbital"), output=str(out), static=str(root / "static"),
                          priors=str(files[priors]), prior_sides=list(sides), **FLAGS)
    construct(cfg, log=lambda s: None)
    return DeformationField.from_pretrained(out / "deformation").state_dict()


def _same(a, b):
    """Equal fields, the prior buffers aside (those hold the tokens given)."""
    return all(torch.equal(a[k], b[k]) for k in a if not k.startswith("prior_"))


@pytest.mark.parametrize("on,off", [("spatial", "temporal"), ("temporal", "spatial")])
def test_tokens_of_the_side_switched_off_do_not_reach_the_field(scene, tmp_path, on, off):
    base = _fit(scene, tmp_path, "base", [on])
    assert _same(base, _fit(scene, tmp_path, off, [on]))  # other tokens on the off side: the same field
    assert not _same(base, _fit(scene, tmp_path, on, [on]))  # other tokens on the on side: another field
    assert not base[f"prior_{off}"].any() and base[f"prior_{off}"].shape[0] == 1


def test_with_both_sides_either_side_reaches_the_field(scene, tmp_path):
    base = _fit(scene, tmp_path, "base", ["spatial", "temporal"])
    for side in ("spatial", "temporal"):
        assert not _same(base, _fit(scene, tmp_path, side, ["spatial", "temporal"])), side


def test_cli_flag_and_bad_values(scene, tmp_path, capsys):
    root, files = scene
    out = tmp_path / "cli"
    argv = [str(root / "orbital"), "-o", str(out), "--priors", str(files["base"]), "--prior-sides", "temporal",
            "--coarse-iters", "2", "--fine-iters", "1", "--init-points", "100", "--sh-degree", "0",
            "--hexplane-resolution", "4", "4", "--hexplane-backend", "grid_sample", "--lambda-lpips", "0",
            "--rasterizer-backend", "cpu", "--exports", "none", "--no-progress"]
    assert construct_cli(argv) == 0
    saved = json.loads((out / "config.json").read_text())["construct"]
    assert saved["prior_sides"] == ["temporal"]
    with pytest.raises(SystemExit):
        construct_cli(argv[:5] + ["--prior-sides", "colour"])
    assert "--prior-sides" in capsys.readouterr().err
    for sides, msg in (([], "prior_sides"), (["spatial", "spatial"], "prior_sides"), (["x"], "prior_sides")):
        with pytest.raises(InputError, match=msg):
            select_prior_sides({}, sides)
    cfg = ConstructConfig(input=str(root / "orbital"), output=str(tmp_path / "n"), prior_sides=["spatial"], **FLAGS)
    with pytest.raises(InputError, match="no priors file"):
        construct(cfg, log=lambda s: None)
    assert not (tmp_path / "n").exists()
