"""STD4DPipeline (tiny models, CPU): bit-exact save/load, batched CFG equals two forwards, prior
tokens (shapes, pooling, condition dependence), bad inputs, and the lossless release model (a real
stage 1-4 run on procedural scenes, exported, predicts the same noise as the trained stage)."""
import json
import os
import shutil

import pytest
import torch

from orster4d.generation.models.unet4d import run_unet
from orster4d.generation.pipeline import check_pipeline_folder, export_checkpoint, load_pipeline
from orster4d.generation.priors import prior_tokens, spatial_tokens, temporal_tokens
from orster4d.generation.training.tiny_assets import make_tiny_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("pipe") / "pipe")
    seed = int.from_bytes(os.urandom(2), "little")
    return make_tiny_pipeline(folder, seed=seed), folder


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_save_load_round_trip_is_bit_exact(saved):
    pipe, folder = saved
    back = load_pipeline(folder)
    for name in ("vae", "unet", "conditioner", "clip_encoder"):
        a, b = getattr(pipe, name).state_dict(), getattr(back, name).state_dict()
        assert a.keys() == b.keys(), name
        assert all(torch.equal(a[k], b[k]) for k in a), name
    public = lambda c: {k: v for k, v in dict(c).items() if not k.startswith("_")}  # noqa: E731
    assert public(back.scheduler.config) == public(pipe.scheduler.config)
    assert back.trajectory == pipe.trajectory and back.kinds == pipe.kinds and back.modes == pipe.modes
    o1 = pipe(prompt="a red ball bouncing", num_inference_steps=2, generator=_gen(5), return_priors=True)
    o2 = back(prompt="a red ball bouncing", num_inference_steps=2, generator=_gen(5), return_priors=True)
    assert torch.equal(o1.video, o2.video)
    assert all(torch.equal(o1.priors[k], o2.priors[k]) for k in o1.priors)
    # diffusers alone loads the unified UNet
    import diffusers

    unet = diffusers.UNet3DConditionModel.from_pretrained(os.path.join(folder, "unet"))
    assert all(torch.equal(v, pipe.unet.state_dict()[k]) for k, v in unet.state_dict().items())


@pytest.mark.parametrize("kind", ["text", "image", "static3d"])
def test_batched_cfg_equals_two_forward_passes(saved, kind):
    pipe, _ = saved
    tr = pipe.trajectory
    value = {"text": "a spotted pink blob morphing", "image": torch.rand(tr.height, tr.width, 3),
             "static3d": torch.rand(tr.num_frames, tr.height, tr.width, 3)}[kind]
    feats = pipe.encode_condition(kind, value)
    ctx, lat = pipe.condition_inputs(feats, kind, "orbit", guided=True)
    assert ctx.shape[0] == 2 and (lat is None) == (kind == "text")
    z = torch.randn(pipe.latent_shape(1))
    t = torch.tensor(int(torch.randint(1, 999, ())))
    s = float(torch.empty(()).uniform_(1.5, 6.0))
    got = pipe.guided_noise(z, t, ctx, lat, s)
    with torch.no_grad():
        eps_u = run_unet(pipe.unet, z, t.expand(1), ctx[:1])  # null condition: no latent input
        eps_c = run_unet(pipe.unet, z + (lat[1:] if lat is not None else 0), t.expand(1), ctx[1:])
    want = eps_u + s * (eps_c - eps_u)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(eps_c, eps_u, atol=1e-6)  # the condition reaches the UNet
    assert torch.count_nonzero(ctx[0, :-1]) == 0  # the unconditional branch keeps only the mode token


