"""STD-4D diffusion: disentanglement VAE, two-channel UNet, merge, teachers' hooks, conditions.

"Merged form" (checked below): ``STD4DUNet.forward_merged`` evaluates the spatial channel with its
temporal sub-blocks replaced by the temporal channel's, on Z4D directly (no disentanglement, no
fusion). The folder written by ``merge`` must load with ``UNet3DConditionModel.from_pretrained``
alone and reproduce ``forward_merged`` to float32 rounding (atol 1e-5); in the ablation without
disentangling, the two-channel model's own output is exactly the merged UNet's.
"""
import json
import os

import pytest
import torch

from helpers import make_videos
from orster4d.generation.teachers import load_teachers, promised_shape
from orster4d.generation.models.unet4d import FeatureTaps, STD4DUNet, is_temporal_param
from orster4d.generation.models.vae import DisentanglementVAE, decode_latents, encode_video, load_image_vae
from orster4d.generation.training.tiny_assets import TINY_TEACHER_MAP, TINY_UNET, make_tiny_assets

diffusers = pytest.importorskip("diffusers")

S_TAPS = ["down_blocks.0.attentions.0"]
T_TAPS = ["down_blocks.0.temp_attentions.0"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return make_tiny_assets(str(tmp_path_factory.mktemp("assets")), seed=0)


def _inputs(b=2, t=8, hw=4):
    z = torch.randn(b, 4, t, hw, hw)
    ts = torch.randint(0, 1000, (b,))
    ctx = torch.randn(b, 3, TINY_UNET["cross_attention_dim"])
    return z, ts, ctx


def _backbone():
    return diffusers.UNet3DConditionModel(**TINY_UNET).eval()  # eval: the temporal convs have dropout


def _perturb(module, scale=0.05):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


def test_image_vae_roundtrip_shapes(assets):
    vae = load_image_vae(assets["vae"])
    video = torch.rand(2, 8, 32, 32, 3)
    z = encode_video(vae, video)
    assert z.shape == (2, 4, 8, 4, 4)
    x = decode_latents(vae, z)
    assert x.shape == video.shape and float(x.min()) >= 0 and float(x.max()) <= 1
    with pytest.raises(ValueError, match="video"):
        encode_video(vae, torch.rand(2, 8, 32, 32))


def test_image_vae_missing_weights(tmp_path, assets):
    import shutil

    d = tmp_path / "vae"
    shutil.copytree(assets["vae"], d)
    os.remove(d / "diffusion_pytorch_model.safetensors")
    with pytest.raises(FileNotFoundError, match="diffusion_pytorch_model.safetensors"):
        load_image_vae(str(d))


def test_disentanglement_vae_kl_and_reparam():
    dv = DisentanglementVAE(latent_channels=4, hidden=8)
    _perturb(dv, 0.3)
    z = torch.randn(2, 4, 8, 4, 4)
    det = dv(z, sample=False)
    for key, which in (("zs", "spatial"), ("zt", "temporal")):
        mean, logvar = dv.encode(z, which)
        assert torch.equal(det[key], mean) and mean.shape == z.shape
    # KL of N(mean - z, exp(logvar)) against N(0, 1), averaged per element, summed over both codes.
    ref = 0.0
    for which in ("spatial", "temporal"):
        mean, logvar = dv.encode(z, which)
        q = torch.distributions.Normal(mean - z, torch.exp(0.5 * logvar))
        ref = ref + torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).mean()
    torch.testing.assert_close(det["kl"], ref, rtol=1e-4, atol=1e-5)
    g = torch.Generator().manual_seed(1)
    s1 = dv(z, sample=True, generator=g)
    g = torch.Generator().manual_seed(1)
    s2 = dv(z, sample=True, generator=g)
    assert torch.equal(s1["zs"], s2["zs"]) and not torch.equal(s1["zs"], det["zs"])
    assert 0.0 <= float(det["ortho"].detach()) <= 1.0
    s1["kl"].backward()
    assert all(p.grad is not None for p in dv.parameters())


