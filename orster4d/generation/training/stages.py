"""The four training stages as ``nn.Module``s whose ``forward`` returns the loss.

Each stage module registers only its trainable parts (so DDP wraps exactly those); frozen helpers
(image VAE, teachers, CLIP, LPIPS) live in ``self.frozen``. ``forward(batch, generator)`` draws
timesteps and noise from ``generator`` (saved in checkpoints, so resumed runs repeat exactly) and
noises the latents with the diffusers scheduler's ``add_noise``.

A stage reads the config it is given and never changes it; the architecture it resolved (from
the config or from a pretrained folder) is ``stage.unet_config``. ``stage.notices`` are the lines
the trainer prints at start (for example: stage 1 starts from random weights).
``stage.find_unused_parameters`` says whether DDP must look for parameters without gradients.

Checkpoint model folders (``<ckpt>/model/``); every model in them is a diffusers model folder
(``config.json`` + ``diffusion_pytorch_model.safetensors``), and every stage also writes
``trajectory.json`` (the orbital trajectory of the training videos, ``training_trajectory``):
- stage 1: ``unet/`` (``UNet3DConditionModel``);
- stage 2: ``std4d/`` (``STD4DUNet``, the two-channel model), ``orster/`` (``OrsterTransferLoss``:
  the kernels and projections with their config; absent when ``orster.weight`` is 0), and at the
  end ``merged_unet/``: the unified 4D-UNet (spatial sub-blocks of the spatial channel, temporal
  sub-blocks of the temporal channel) as a ``UNet3DConditionModel``;
- stages 3-4: ``merged_unet/``, the unified 4D-UNet they train (so what generation samples is
  what was trained, loadable by diffusers alone); stage 4 also ``cond/`` (``STD4DConditioner``).

Stage N reads stage N-1's checkpoint; stage 4 may instead start, when ``init`` names it, from
stage 2's final checkpoint or from a stage-1 checkpoint (``STAGE4_INITS``, ablations that skip
stages).
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from orster4d.generation.models.base import diffusers_load_kwargs, require_dir, require_file
from orster4d.generation.models.conditions import (CONDITION_KINDS, VIDEO_MODES, ConditionEncoder, STD4DConditioner,
                                                   clip_feature_dims, load_clip, null_context)
from orster4d.generation.teachers import load_teachers, promised_shape, validate_teacher_map
from orster4d.generation.models.unet4d import (FeatureTaps, STD4DUNet, enable_block_checkpointing, run_unet,
                                              unet_config_of)
from orster4d.generation.models.vae import decode_latents, encode_video, load_image_vae
from orster4d.generation.training.losses import OrsterTransferLoss, feature_alignment, temporal_smoothness
from orster4d.perceptual import load_lpips


class Frozen:
    """Plain attribute holder (not an nn.Module, so DDP and state_dict ignore it)."""


def make_noise_scheduler(cfg: dict):
    from diffusers import DDPMScheduler

    n = cfg["noise"]
    return DDPMScheduler(num_train_timesteps=n["num_train_timesteps"], beta_schedule=n["beta_schedule"],
                         beta_start=n["beta_start"], beta_end=n["beta_end"])


def checkpoint_stage(path: str, missing: str):
    """The stage recorded in ``path/state.json``; FileNotFoundError(``missing``) without that file."""
    state = os.path.join(path, "state.json")
    if not os.path.isfile(state):
        raise FileNotFoundError(missing)
    with open(state) as f:
        return json.load(f).get("stage")


def previous_checkpoint(cfg: dict) -> str:
    """The folder of stage N-1's checkpoint (``cfg['init']`` or ``<out_dir>/stage{N-1}/final``)."""
    stage = cfg["stage"]
    path = cfg.get("init") or os.path.join(cfg["out_dir"], f"stage{stage - 1}", "final")
    prev = checkpoint_stage(path, f"stage {stage} needs stage {stage - 1}'s checkpoint, not found at {path} "
                                  f"(run --stage {stage - 1} first or set init=<checkpoint folder>)")
    if prev != stage - 1:
        raise ValueError(f"stage {stage}: checkpoint {path} is from stage {prev}, expected stage {stage - 1}")
    return path