@pytest.mark.parametrize("scheduler", ["DDIMScheduler", "EulerDiscreteScheduler"])
def test_denoising_loop_with_any_scheduler_equals_a_step_by_step_loop(saved, scheduler):
    """The pipeline's loop (the one denoising loop of the package) under a scheduler with and one
    without input scaling (Euler: ``init_noise_sigma > 1``, ``scale_model_input`` divides) equals
    the scheduler driven by hand with guidance from two separate UNet forwards; a seeded generator
    gives the same video twice."""
    import diffusers

    from orster4d.generation.models.vae import decode_latents
    from orster4d.generation.pipeline import STD4DPipeline

    base, _ = saved
    make = lambda: getattr(diffusers, scheduler).from_config(base.scheduler.config)  # noqa: E731
    pipe = STD4DPipeline(vae=base.vae, unet=base.unet, scheduler=make(), conditioner=base.conditioner,
                         clip_encoder=base.clip_encoder, trajectory=base.config.trajectory,
                         prior_blocks=base.config.prior_blocks, prior_budget=base.config.prior_budget)
    prompt, steps, s = "a ringed green top spinning", 3, 3.0
    noise = torch.randn(pipe.latent_shape(1), generator=_gen(11))
    got = pipe(prompt=prompt, num_inference_steps=steps, guidance_scale=s, latents=noise).video

    ctx, lat = pipe.condition_inputs(pipe.encode_condition("text", prompt), "text", "orbit", guided=True)
    assert lat is None
    sched = make()
    sched.set_timesteps(steps)
    z = noise * sched.init_noise_sigma
    with torch.no_grad():
        for t in sched.timesteps:
            zin = sched.scale_model_input(z, t)
            eps_u = run_unet(pipe.unet, zin, t.expand(1), ctx[:1])
            eps_c = run_unet(pipe.unet, zin, t.expand(1), ctx[1:])
            z = sched.step(eps_u + s * (eps_c - eps_u), t, z).prev_sample
        want = decode_latents(pipe.vae, z)[0]
    assert got.shape == (pipe.trajectory.num_frames, pipe.trajectory.height, pipe.trajectory.width, 3)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    a = pipe(prompt=prompt, num_inference_steps=2, guidance_scale=s, generator=_gen(4)).video
    b = pipe(prompt=prompt, num_inference_steps=2, guidance_scale=s, generator=_gen(4)).video
    assert torch.equal(a, b) and torch.isfinite(a).all()


def test_prior_tokens_shapes_and_condition_dependence(saved, tmp_path):
    from orster4d.generation.priors import save_priors
    from orster4d.recon.deformation import load_priors

    pipe, _ = saved
    run = lambda p, seed=3: pipe(prompt=p, num_inference_steps=3, generator=_gen(seed), return_priors=True).priors  # noqa
    a, a2, b = run("a striped red hopper hopping"), run("a striped red hopper hopping"), run("a ringed green top spinning")
    block = int(pipe.config.prior_blocks["spatial"][0].split(".")[1])  # down_blocks.<i>.attentions.<j>
    c_s = pipe.unet.config.block_out_channels[block]
    h = pipe.latent_shape()[3]
    assert a["spatial"].shape == (min(8, h) ** 2, c_s)  # 64-token budget on a 4x4 latent grid: 16 tokens
    assert a["temporal"].shape[0] == min(pipe.config.prior_budget[1], pipe.trajectory.num_frames)
    assert all(torch.equal(a[k], a2[k]) for k in a)
    assert all(not torch.allclose(a[k], b[k]) for k in a)
    save_priors(a, tmp_path / "priors.pt")
    back = load_priors(tmp_path / "priors.pt")
    assert all(torch.equal(back[k], a[k]) for k in a)


def test_pooling_matches_an_independent_computation():
    C, T, h, w = 5, 6, 8, 8
    f = torch.randn(C, T, h, w)
    s = spatial_tokens([f], 16)  # 4x4 cells of 2x2 latent pixels, averaged over time
    want = f.mean(1).reshape(C, 4, 2, 4, 2).mean((2, 4)).reshape(C, 16).T
    torch.testing.assert_close(s, want)
    t = temporal_tokens([f], 3)  # 3 tokens of 2 frames each, averaged over the grid
    torch.testing.assert_close(t, f.mean((2, 3)).reshape(C, 3, 2).mean(2).T)
    g = torch.randn(7, T, 4, 4)
    both = prior_tokens([f, g], [f, g], (64, 16))
    assert both["spatial"].shape == (16, C + 7) and both["temporal"].shape == (T, C + 7)
    with pytest.raises(ValueError, match="no tapped features"):
        prior_tokens([], [f])


