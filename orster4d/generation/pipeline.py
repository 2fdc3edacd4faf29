"""``STD4DPipeline``: the released STD-4D model as a diffusers ``DiffusionPipeline``.

Components (one folder, ``save_pretrained`` / ``from_pretrained``):

- ``vae``: the frozen image VAE (``AutoencoderKL``), frame by frame;
- ``unet``: the unified 4D-UNet (a standard ``UNet3DConditionModel``, trained by stages 3 and 4);
- ``scheduler``: any diffusers scheduler (DDIM by default, with the training noise schedule);
- ``conditioner``: :class:`~orster4d.generation.models.conditions.STD4DConditioner`, the condition
  adapters and video-mode tokens stage 4 trained (it records the trained kinds and modes);
- ``clip_encoder``: :class:`~orster4d.generation.models.conditions.CLIPConditionEncoder`, the frozen
  CLIP (needed for the text and image kinds; absent otherwise).

Configuration beside them (``model_index.json``): ``trajectory`` (the orbital trajectory the model
was trained on: frames, elevation, radius, field of view, size), ``prior_blocks`` (the UNet blocks
whose features become the prior tokens) and ``prior_budget`` (spatial, temporal token counts).

``pipe(prompt=... | image=... | static_video=..., num_inference_steps, guidance_scale, generator)``
returns the orbital video ``[T, H, W, 3]`` in [0, 1] and, with ``return_priors=True``, the prior
tokens ``{"spatial": O_s [Ns, Cs], "temporal": O_t [Nt, Ct]}`` (see :mod:`orster4d.generation.priors`).
Classifier-free guidance runs the unconditional and the conditional branch in one batched UNet
forward: ``eps = eps_u + s (eps_c - eps_u)``.

A stage-4 checkpoint becomes a pipeline folder with :func:`export_checkpoint`, or::

    python -m orster4d.generation.pipeline CHECKPOINT -o PIPELINE_FOLDER [--vae DIR] [--clip DIR] [--ema]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from orster4d.generation.models.conditions import (CLIPConditionEncoder, STD4DConditioner, clip_image_embedding,
                                                   clip_text_tokens)
from orster4d.generation.models.unet4d import FeatureTaps, run_unet
from orster4d.generation.models.vae import decode_latents, encode_video, vae_downscale
from orster4d.generation.priors import DEFAULT_BUDGET, prior_tokens

REQUIRED_COMPONENTS = ("vae", "unet", "scheduler", "conditioner")


@dataclass
class STD4DPipelineOutput(BaseOutput):
    """``video [T, H, W, 3]`` float32 in [0, 1] (CPU); ``priors``: ``{"spatial": [Ns, Cs], "temporal":
    [Nt, Ct]}`` float32 (CPU) or None."""

    video: torch.Tensor
    priors: Optional[Dict[str, torch.Tensor]] = None


def default_prior_blocks(unet) -> Dict[str, list]:
    """The last spatial and temporal transformer of the deepest cross-attention down block."""
    for i in reversed(range(len(unet.down_blocks))):
        blk = unet.down_blocks[i]
        if hasattr(blk, "attentions") and hasattr(blk, "temp_attentions") and len(blk.attentions):
            j = len(blk.attentions) - 1
            return {"spatial": [f"down_blocks.{i}.attentions.{j}"], "temporal": [f"down_blocks.{i}.temp_attentions.{j}"]}
    raise ValueError("unet: no down block with spatial and temporal transformers to take prior tokens from")


class STD4DPipeline(DiffusionPipeline):
    """Condition (text, first-view image or static object's orbital video) -> orbital 4D video."""

    model_cpu_offload_seq = "clip_encoder->conditioner->unet->vae"
    _optional_components = ["clip_encoder"]

    def __init__(self, vae, unet, scheduler, conditioner, clip_encoder=None, trajectory: Optional[dict] = None,
                 prior_blocks: Optional[dict] = None, prior_budget: Optional[Sequence[int]] = None):
        super().__init__()
        from orster4d.cameras import OrbitTrajectory

        if trajectory is None:
            raise ValueError("STD4DPipeline: trajectory (the orbital trajectory the model was trained on) is required")
        traj = OrbitTrajectory.from_dict(dict(trajectory))
        needs_clip = [k for k in conditioner.kinds if k in ("text", "image")]
        if needs_clip and clip_encoder is None:
            raise ValueError(f"STD4DPipeline: condition kinds {needs_clip} need a clip_encoder component")
        prior_blocks = dict(prior_blocks) if prior_blocks else default_prior_blocks(unet)
        for role in ("spatial", "temporal"):
            for name in prior_blocks.get(role, []):
                try:
                    unet.get_submodule(name)
                except AttributeError:
                    raise ValueError(f"prior_blocks.{role}: block {name!r} does not exist in the unet") from None
        self.register_modules(vae=vae, unet=unet, scheduler=scheduler, conditioner=conditioner,
                              clip_encoder=clip_encoder)
        self.register_to_config(trajectory=traj.to_dict(), prior_blocks=prior_blocks,
                                prior_budget=list(prior_budget or DEFAULT_BUDGET))
        for m in (vae, unet, conditioner, clip_encoder):
            if m is not None:
                m.eval()  # the temporal convolutions of UNet3DConditionModel have dropout

    # -- facts ----------------------------------------------------------------------------------
    @property
    def trajectory(self):
        from orster4d.cameras import OrbitTrajectory

        return OrbitTrajectory.from_dict(dict(self.config.trajectory))

    @property
    def kinds(self) -> list:
        return list(self.conditioner.kinds)

    @property
    def modes(self) -> list:
        return list(self.conditioner.modes)

    def latent_shape(self, batch: int = 1) -> tuple:
        tr = self.trajectory
        f = vae_downscale(self.vae)
        return (batch, int(self.unet.config.in_channels), tr.num_frames, tr.height // f, tr.width // f)

    # -- inputs ---------------------------------------------------------------------------------
    def check_inputs(self, prompt=None, image=None, static_video=None, mode: str = "orbit",
                     num_inference_steps: int = 25, guidance_scale: float = 1.0):
        """Validate one condition; returns ``(kind, value)`` with ``value`` a prompt string, an image
        ``[H, W, 3]`` or a video ``[T, H, W, 3]`` float32 in [0, 1]. Raises ValueError naming the problem."""
        given = [(k, v) for k, v in (("text", prompt), ("image", image), ("static3d", static_video)) if v is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one condition (prompt=, image= or static_video=), got "
                             f"{[k for k, _ in given] or 'none'}")
        kind, value = given[0]
        if kind not in self.kinds:
            raise ValueError(f"condition kind {kind!r}: this model was trained for {self.kinds} only")
        self.conditioner.mode_index(mode)
        if int(num_inference_steps) < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if not float(guidance_scale) >= 0:
            raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale}")
        tr = self.trajectory
        if kind == "text":
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"prompt: expected a non-empty string, got {value!r}")
            return kind, value
        x = torch.as_tensor(np.asarray(value) if not torch.is_tensor(value) else value)
        want = (tr.height, tr.width, 3) if kind == "image" else (tr.num_frames, tr.height, tr.width, 3)
        name = "image" if kind == "image" else "static_video"
        if tuple(x.shape) != want:
            raise ValueError(f"{name}: expected shape {list(want)} ({'H, W, 3' if kind == 'image' else 'T, H, W, 3'}: "
                             f"the model's {tr.num_frames} frames of {tr.width}x{tr.height}), got {list(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{name}: expected float values in [0, 1], got {x.dtype}")
        x = x.float()
        if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise ValueError(f"{name}: values must be finite and in [0, 1]")
        return kind, x

    @torch.no_grad()
    def encode_condition(self, kind: str, value) -> Dict[str, torch.Tensor]:
        """Frozen features of one condition (batch 1), the keys ``STD4DConditioner`` reads."""
        dev = self.device
        if kind == "text":
            return {"text_tokens": clip_text_tokens(self.clip_encoder.clip, [value]).float()}
        if kind == "image":
            img = value.to(dev)[None]
            return {"image_embed": clip_image_embedding(self.clip_encoder.clip, img.to(self.clip_encoder.dtype)).float(),
                    "image_latent": encode_video(self.vae, img[:, None])}
        return {"static_latent": encode_video(self.vae, value.to(dev)[None])}

    # -- denoising ------------------------------------------------------------------------------
    def condition_inputs(self, feats: Dict[str, torch.Tensor], kind: str, mode: str, guided: bool):
        """Context ``[N, L, D]`` and latent input (or None) for ``N = 2`` (unconditional, conditional)
        when ``guided``, else ``N = 1`` (conditional)."""
        dev = self.device
        k, m = self.conditioner.kind_index(kind), self.conditioner.mode_index(mode)
        kind_ids = torch.tensor([-1, k] if guided else [k], device=dev)
        mode_ids = torch.full_like(kind_ids, m)
        feats = {key: torch.cat([v] * kind_ids.shape[0]) for key, v in feats.items()}
        ctx, lat = self.conditioner(feats, kind_ids, mode_ids, self.trajectory.num_frames)
        return ctx, lat

    def guided_noise(self, z: torch.Tensor, t, context: torch.Tensor, latent_cond: Optional[torch.Tensor],
                     guidance_scale: float) -> torch.Tensor:
        """Noise of ``z [1, C, T, h, w]`` at timestep ``t``; with 2 contexts, both branches in one
        batched forward combined as ``eps_u + guidance_scale * (eps_c - eps_u)``."""
        n = context.shape[0]
        zin = z.expand(n, *z.shape[1:])
        if latent_cond is not None:
            zin = zin + latent_cond
        tt = torch.as_tensor(t, device=z.device).reshape(-1).expand(n)
        dt = self.unet.dtype
        eps = run_unet(self.unet, zin.to(dt), tt, context.to(dt)).float()
        if n == 1:
            return eps
        eps_u, eps_c = eps.chunk(2)
        return eps_u + guidance_scale * (eps_c - eps_u)

    @torch.no_grad()
    def __call__(self, prompt: Optional[str] = None, image=None, static_video=None, mode: str = "orbit",
                 num_inference_steps: int = 25, guidance_scale: float = 3.0,
                 generator: Optional[torch.Generator] = None, return_priors: bool = False, prior_steps: int = 3,
                 latents: Optional[torch.Tensor] = None) -> STD4DPipelineOutput:
        """Generate one orbital video.

        Args:
            prompt | image | static_video: exactly one condition; ``image [H, W, 3]`` (the first view
                I0) and ``static_video [T, H, W, 3]`` float in [0, 1] at the model's trajectory size.
            mode: a trained video mode: ``orbit`` (default), ``static`` (motion off), ``reference``.
            guidance_scale: classifier-free guidance weight (1: conditional branch only).
            generator: seeds the initial noise (the scheduler is deterministic for DDIM).
            return_priors: also return O_s, O_t from the conditional branch, averaged over the
                last ``prior_steps`` denoising steps.
            latents: optional initial noise ``[1, C, T, h, w]`` instead of drawing it.
        Returns:
            :class:`STD4DPipelineOutput` (video ``[T, H, W, 3]``, priors or None).
        """
        kind, value = self.check_inputs(prompt, image, static_video, mode, num_inference_steps, guidance_scale)
        if int(prior_steps) < 1:
            raise ValueError(f"prior_steps must be >= 1, got {prior_steps}")
        dev = self.device
        shape = self.latent_shape(1)
        if latents is not None and tuple(latents.shape) != shape:
            raise ValueError(f"latents: expected shape {list(shape)}, got {list(latents.shape)}")
        guided = float(guidance_scale) != 1.0
        ctx, lat = self.condition_inputs(self.encode_condition(kind, value), kind, mode, guided)
        self.scheduler.set_timesteps(int(num_inference_steps), device=dev)
        if latents is None:
            gdev = generator.device if generator is not None else torch.device("cpu")
            latents = torch.randn(shape, generator=generator, device=gdev)
        z = latents.to(dev, torch.float32) * self.scheduler.init_noise_sigma
        taps, acc = self._prior_taps() if return_priors else (None, None)
        steps = list(self.scheduler.timesteps)
        try:
            for i, t in enumerate(self.progress_bar(steps)):
                capture = taps is not None and i >= len(steps) - int(prior_steps)
                if taps is not None:
                    for tp in taps.values():
                        tp.active, tp.num_frames, tp.features = capture, shape[2], {}
                eps = self.guided_noise(self.scheduler.scale_model_input(z, t), t, ctx, lat, float(guidance_scale))
                if capture:
                    self._accumulate(taps, acc)
                z = self.scheduler.step(eps, t, z).prev_sample
        finally:
            if taps is not None:
                for tp in taps.values():
                    tp.remove()
        video = decode_latents(self.vae, z)[0].float().cpu()
        priors = None
        if taps is not None:
            n = min(int(prior_steps), len(steps))
            mean = {role: [f / n for f in acc[role]] for role in acc}
            priors = prior_tokens(mean["spatial"], mean["temporal"], self.config.prior_budget)
        return STD4DPipelineOutput(video=video, priors=priors)

    def _prior_taps(self):
        taps = {role: FeatureTaps(self.unet, self.config.prior_blocks.get(role, []), f"prior_blocks.{role}")
                for role in ("spatial", "temporal")}
        return taps, {"spatial": None, "temporal": None}

    @staticmethod
    def _accumulate(taps, acc) -> None:
        """Add the conditional branch's (last sample's) tapped features ``[C, T, h, w]`` to ``acc``."""
        for role, tp in taps.items():
            feats = [tp.features[name][-1].float() for name in sorted(tp.features)]
            acc[role] = feats if acc[role] is None else [a + f for a, f in zip(acc[role], feats)]
            tp.active, tp.features = False, {}