def test_two_channel_init_reproduces_backbone():
    """Identity-initialised disentanglement + averaging fusion: at init the two-channel model is the
    backbone it was built from (deterministic posterior)."""
    bb = _backbone()
    _perturb(bb)
    m = STD4DUNet.from_backbone(bb).eval()
    z, t, ctx = _inputs()
    with torch.no_grad():
        ref = bb(z, t, encoder_hidden_states=ctx).sample
        out = m(z, t, ctx, sample_posterior=False)["eps"]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_merge_folder_matches_merged_form(tmp_path):
    bb = _backbone()
    m = STD4DUNet.from_backbone(bb).eval()
    _perturb(m.spatial)
    _perturb(m.temporal)  # the channels now differ in every sub-block
    folder = tmp_path / "merged"
    m.merge(str(folder))
    loaded = diffusers.UNet3DConditionModel.from_pretrained(str(folder)).eval()
    sd, ss, st = loaded.state_dict(), m.spatial.state_dict(), m.temporal.state_dict()
    n_temporal = 0
    for k, v in sd.items():
        src = st if is_temporal_param(k) else ss
        n_temporal += is_temporal_param(k)
        assert torch.equal(v, src[k]), k
    assert 0 < n_temporal < len(sd)
    z, t, ctx = _inputs()
    with torch.no_grad():
        got = loaded(z, t, encoder_hidden_states=ctx).sample
        want = m.forward_merged(z, t, ctx)
        spatial_only = m.spatial(z, t, encoder_hidden_states=ctx).sample
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert (got - spatial_only).abs().max() > 1e-3  # the temporal channel's blocks really are in it


def test_no_disentangle_is_exactly_the_merged_unet(tmp_path):
    m = STD4DUNet(TINY_UNET, mode="no_disentangle").eval()
    _perturb(m.spatial)
    m.merge(str(tmp_path / "m"))
    loaded = diffusers.UNet3DConditionModel.from_pretrained(str(tmp_path / "m")).eval()
    z, t, ctx = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(m(z, t, ctx)["eps"], loaded(z, t, encoder_hidden_states=ctx).sample,
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["two_channel", "no_spatial", "no_temporal", "no_disentangle"])
def test_ablation_modes_and_taps(mode):
    m = STD4DUNet(TINY_UNET, mode=mode, spatial_taps=S_TAPS, temporal_taps=T_TAPS)
    assert (m.spatial is None) == (mode == "no_spatial")
    assert (m.temporal is None) == (mode in ("no_temporal", "no_disentangle"))
    assert (m.dvae is None) == (mode == "no_disentangle")
    z, t, ctx = _inputs()
    out = m(z, t, ctx, capture=True)
    assert out["eps"].shape == z.shape
    for name in S_TAPS:
        assert out["spatial_features"][name].shape == promised_shape(TINY_UNET, name, 2, 8, 4, 4)
    for name in T_TAPS:
        assert out["temporal_features"][name].shape == promised_shape(TINY_UNET, name, 2, 8, 4, 4)
    out["eps"].square().mean().backward()
    assert any(p.grad is not None for p in m.parameters())


def test_student_tap_must_exist():
    with pytest.raises(ValueError, match="down_blocks.7.attentions.0"):
        STD4DUNet(TINY_UNET, spatial_taps=["down_blocks.7.attentions.0"])
    with pytest.raises(ValueError, match="mode"):
        STD4DUNet(TINY_UNET, mode="three_channel")