def test_bad_inputs_name_the_problem(saved, tmp_path):
    pipe, folder = saved
    tr = pipe.trajectory
    with pytest.raises(ValueError, match="prompt: expected a non-empty string"):
        pipe(prompt="  ")
    with pytest.raises(ValueError, match="exactly one condition"):
        pipe(prompt="a ball", image=torch.rand(tr.height, tr.width, 3))
    with pytest.raises(ValueError, match="exactly one condition"):
        pipe()
    with pytest.raises(ValueError, match=r"image: expected shape \[32, 32, 3\]"):
        pipe(image=torch.rand(16, 16, 3))
    with pytest.raises(ValueError, match=r"image: expected shape .* got \[32, 32, 4\]"):
        pipe(image=torch.rand(tr.height, tr.width, 4))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        pipe(image=torch.rand(tr.height, tr.width, 3) * 3)
    with pytest.raises(ValueError, match=r"static_video: expected shape \[8, 32, 32, 3\]"):
        pipe(static_video=torch.rand(5, tr.height, tr.width, 3))
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe(prompt="a ball", num_inference_steps=0)
    text_only = make_tiny_pipeline(kinds=("text",), modes=("orbit",))
    with pytest.raises(ValueError, match=r"condition kind 'image': this model was trained for \['text'\] only"):
        text_only(image=torch.rand(tr.height, tr.width, 3))
    with pytest.raises(ValueError, match="video mode 'static'"):
        text_only(prompt="a ball", mode="static")
    # model folders missing a component
    for piece, pattern in ((os.path.join("conditioner", "config.json"), "component 'conditioner'"),
                           (os.path.join("unet", "diffusion_pytorch_model.safetensors"), "'unet' .* no weights"),
                           ("model_index.json", "no model_index.json")):
        bad = tmp_path / piece.replace(os.sep, "_")
        shutil.copytree(folder, bad)
        os.remove(bad / piece)
        with pytest.raises(FileNotFoundError, match=pattern):
            load_pipeline(str(bad))
    bad = tmp_path / "noclip"
    shutil.copytree(folder, bad)
    shutil.rmtree(bad / "clip_encoder")
    with pytest.raises(FileNotFoundError, match="clip_encoder"):
        check_pipeline_folder(str(bad))


# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stage4_run(tmp_path_factory):
    """Stages 1-4 (two steps each) on two procedural scenes (prompts, static videos, reference views)."""
    from helpers import tiny_overrides

    from orster4d.data.render import generate_scene
    from orster4d.generation.training.config import resolve_config
    from orster4d.generation.training.tiny_assets import make_tiny_assets
    from orster4d.generation.training.trainer import Trainer

    root = tmp_path_factory.mktemp("s4")
    ws = make_tiny_assets(str(root / "assets"))
    ws["data"] = str(root / "data")
    os.makedirs(ws["data"])
    for i, fam in enumerate(("hopper", "pendulum")):
        generate_scene(root / "scenes" / fam, fam, seed=i, num_frames=8, width=32, height=32, num_views=2,
                       num_gaussians=300, elevation_deg=20.0)
        os.symlink(root / "scenes" / fam / "orbital", os.path.join(ws["data"], fam))
    out = str(root / "run")
    for stage in (1, 2, 3, 4):
        cfg = resolve_config("tiny", stage, overrides=tiny_overrides(ws, out, steps=2))
        Trainer(cfg, progress=False).train()
    return ws, out


def test_stage4_release_model_is_the_trained_model(stage4_run, tmp_path):
    ws, out = stage4_run
    final = os.path.join(out, "stage4", "final")
    for stage in (1, 2, 3, 4):
        rec = json.load(open(os.path.join(out, f"stage{stage}", "final", "model", "trajectory.json")))
        assert rec["source"] == "data" and rec["trajectory"]["elevation_deg"] == 20.0
        assert rec["trajectory"]["num_frames"] == 8
    pipe = load_pipeline(export_checkpoint(final, str(tmp_path / "pipe")))
    assert pipe.kinds == ["text", "image", "static3d"] and pipe.modes == ["orbit", "static", "reference"]
    assert pipe.trajectory.elevation_deg == 20.0

    from orster4d.generation.training.config import load_config
    from orster4d.generation.training.stages import Stage4

    cfg = load_config(os.path.join(final, "config.json"))
    cfg["init"] = os.path.join(out, "stage3", "final")
    stage = Stage4(cfg, torch.device("cpu"))
    stage.load_model(os.path.join(final, "model"))
    stage.eval()
    tr = pipe.trajectory
    z = torch.randn(pipe.latent_shape(1))
    t = torch.tensor([int(torch.randint(1, 999, ()))])
    for kind, value, batch in (("text", "a ringed yellow hopper hopping", {"prompt": ["a ringed yellow hopper hopping"]}),
                               ("image", None, None), ("static3d", None, None)):
        if kind == "image":
            value = torch.rand(tr.height, tr.width, 3)
            batch = {"video": value[None, None]}
        if kind == "static3d":
            value = torch.rand(tr.num_frames, tr.height, tr.width, 3)
            batch = {"static_video": value[None]}
        for mode in pipe.modes:
            with torch.no_grad():
                feats = stage.frozen.encoders[kind](batch)
                ctx, lat = stage.cond(feats, torch.tensor([stage.kinds.index(kind)]),
                                      torch.tensor([stage.modes.index(mode)]), tr.num_frames)
                trained = stage.predict(z, t, ctx, latent_cond=lat)[0]
            p_ctx, p_lat = pipe.condition_inputs(pipe.encode_condition(kind, value), kind, mode, guided=False)
            released = pipe.guided_noise(z, t[0], p_ctx, p_lat, 1.0)
            torch.testing.assert_close(released, trained, rtol=1e-5, atol=1e-6)