# ------------------------------------------------------------------------------------------------
def check_pipeline_folder(folder: str) -> dict:
    """Raise FileNotFoundError naming the missing piece unless ``folder`` is a complete pipeline
    folder (``model_index.json`` and each listed component's config and weights); returns the index."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--model {folder}: pipeline folder not found")
    index_path = os.path.join(folder, "model_index.json")
    if not os.path.isfile(index_path):
        raise FileNotFoundError(f"--model {folder}: no model_index.json (not an STD4DPipeline folder; a stage-4 "
                                f"checkpoint is converted with 'python -m orster4d.generation.pipeline')")
    with open(index_path) as f:
        index = json.load(f)
    if index.get("_class_name") != "STD4DPipeline":
        raise ValueError(f"--model {folder}: model_index.json describes a {index.get('_class_name')}, "
                         f"expected STD4DPipeline")
    for name in REQUIRED_COMPONENTS:
        if not isinstance(index.get(name), list) or not isinstance(index[name][0], str):
            raise FileNotFoundError(f"--model {folder}: component '{name}' is not listed in model_index.json")
    for name, entry in index.items():
        if name.startswith("_") or not (isinstance(entry, list) and len(entry) == 2
                                        and all(isinstance(e, str) for e in entry)):
            continue  # not a component (a setting, or an absent optional component)
        sub = os.path.join(folder, name)
        cfg = "scheduler_config.json" if name == "scheduler" else "config.json"
        if not os.path.isfile(os.path.join(sub, cfg)):
            raise FileNotFoundError(f"--model {folder}: component '{name}' ({entry[1]}) is missing: "
                                    f"{os.path.join(sub, cfg)} not found")
        if name != "scheduler" and not any(n.endswith((".safetensors", ".bin")) for n in os.listdir(sub)):
            raise FileNotFoundError(f"--model {folder}: component '{name}' ({entry[1]}) has no weights file "
                                    f"(*.safetensors) in {sub}")
    with open(os.path.join(folder, "conditioner", "config.json")) as f:
        kinds = json.load(f).get("kinds", [])
    needs_clip = [k for k in kinds if k in ("text", "image")]
    if needs_clip and (index.get("clip_encoder") or [None])[0] is None:
        raise FileNotFoundError(f"--model {folder}: the model was trained for the {needs_clip} condition(s) but "
                                f"its clip_encoder component is missing")
    return index


def load_pipeline(folder: str, device="cpu", dtype: torch.dtype = torch.float32) -> STD4DPipeline:
    """Check ``folder`` (:func:`check_pipeline_folder`), then ``STD4DPipeline.from_pretrained`` on
    ``device``, every component cast to ``dtype`` whatever dtype its weights were saved in (float16-saved
    weights load as float32 by default; diffusers keeps the saved dtype on some loading paths)."""
    from orster4d.generation.models.base import diffusers_load_kwargs

    from diffusers.utils import logging as diffusers_logging

    check_pipeline_folder(folder)
    bar = diffusers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()  # loading takes a second: no "Loading pipeline components" bar
    try:
        pipe = STD4DPipeline.from_pretrained(folder, **diffusers_load_kwargs())
    finally:
        if bar:
            diffusers_logging.enable_progress_bar()
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # no "modules to keep in float32: []" notice per component
    try:
        return pipe.to(torch.device(device)).to(dtype)  # a cast that works on every diffusers version
    finally:
        diffusers_logging.set_verbosity(level)


def _ema_state(checkpoint: str) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = os.path.join(checkpoint, "ema.safetensors")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{checkpoint}: no ema.safetensors (--ema needs the trainer's EMA weights)")
    return load_file(path)


def pipeline_from_checkpoint(checkpoint: str, vae_dir: Optional[str] = None, clip_dir: Optional[str] = None,
                             ema: bool = False) -> STD4DPipeline:
    """The pipeline of a stage-4 checkpoint folder (``.../stage4/final`` or ``checkpoint-N``).

    The unified UNet is ``model/merged_unet``, the conditioner ``model/cond``, the trajectory
    ``model/trajectory.json``; the image VAE and CLIP come from the folders the checkpoint's
    ``config.json`` names (``model.vae_dir``, ``cond.clip_dir``) unless ``vae_dir`` / ``clip_dir`` are
    given; the scheduler is DDIM with the training noise schedule. ``ema``: use the trainer's EMA
    weights instead of the last step's.
    """
    from diffusers import DDIMScheduler, UNet3DConditionModel

    from orster4d.generation.models.base import diffusers_load_kwargs
    from orster4d.generation.models.vae import load_image_vae
    from orster4d.generation.teachers import validate_teacher_map

    state_path = os.path.join(checkpoint, "state.json")
    if not os.path.isfile(state_path):
        raise FileNotFoundError(f"{checkpoint}: not a training checkpoint (no state.json)")
    with open(state_path) as f:
        stage = json.load(f).get("stage")
    if stage != 4:
        raise ValueError(f"{checkpoint}: a stage-{stage} checkpoint; the pipeline is made from stage 4's")
    with open(os.path.join(checkpoint, "config.json")) as f:
        cfg = json.load(f)
    model = os.path.join(checkpoint, "model")
    with open(os.path.join(model, "trajectory.json")) as f:
        trajectory = json.load(f)["trajectory"]
    unet = UNet3DConditionModel.from_pretrained(os.path.join(model, "merged_unet"), **diffusers_load_kwargs())
    conditioner = STD4DConditioner.from_pretrained(os.path.join(model, "cond"))
    if ema:
        shadow = _ema_state(checkpoint)
        for prefix, module in (("unet.", unet), ("cond.", conditioner)):
            sub = {k[len(prefix):]: v for k, v in shadow.items() if k.startswith(prefix)}
            missing = module.load_state_dict(sub, strict=False).unexpected_keys
            if missing:
                raise ValueError(f"{checkpoint}/ema.safetensors: unexpected keys {missing[:3]}")
    vae = load_image_vae(vae_dir or cfg["model"]["vae_dir"])
    clip = None
    if any(k in ("text", "image") for k in conditioner.kinds):
        cdir = clip_dir or cfg["cond"]["clip_dir"]
        if not cdir:
            raise ValueError(f"{checkpoint}: the model uses CLIP; pass clip_dir (the checkpoint names none)")
        clip = CLIPConditionEncoder.from_open_clip_folder(cdir)
    n = cfg["noise"]
    scheduler = DDIMScheduler(num_train_timesteps=n["num_train_timesteps"], beta_schedule=n["beta_schedule"],
                              beta_start=n["beta_start"], beta_end=n["beta_end"], clip_sample=False,
                              set_alpha_to_one=False)
    tm = validate_teacher_map(cfg["teachers"]["map"])
    blocks = {role: [e["student"] for e in tm if e["teacher"] == role] for role in ("spatial", "temporal")}
    return STD4DPipeline(vae=vae, unet=unet, scheduler=scheduler, conditioner=conditioner, clip_encoder=clip,
                         trajectory=trajectory, prior_blocks=blocks)


def export_checkpoint(checkpoint: str, output: str, overwrite: bool = False, **kwargs) -> str:
    """Write the pipeline of a stage-4 checkpoint (:func:`pipeline_from_checkpoint`) to ``output``."""
    if os.path.exists(output) and os.listdir(output) and not overwrite:
        raise FileExistsError(f"{output}: folder exists and is not empty; pass --overwrite")
    pipeline_from_checkpoint(checkpoint, **kwargs).save_pretrained(output)
    return output


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m orster4d.generation.pipeline",
                                description="Turn a stage-4 checkpoint folder into an STD4DPipeline folder.")
    p.add_argument("checkpoint", help="stage-4 checkpoint folder (e.g. runs/orster4d/stage4/final)")
    p.add_argument("-o", "--output", required=True, help="pipeline folder to write")
    p.add_argument("--vae", help="image VAE folder (default: the checkpoint config's model.vae_dir)")
    p.add_argument("--clip", help="open_clip folder (default: the checkpoint config's cond.clip_dir)")
    p.add_argument("--ema", action="store_true", help="use the EMA weights")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    try:
        out = export_checkpoint(args.checkpoint, args.output, overwrite=args.overwrite, vae_dir=args.vae,
                                clip_dir=args.clip, ema=args.ema)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"orster4d pipeline export: error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