def test_save_and_load_pretrained(tmp_path):
    m = STD4DUNet(TINY_UNET, spatial_taps=S_TAPS, temporal_taps=T_TAPS).eval()
    _perturb(m)
    m.save_pretrained(str(tmp_path / "m"))
    m2 = STD4DUNet.from_pretrained(str(tmp_path / "m")).eval()
    z, t, ctx = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(m(z, t, ctx, sample_posterior=False)["eps"],
                                   m2(z, t, ctx, sample_posterior=False)["eps"])
    os.remove(tmp_path / "m" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        STD4DUNet.from_pretrained(str(tmp_path / "m"))


def _saved_models():
    from orster4d.generation.models.conditions import CLIPConditionEncoder, ConditionAdapter, STD4DConditioner
    from orster4d.generation.models.unet4d import FusionFFN
    from orster4d.generation.training.tiny_assets import TINY_CLIP
    from orster4d.generation.orster import OrsterTransfer
    from orster4d.generation.training.losses import OrsterTransferLoss

    return [
        STD4DUNet(TINY_UNET, mode="no_spatial", fusion_hidden=16, dvae_hidden=8, temporal_taps=T_TAPS),
        FusionFFN(latent_channels=4, hidden=16, cond_dim=32, use_spatial=False),
        DisentanglementVAE(latent_channels=4, hidden=8, init_logvar=-5.0),
        ConditionAdapter("image", context_dim=32, image_embed_dim=24),
        OrsterTransfer(32, 16, kernel_dim=8, lambda_o=0.25, student_temporal_channels=32),
        OrsterTransferLoss(TINY_TEACHER_MAP, [32, 16], [32, 32], lambda_o=0.7, options={"kernel_dim": 4}),
        STD4DConditioner(kinds=["text", "static3d"], context_dim=32, text_width=16, text_length=5,
                         latent_channels=4, modes=["orbit", "reference"]),
        CLIPConditionEncoder(model_cfg=TINY_CLIP),
    ]


N_SAVED = 8


@pytest.mark.parametrize("index", range(N_SAVED))
def test_every_saved_model_is_a_diffusers_model_and_round_trips_bit_exactly(tmp_path, index):
    """ModelMixin + ConfigMixin for every saved part: config.json holds the constructor's
    arguments, the weights come back bit for bit, and a folder of another class is refused."""
    from diffusers import ConfigMixin, ModelMixin

    m = _saved_models()[index]
    assert isinstance(m, ModelMixin) and isinstance(m, ConfigMixin)
    _perturb(m, 0.3)  # away from the initialisation, so a fresh init cannot pass
    m.save_pretrained(str(tmp_path / "m"))
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["_class_name"] == type(m).__name__
    m2 = type(m).from_pretrained(str(tmp_path / "m"))
    a, b = m.state_dict(), m2.state_dict()
    assert a.keys() == b.keys() and len(a) > 0
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    own = {k: v for k, v in m.config.items() if not k.startswith("_")}
    assert {k: m2.config[k] for k in own} == json.loads(json.dumps(own))
    other = _saved_models()[(index + 1) % N_SAVED]
    with pytest.raises(ValueError, match=f"describes a {type(m).__name__}"):
        type(other).from_pretrained(str(tmp_path / "m"))


def test_teacher_hooks_return_promised_shapes(assets):
    teachers = load_teachers(assets["teacher_spatial"], assets["teacher_temporal"], TINY_TEACHER_MAP)
    z, t, _ = _inputs(b=2, t=8, hw=4)
    for entry in TINY_TEACHER_MAP:
        te = teachers[entry["teacher"]]
        assert not te.unet.training and not any(p.requires_grad for p in te.unet.parameters())
        feats = te(z, t)
        want = promised_shape(dict(te.unet.config), entry["block"], 2, 8, 4, 4)
        assert tuple(feats[entry["block"]].shape) == want, entry
        assert torch.isfinite(feats[entry["block"]]).all()
    # The temporal teacher is narrower (16/32 channels): the promise follows its own config.
    assert promised_shape(dict(teachers["temporal"].unet.config), TINY_TEACHER_MAP[1]["block"], 2, 8, 4, 4)[1] == 16


def test_teacher_stops_after_last_hooked_block(assets):
    """The teacher skips the layers behind its last hook; its features equal a full pass's."""
    teachers = load_teachers(assets["teacher_spatial"], assets["teacher_temporal"], TINY_TEACHER_MAP)
    te = teachers["spatial"]
    z, t, _ = _inputs(b=2, t=8, hw=4)
    ran = []
    handle = te.unet.up_blocks[-1].register_forward_hook(lambda *a: ran.append(1))
    try:
        early = te(z, t)
        assert ran == [], "the up blocks behind the hooked down block must not run"
        full = FeatureTaps(te.unet, te.blocks, "full pass")
        full.active, full.num_frames = True, z.shape[2]
        with torch.no_grad():
            te.unet(z, t, encoder_hidden_states=torch.zeros(2, 1, te.unet.config.cross_attention_dim),
                    return_dict=False)
        full.remove()
        assert ran == [1]
    finally:
        handle.remove()
    for name in te.blocks:
        torch.testing.assert_close(early[name], full.features[name].float(), rtol=0, atol=0)


def test_i2vgen_xl_teacher_hooks(tmp_path):
    torch.manual_seed(0)
    unet = diffusers.I2VGenXLUNet(down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                                  up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
                                  block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
                                  cross_attention_dim=32, attention_head_dim=8, num_attention_heads=None)
    unet.save_pretrained(str(tmp_path / "i2v"))
    tmap = [{"teacher": "temporal", "block": "down_blocks.0.temp_attentions.0", "student": "x"},
            {"teacher": "spatial", "block": "down_blocks.0.attentions.0", "student": "y"}]
    teachers = load_teachers(str(tmp_path / "i2v"), str(tmp_path / "i2v"), tmap)
    z, t, _ = _inputs()
    f = teachers["temporal"](z, t)["down_blocks.0.temp_attentions.0"]
    assert tuple(f.shape) == promised_shape(dict(unet.config), "down_blocks.0.temp_attentions.0", 2, 8, 4, 4)


def test_teacher_bad_inputs(tmp_path, assets):
    with pytest.raises(FileNotFoundError, match="spatial teacher"):
        load_teachers(str(tmp_path / "nope"), assets["teacher_temporal"], TINY_TEACHER_MAP)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    with pytest.raises(ValueError, match="temporal teacher.*does not load"):
        load_teachers(assets["teacher_spatial"], str(bad), TINY_TEACHER_MAP)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"_class_name": "UNet3DConditionModel",
                                                    "block_out_channels": [32, 64], "norm_num_groups": 8}))
    (broken / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="spatial teacher.*does not load"):
        load_teachers(str(broken), assets["teacher_temporal"], TINY_TEACHER_MAP)
    tmap = [{"teacher": "spatial", "block": "down_blocks.0.attentions.5", "student": "down_blocks.0.attentions.0"}]
    with pytest.raises(ValueError, match="down_blocks.0.attentions.5"):
        load_teachers(assets["teacher_spatial"], assets["teacher_temporal"], tmap)