#: Where stage 4 may start: the stage of its ``init`` checkpoint -> the folder (under ``model/``) of
#: the UNet it fine-tunes. Stage 3's checkpoint is the default (``<out_dir>/stage3/final``); the
#: others only when ``init`` names them explicitly: stage 2's *final* checkpoint (its merged unified
#: 4D-UNet; the consistency stage is skipped) or a stage-1 checkpoint (its video UNet; the Orster
#: transfer and the consistency stage are skipped).
STAGE4_INITS = {3: "merged_unet", 2: "merged_unet", 1: "unet"}


def stage4_checkpoint(cfg: dict) -> Tuple[str, int]:
    """Stage 4's starting checkpoint and its stage: ``(folder, 1 | 2 | 3)``, see :data:`STAGE4_INITS`.

    Without ``cfg['init']`` it is :func:`previous_checkpoint` (stage 3 required). With it, a
    checkpoint of stage 1, 2 or 3 is accepted; any other stage, a missing ``state.json``, or a
    stage-2 checkpoint without its merged UNet (only the final one has it) is an error naming it.
    """
    if not cfg.get("init"):
        return previous_checkpoint(cfg), 3
    path = cfg["init"]
    prev = checkpoint_stage(path, f"init={path}: not a training checkpoint (no state.json); stage 4 starts from a "
                                  f"checkpoint of stage 3 (or, named explicitly, stage 2's final or stage 1's)")
    if prev not in STAGE4_INITS:
        raise ValueError(f"stage 4: checkpoint {path} is from stage {prev}, expected stage 3 "
                         f"(or, named explicitly by init=, stage 2's final checkpoint or a stage-1 checkpoint)")
    unet = os.path.join(path, "model", STAGE4_INITS[prev], "config.json")
    if not os.path.isfile(unet):
        why = " (stage 2 writes its merged unified 4D-UNet only into its final checkpoint)" if prev == 2 else ""
        raise FileNotFoundError(f"init={path}: stage-{prev} checkpoint without model/{STAGE4_INITS[prev]}/{why}")
    return path, prev


TRAJECTORY_NAME = "trajectory.json"


def training_trajectory(cfg: dict) -> dict:
    """What a stage checkpoint records about the trajectory it was trained on.

    ``{"trajectory": OrbitTrajectory dict (frames, elevation, radius, field of view, size, ...),
    "source": "data" | "default"}``: the videos' shared ``trajectory.json``, or, when they carry
    none, the default orbit (15 degrees elevation, radius 3, 40 degrees field of view) at
    ``data.frames`` frames of ``data.resolution`` pixels.
    """
    from orster4d.cameras import OrbitTrajectory
    from orster4d.generation.training.data import dataset_trajectory

    dc = cfg["data"]
    found = dataset_trajectory(dc["root"]) if dc.get("root") else {"trajectory": None}
    if found["trajectory"] is not None:
        return {"trajectory": found["trajectory"], "source": "data"}
    traj = OrbitTrajectory(num_frames=dc["frames"], width=dc["resolution"], height=dc["resolution"])
    return {"trajectory": traj.to_dict(), "source": "default"}