def test_export_with_ema_weights_and_procedural_prompts(stage4_run):
    from safetensors.torch import load_file

    from orster4d.data.procedural import make_object, object_prompt
    from orster4d.generation.pipeline import pipeline_from_checkpoint

    ws, out = stage4_run
    meta = json.load(open(os.path.join(ws["data"], "hopper", "transforms.json")))
    assert meta["prompt"] == object_prompt(make_object("hopper", 0, 300)) and meta["prompt"].endswith("hopper hopping")
    final = os.path.join(out, "stage4", "final")
    plain, ema = pipeline_from_checkpoint(final), pipeline_from_checkpoint(final, ema=True)
    shadow = load_file(os.path.join(final, "ema.safetensors"))
    name = "conv_in.weight"
    assert torch.equal(ema.unet.state_dict()[name], shadow["unet." + name])
    assert not torch.equal(plain.unet.state_dict()[name], shadow["unet." + name])


def test_export_refuses_other_stages_and_existing_folders(stage4_run, tmp_path):
    _, out = stage4_run
    with pytest.raises(ValueError, match="stage-3 checkpoint"):
        export_checkpoint(os.path.join(out, "stage3", "final"), str(tmp_path / "p"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        export_checkpoint(os.path.join(out, "stage4", "final"), str(tmp_path / "full"))


def test_stage4_without_prompts_is_an_error(tmp_path):
    from helpers import make_videos, tiny_overrides

    from orster4d.generation.training.config import resolve_config
    from orster4d.generation.training.data import write_video_folder
    from orster4d.generation.training.stages import condition_data

    root = make_videos(str(tmp_path / "d"), n=1)
    write_video_folder(os.path.join(root, "noprompt"), torch.rand(8, 32, 32, 3).numpy(),
                       static=torch.rand(8, 32, 32, 3).numpy())
    ws = {"data": root, "vae": "v", "teacher_spatial": "s", "teacher_temporal": "t", "clip": "c"}
    cfg = resolve_config("tiny", 4, overrides=tiny_overrides(ws, str(tmp_path / "o")))
    with pytest.raises(ValueError, match="noprompt/transforms.json has no 'prompt'"):
        condition_data(cfg, ["text", "image"])
    assert condition_data(cfg, ["image", "static3d"]) == ["orbit", "static"]  # no reference frames in this data
    cfg["cond"]["modes"] = ["orbit", "reference"]
    with pytest.raises(ValueError, match="reference-view frames"):
        condition_data(cfg, ["image"])


@pytest.mark.parametrize("kind", ["text", "image", "static3d"])
def test_bfloat16_pipeline_runs_every_condition(saved, kind):
    """A pipeline cast to bf16 (the CUDA default of orster4d-generate) takes float32 inputs of each
    kind: every encoder casts what it is given to its own dtype."""
    _, folder = saved
    pipe = load_pipeline(folder, dtype=torch.bfloat16)
    tr = pipe.trajectory
    cond = {"text": {"prompt": "a red ball bouncing"}, "image": {"image": torch.rand(tr.height, tr.width, 3)},
            "static3d": {"static_video": torch.rand(tr.num_frames, tr.height, tr.width, 3)}}[kind]
    out = pipe(**cond, num_inference_steps=2, generator=_gen(3), return_priors=True)
    assert out.video.shape == (tr.num_frames, tr.height, tr.width, 3)
    assert torch.isfinite(out.video.float()).all()
    assert all(torch.isfinite(v.float()).all() for v in out.priors.values())