def test_conditions(assets, tmp_path):
    from orster4d.generation.models.conditions import ConditionAdapter, ConditionEncoder, load_clip

    clip = load_clip(assets["clip"])
    vae = load_image_vae(assets["vae"])
    make_videos(str(tmp_path / "v"), n=1)
    from orster4d.generation.training.data import OrbitalVideoDataset

    item = OrbitalVideoDataset(str(tmp_path / "v"), 8, 32)[0]
    batch = {"video": item["video"][None].repeat(2, 1, 1, 1, 1), "prompt": ["a toy", "a cat"],
             "static_video": item["static_video"][None].repeat(2, 1, 1, 1, 1)}
    keep = torch.tensor([True, False])
    for kind in ("text", "image", "static3d"):
        enc = ConditionEncoder(kind, clip=clip, vae=vae)
        dims = enc.feature_dims()
        ad = ConditionAdapter(kind, context_dim=32, text_width=dims["text_width"],
                              image_embed_dim=dims["image_embed_dim"])
        ctx, lat = ad(enc(batch), keep, 8)
        assert ctx.shape[0] == 2 and ctx.shape[2] == 32
        assert ctx[0].abs().sum() > 0 and ctx[1].abs().sum() == 0  # dropped sample = null condition
        if kind == "text":
            assert lat is None and ctx.shape[1] == clip.context_length
        else:
            assert lat.shape == (2, 4, 8, 4, 4)
    os.remove(os.path.join(assets["clip"], "open_clip_model.safetensors"))
    try:
        with pytest.raises(FileNotFoundError, match="open_clip_model.safetensors"):
            load_clip(assets["clip"])
    finally:
        from orster4d.generation.training.tiny_assets import make_tiny_clip
        make_tiny_clip(assets["clip"], 3)


def test_gradient_checkpointing_keeps_loss_and_gradients():
    """Block recomputation (used on GPU) gives the same loss and gradients, tapped features included."""
    m = STD4DUNet(TINY_UNET, spatial_taps=S_TAPS, temporal_taps=T_TAPS)
    _perturb(m)
    z, t, ctx = _inputs()

    def run():
        torch.manual_seed(7)  # dropout of the temporal convs draws from the global RNG
        m.zero_grad()
        out = m(z, t, ctx, generator=torch.Generator().manual_seed(3), capture=True)
        feats = list(out["spatial_features"].values()) + list(out["temporal_features"].values())
        loss = out["eps"].square().mean() + sum(f.abs().mean() for f in feats)
        loss.backward()
        return loss.detach(), {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}

    l0, g0 = run()
    m.enable_gradient_checkpointing()
    assert all(getattr(b, "_orster_ckpt", False) for ch in m.channels() for b in ch.down_blocks)
    l1, g1 = run()
    torch.testing.assert_close(l1, l0)
    assert g0.keys() == g1.keys() and len(g0) > 0
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=1e-4, atol=1e-6, msg=k)