class StageBase(nn.Module):
    #: True when ``forward`` reads nothing of the batch but the clean latents (``self.latents``):
    #: the trainer may then serve ``{"latents": ...}`` batches from latents encoded once per run
    #: (``data.cache_latents``, :mod:`orster4d.generation.training.latents`).
    latent_only = False
    #: DDP's ``find_unused_parameters``: False where every trainable parameter gets a gradient in
    #: every step (a test checks it per stage), which spares DDP a graph traversal per step.
    find_unused_parameters = False

    def __init__(self, cfg: dict, device: torch.device, data=None):
        """``data``: the training videos (``OrbitalVideoDataset``) when the caller has already read
        them (the trainer does); stage 4 checks them against its conditions (reading ``cfg["data"]``
        when it is None), the other stages do not look at them."""
        super().__init__()
        self.cfg = cfg  # read only
        self.unet_config: dict = dict(cfg["model"]["unet"] or {})
        self.notices: List[str] = []
        self.frozen = Frozen()
        self.frozen.device = device
        vae_dir = cfg["model"]["vae_dir"]
        if not vae_dir:
            raise ValueError("model.vae_dir: the image VAE folder (diffusers AutoencoderKL) is required")
        self.frozen.vae = load_image_vae(vae_dir, device=device)
        self.frozen.noise = make_noise_scheduler(cfg)
        self.frozen.alphas = self.frozen.noise.alphas_cumprod.to(device)
        self.frozen.noise.alphas_cumprod = self.frozen.alphas  # add_noise then moves nothing per step
        self.grad_ckpt = cfg["model"]["gradient_checkpointing"] in (True, "true") or (
            cfg["model"]["gradient_checkpointing"] == "auto" and device.type == "cuda")
        self.trajectory = training_trajectory(cfg)

    def save_trajectory(self, folder: str) -> None:
        """Write ``trajectory.json``: the orbital trajectory of the training videos (see ``training_trajectory``)."""
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, TRAJECTORY_NAME), "w") as f:
            json.dump(self.trajectory, f, indent=2)

    # -- shared pieces ------------------------------------------------------------------------
    def latents(self, batch) -> torch.Tensor:
        """Clean latents ``[B, C, T, h, w]``: ``batch["latents"]`` when the trainer serves encoded
        latents, else ``batch["video"] [B, T, H, W, 3]`` encoded with the frozen image VAE."""
        if "latents" in batch:
            return batch["latents"]
        with torch.no_grad():
            return encode_video(self.frozen.vae, batch["video"])

    def noised(self, z0: torch.Tensor, gen: torch.Generator):
        """``(z_t, t, eps)`` for clean latents ``z0 [B, C, T, h, w]``: timesteps ``t [B]`` and noise
        ``eps`` drawn from ``gen``, ``z_t`` from the scheduler's ``add_noise``."""
        n = self.frozen.noise.config.num_train_timesteps
        t = torch.randint(0, n, (z0.shape[0],), generator=gen, device=gen.device).to(z0.device)
        eps = torch.randn(z0.shape, generator=gen, device=gen.device).to(z0.device)
        return self.frozen.noise.add_noise(z0, eps, t), t, eps

    def context_dim(self) -> int:
        return int(self.unet_config.get("cross_attention_dim", 1024))

    def save_model(self, folder: str, final: bool = False) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def load_model(self, folder: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class Stage1(StageBase):
    """Preliminary 4D training: one video UNet, ``L_ldm = |eps - eps_theta(Z_t, y, t)|^2``."""

    latent_only = True

    def __init__(self, cfg, device, data=None):
        super().__init__(cfg, device, data)
        from diffusers import UNet3DConditionModel

        bb = cfg["model"]["backbone_dir"]
        if bb:
            require_dir(bb, "model.backbone_dir")
            require_file(os.path.join(bb, "config.json"), "model.backbone_dir")
            self.unet = UNet3DConditionModel.from_pretrained(bb, **diffusers_load_kwargs())
            self.unet_config = unet_config_of(self.unet)
        else:
            self.notices.append("stage 1: model.backbone_dir is not set, so the UNet starts from random "
                                "weights (architecture model.unet); set it to a pretrained video UNet folder "
                                "to start from one")
            self.unet = UNet3DConditionModel(**self.unet_config)
        self.unet.to(device)
        if self.grad_ckpt:
            enable_block_checkpointing(self.unet)

    def forward(self, batch, gen) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        z0 = self.latents(batch)
        zt, t, eps = self.noised(z0, gen)
        ctx = null_context(z0.shape[0], self.context_dim(), z0.device)
        pred = run_unet(self.unet, zt, t, ctx)
        loss = F.mse_loss(pred.float(), eps)
        return loss, {"ldm": loss.detach()}

    def save_model(self, folder, final=False):
        self.unet.save_pretrained(os.path.join(folder, "unet"))
        self.save_trajectory(folder)

    def load_model(self, folder):
        from diffusers import UNet3DConditionModel

        src = UNet3DConditionModel.from_pretrained(os.path.join(folder, "unet"), **diffusers_load_kwargs())
        self.unet.load_state_dict(src.state_dict())


class _STD4DStage(StageBase):
    """Stages 2-4 share the STD-4D model; ``init_std4d`` builds it from the previous checkpoint."""

    def student_taps(self):
        tm = validate_teacher_map(self.cfg["teachers"]["map"])
        return ([e["student"] for e in tm if e["teacher"] == "spatial"],
                [e["student"] for e in tm if e["teacher"] == "temporal"])

    def init_std4d(self, prev: str) -> None:
        """Build the two-channel model from the unified UNet of the checkpoint ``prev``
        (``prev/model/unet``): both channels start as copies of it (``STD4DUNet.from_backbone``)."""
        from diffusers import UNet3DConditionModel

        s_taps, t_taps = self.student_taps()
        m = self.cfg["model"]
        kw = dict(mode=m["mode"], fusion_hidden=m["fusion_hidden"], dvae_hidden=m["dvae_hidden"],
                  spatial_taps=s_taps, temporal_taps=t_taps)
        unet = UNet3DConditionModel.from_pretrained(os.path.join(prev, "model", "unet"), **diffusers_load_kwargs())
        self.std4d = STD4DUNet.from_backbone(unet, **kw)
        self.unet_config = dict(self.std4d.config.unet_config)
        self.std4d.to(self.frozen.device)
        if self.grad_ckpt:
            self.std4d.enable_gradient_checkpointing()

    def save_model(self, folder, final=False):
        self.std4d.save_pretrained(os.path.join(folder, "std4d"))
        self.save_trajectory(folder)
        if final:
            self.std4d.merge(os.path.join(folder, "merged_unet"))

    def load_model(self, folder):
        src = STD4DUNet.from_pretrained(os.path.join(folder, "std4d"))
        self.std4d.load_state_dict(src.state_dict())

    def kl_terms(self, out) -> torch.Tensor:
        lc = self.cfg["loss"]
        return lc["beta_kl"] * out["kl"] + lc["ortho"] * out["ortho"]


class Stage2(_STD4DStage):
    """Orster transfer: ``L_ldm + w * (L_orster + kernel NLL) + beta * KL (+ ortho)``, frozen teachers.

    With ``orster.weight`` at 0 the transfer is off: the loss is ``L_ldm + beta * KL (+ ortho)``,
    the teachers are neither loaded nor run (``teachers.*_dir`` are not read) and no ``orster/``
    model is saved; ``self.transfer`` says which."""

    latent_only = True

    def __init__(self, cfg, device, data=None):
        super().__init__(cfg, device, data)
        prev = previous_checkpoint(cfg)
        tc, o = cfg["teachers"], cfg["orster"]
        tmap = validate_teacher_map(tc["map"])
        self.transfer = float(o["weight"]) != 0.0
        self.orster = None
        if self.transfer:
            for key in ("spatial_dir", "temporal_dir"):
                if not tc[key]:
                    raise ValueError(f"teachers.{key}: stage 2 needs the {key.split('_')[0]} teacher's diffusers "
                                     f"folder (or orster.weight=0, which trains without the transfer)")
            self.frozen.teachers = load_teachers(tc["spatial_dir"], tc["temporal_dir"], tc["map"], device=device)
        else:
            self.frozen.teachers = {}
            self.notices.append("orster.weight=0: no Orster transfer; the teachers are not loaded or run")
        self.init_std4d(prev)
        if self.transfer:
            t_ch = [promised_shape(dict(self.frozen.teachers[e["teacher"]].unet.config), e["block"], 1, 1, 8, 8)[1]
                    for e in tmap]
            s_ch = [promised_shape(self.unet_config, e["student"], 1, 1, 8, 8)[1] for e in tmap]
            self.orster = OrsterTransferLoss(tmap, t_ch, s_ch, lambda_o=o["lambda_o"],
                                             options=dict(o["options"])).to(device)
            # Without the kernel the projections get no gradient; with lambda_o at 0 or 1 one of the
            # two terms (and its student adapter) is not computed. Otherwise every parameter is used.
            opts = dict(o["options"])
            self.find_unused_parameters = (not opts.get("use_kernel", True)) or float(o["lambda_o"]) in (0.0, 1.0)

    def forward(self, batch, gen):
        z0 = self.latents(batch)
        zt, t, eps = self.noised(z0, gen)
        ctx = null_context(z0.shape[0], self.context_dim(), z0.device)
        out = self.std4d(zt, t, ctx, generator=gen, capture=self.transfer)
        ldm = F.mse_loss(out["eps"].float(), eps)
        if not self.transfer:
            return ldm + self.kl_terms(out), {"ldm": ldm.detach(), "kl": out["kl"].detach()}
        teach = {r: te(zt, t) for r, te in self.frozen.teachers.items()}
        student = {"spatial": out["spatial_features"], "temporal": out["temporal_features"]}
        with torch.autocast(z0.device.type, enabled=False):  # kernel fit and targets in float32
            lo, logs = self.orster(teach, student)
        loss = ldm + self.cfg["orster"]["weight"] * lo + self.kl_terms(out)
        logs = {f"orster_{k}" if k != "orster" else k: v for k, v in logs.items()}
        return loss, {"ldm": ldm.detach(), "kl": out["kl"].detach(), **logs}

    def save_model(self, folder, final=False):
        super().save_model(folder, final)
        if self.orster is not None:
            self.orster.save_pretrained(os.path.join(folder, "orster"))

    def load_model(self, folder):
        super().load_model(folder)
        if self.orster is not None:
            self.orster.load_state_dict(OrsterTransferLoss.from_pretrained(os.path.join(folder, "orster")).state_dict())


def load_unified_unet(checkpoint: str, folder: str = "merged_unet"):
    """The unified 4D-UNet (``model/<folder>/``, a diffusers ``UNet3DConditionModel``; ``merged_unet``
    except for a stage-1 checkpoint that stage 4 starts from, whose UNet is ``unet``) of a checkpoint."""
    from diffusers import UNet3DConditionModel

    path = os.path.join(checkpoint, "model", folder)
    require_file(os.path.join(require_dir(path, f"unified 4D-UNet of {checkpoint}"), "config.json"),
                 f"unified 4D-UNet of {checkpoint}")
    return UNet3DConditionModel.from_pretrained(path, **diffusers_load_kwargs())


class _UnifiedStage(StageBase):
    """Stages 3 and 4 train the unified 4D-UNet merged at the end of stage 2 (section "merge" of
    ``unet4d``): one ``UNet3DConditionModel``, saved as ``model/merged_unet/`` at every checkpoint,
    so the released model is exactly the trained one. Spatial / temporal features (``F_s``, ``F_t``)
    are tapped at the student blocks of the teacher map."""

    def init_unified(self, prev: str, folder: str = "merged_unet") -> None:
        self.unet = load_unified_unet(prev, folder).to(self.frozen.device)
        self.unet.train()
        self.unet_config = unet_config_of(self.unet)
        tm = validate_teacher_map(self.cfg["teachers"]["map"])
        self.frozen.taps = {role: FeatureTaps(self.unet, [e["student"] for e in tm if e["teacher"] == role],
                                              f"unified 4D-UNet ({role} taps)") for role in ("spatial", "temporal")}
        if self.grad_ckpt:
            enable_block_checkpointing(self.unet)

    def predict(self, zt, t, ctx, latent_cond=None, capture: bool = False):
        """Noise ``[B, C, T, h, w]`` and, with ``capture``, the tapped ``(F_s, F_t)`` dicts."""
        taps = self.frozen.taps
        for tp in taps.values():
            tp.active, tp.num_frames, tp.features = capture, zt.shape[2], {}
        try:
            eps = run_unet(self.unet, zt + latent_cond if latent_cond is not None else zt, t, ctx)
            return eps, dict(taps["spatial"].features), dict(taps["temporal"].features)
        finally:
            for tp in taps.values():
                tp.active, tp.features = False, {}

    def save_model(self, folder, final=False):
        self.unet.save_pretrained(os.path.join(folder, "merged_unet"))
        self.save_trajectory(folder)

    def load_model(self, folder):
        from diffusers import UNet3DConditionModel

        src = UNet3DConditionModel.from_pretrained(os.path.join(folder, "merged_unet"), **diffusers_load_kwargs())
        self.unet.load_state_dict(src.state_dict())


class Stage3(_UnifiedStage):
    """Consistency (Eq. 15) of the unified 4D-UNet: ``ldm_stage3 * L_ldm + l_rec L1 + l_perc LPIPS +
    l_temp L_temp + l_align L_align``, images decoded from the predicted clean latent."""

    def __init__(self, cfg, device, data=None):
        super().__init__(cfg, device, data)
        self.init_unified(previous_checkpoint(cfg))
        self.frozen.lpips = load_lpips(cfg["loss"]["lpips_dir"], "alex", device) if cfg["loss"]["l_perc"] > 0 else None

    def forward(self, batch, gen):
        lc = self.cfg["loss"]
        z0 = self.latents(batch)
        zt, t, eps = self.noised(z0, gen)
        ctx = null_context(z0.shape[0], self.context_dim(), z0.device)
        pred, fs_d, ft_d = self.predict(zt, t, ctx, capture=True)
        pred = pred.float()
        ldm = F.mse_loss(pred, eps)
        a = self.frozen.alphas[t].view(-1, 1, 1, 1, 1)
        z0_hat = (zt - (1 - a).sqrt() * pred) / a.sqrt()
        img = decode_latents(self.frozen.vae, z0_hat)
        gt = batch["video"]
        rec = (img - gt).abs().mean()
        logs = {"ldm": ldm.detach(), "rec": rec.detach()}
        loss = lc["ldm_stage3"] * ldm + lc["l_rec"] * rec
        if self.frozen.lpips is not None:
            to = lambda v: v.flatten(0, 1).permute(0, 3, 1, 2) * 2 - 1  # noqa: E731
            perc = self.frozen.lpips(to(img), to(gt)).mean()
            loss = loss + lc["l_perc"] * perc
            logs["perc"] = perc.detach()
        fs, ft = list(fs_d.values()), list(ft_d.values())
        if ft:
            temp = temporal_smoothness(ft_d)
            loss = loss + lc["l_temp"] * temp
            logs["temp"] = temp.detach()
        if fs and ft:
            align = feature_alignment(fs, ft)
            loss = loss + lc["l_align"] * align
            logs["align"] = align.detach()
        return loss, logs


def condition_kinds(cfg: dict) -> list:
    """The condition kinds stage 4 trains: ``cond.kind`` alone, or all three for ``"mixed"``."""
    kind = cfg["cond"]["kind"]
    return list(CONDITION_KINDS) if kind == "mixed" else [kind]


def condition_data(cfg: dict, kinds: list, data=None) -> list:
    """Check that the training videos carry what ``kinds`` and ``cond.modes`` need, before any step;
    returns the video modes to train (``cond.modes``, or for ``"auto"`` every mode the data has,
    ``OrbitalVideoDataset.video_modes``).

    ``data``: the training videos as an ``OrbitalVideoDataset`` (read from ``cfg["data"]`` when None);
    their metadata (``prompt``, ``static``) comes from the package's dataset reader.
    """
    from orster4d.generation.training.data import OrbitalVideoDataset

    cc, dc = cfg["cond"], cfg["data"]
    if data is None:
        data = OrbitalVideoDataset(dc["root"], dc["frames"], dc["resolution"])
    modes = data.video_modes() if cc["modes"] == "auto" else cc["modes"]
    if isinstance(modes, str) or not modes or list(modes)[0] != "orbit" or any(m not in VIDEO_MODES for m in modes):
        raise ValueError(f"cond.modes: expected \"auto\" or a list starting with 'orbit' from {VIDEO_MODES}, "
                         f"got {cc['modes']!r}")
    modes = list(modes)
    here = f"or mixed; here {cc['kind']!r}"
    if "text" in kinds:
        data.require_prompts(f"the text condition (cond.kind=text {here})")
    if "static3d" in kinds:
        data.require_static(f"the static-3D condition (cond.kind=static3d {here})")
    if "static" in modes:
        data.require_static("the 'static' video mode (cond.modes)")
    if "reference" in modes:
        data.require_reference()
    return modes


class Stage4(_UnifiedStage):
    """Conditional fine-tuning (Eq. 16) of the unified 4D-UNet, one model for all conditions.

    Each sample of a batch draws one kind of ``condition_kinds(cfg)`` (uniformly) and, with
    probability ``cond.p_drop``, the null condition instead (classifier-free guidance). It also
    draws its video mode: ``static`` with probability ``cond.p_static`` (the target is the static
    orbital video, motion off), ``reference`` with ``cond.p_reference`` (the reference-view video),
    else ``orbit``, among the trained modes. The image condition is always the orbit's first view
    I0, which is also the first frame of the static and the reference-view videos.
    """

    def __init__(self, cfg, device, data=None):
        kinds = condition_kinds(cfg)
        modes = condition_data(cfg, kinds, data)  # the data's problems first, before any model loads
        super().__init__(cfg, device, data)
        prev, prev_stage = stage4_checkpoint(cfg)
        if prev_stage != 3:
            skipped = ("the consistency stage (3) is" if prev_stage == 2
                       else "the Orster transfer (2) and consistency (3) stages are")
            self.notices.append(f"stage 4: starts from the stage-{prev_stage} checkpoint {prev} (init=), "
                                f"so {skipped} skipped")
        cc = cfg["cond"]
        self.kinds, self.modes = kinds, modes
        clip = None
        if any(k in ("text", "image") for k in self.kinds):
            if not cc["clip_dir"]:
                raise ValueError(f"cond.clip_dir: condition kind {cc['kind']!r} needs a local open_clip folder")
            clip = load_clip(cc["clip_dir"], device)
        self.frozen.encoders = {k: ConditionEncoder(k, clip=clip, vae=self.frozen.vae) for k in self.kinds}
        self.init_unified(prev, STAGE4_INITS[prev_stage])
        dims = clip_feature_dims(clip) if clip is not None else {}
        self.cond = STD4DConditioner(kinds=self.kinds, context_dim=self.context_dim(),
                                     latent_channels=self.unet_config["in_channels"], modes=self.modes,
                                     **dims).to(device)

    def _draw(self, b: int, gen, device):
        cc = self.cfg["cond"]
        r = lambda: torch.rand(b, generator=gen, device=gen.device).to(device)  # noqa: E731
        kind = torch.randint(0, len(self.kinds), (b,), generator=gen, device=gen.device).to(device)
        kind = torch.where(r() < cc["p_drop"], torch.full_like(kind, -1), kind)
        u = r()
        mode = torch.zeros(b, dtype=torch.long, device=device)
        lo = 0.0
        for name, p in (("static", cc["p_static"]), ("reference", cc["p_reference"])):
            if name in self.modes:
                mode = torch.where((u >= lo) & (u < lo + p), torch.full_like(mode, self.modes.index(name)), mode)
                lo += p
        return kind, mode

    def forward(self, batch, gen):
        video = batch["video"]
        feats = {}
        for enc in self.frozen.encoders.values():
            feats.update(enc(batch))
        kind, mode = self._draw(video.shape[0], gen, video.device)
        target = video
        for name, key in (("static", "static_video"), ("reference", "reference_video")):
            if name in self.modes:
                pick = (mode == self.modes.index(name)).view(-1, 1, 1, 1, 1)
                target = torch.where(pick, batch[key].to(video), target)
        z0 = self.latents({"video": target})
        zt, t, eps = self.noised(z0, gen)
        ctx, lat = self.cond(feats, kind, mode, z0.shape[2])
        pred, _, _ = self.predict(zt, t, ctx, latent_cond=lat)
        ldm = F.mse_loss(pred.float(), eps)
        return ldm, {"ldm": ldm.detach()}

    def save_model(self, folder, final=False):
        super().save_model(folder, final)
        self.cond.save_pretrained(os.path.join(folder, "cond"))

    def load_model(self, folder):
        super().load_model(folder)
        self.cond.load_state_dict(STD4DConditioner.from_pretrained(os.path.join(folder, "cond")).state_dict())


STAGE_CLASSES = {1: Stage1, 2: Stage2, 3: Stage3, 4: Stage4}
