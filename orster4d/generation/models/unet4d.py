"""STD-4D two-channel 4D-UNet (Eq. 3-5), its fusion FFN, feature taps and the merge.

Both channels are diffusers ``UNet3DConditionModel`` instances of one architecture (so one
pretrained video UNet initialises both). Their parameters split into

- temporal sub-blocks: ``transformer_in``, every ``temp_convs.*`` and ``temp_attentions.*``;
- spatial sub-blocks: everything else (``conv_in``, time embedding, ``resnets``, ``attentions``,
  samplers, ``conv_norm_out``, ``conv_out``).

**Merged form.** ``merged_state_dict()`` takes the spatial sub-blocks from the spatial channel and
the temporal sub-blocks from the temporal channel; ``merge(folder)`` writes them as a standard
``UNet3DConditionModel`` folder, and ``forward_merged`` evaluates exactly that network on Z4D
(``torch.func.functional_call`` of the spatial channel with the temporal channel's temporal
parameters). It bypasses the disentanglement VAE and the fusion FFN: the merged UNet maps the
noisy Z4D directly to its noise, which is what the two-channel model computes when
disentanglement is the identity and fusion passes a single channel through. The loaded merged
folder reproduces ``forward_merged`` to float rounding (this is what the tests check).

Shapes: latents ``[B, C, T, h, w]``; timesteps ``[B]`` (long); context ``[B, L, D]`` with
``D = cross_attention_dim``.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from diffusers.configuration_utils import register_to_config

from orster4d.generation.models.base import SavedModel, module_by_name
from orster4d.generation.models.vae import DisentanglementVAE

TEMPORAL_PREFIXES = ("transformer_in.",)
TEMPORAL_PARTS = (".temp_convs.", ".temp_attentions.")
MODES = ("two_channel", "no_disentangle", "no_spatial", "no_temporal")


def is_temporal_param(name: str) -> bool:
    """True for parameters/buffers of the temporal sub-blocks of a ``UNet3DConditionModel``."""
    return name.startswith(TEMPORAL_PREFIXES) or any(p in f".{name}" for p in TEMPORAL_PARTS)


def build_unet(unet_config: dict):
    from diffusers import UNet3DConditionModel

    return UNet3DConditionModel.from_config(dict(unet_config))


def unet_config_of(unet) -> dict:
    return {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of ``t [B]`` -> ``[B, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    ang = t.float()[:, None] * freqs[None]
    return torch.cat([ang.sin(), ang.cos()], dim=1)


def run_unet(unet, z: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    return unet(z, timestep, encoder_hidden_states=context, return_dict=False)[0]


class FusionFFN(SavedModel):
    """Eq. 5: per-token MLP over ``[ZS', ZT']`` with FiLM from y -> noise of Z4D.

    y = sinusoidal(timestep) + projection of the mean-pooled context tokens. Output is
    ``w_s * ZS' + w_t * ZT' + MLP(...)`` with ``w_s = w_t = 1/2`` (or 1 for a lone channel) and the
    MLP's last layer zero-initialised, so at initialisation fusion averages the two channels.
    """

    @register_to_config
    def __init__(self, latent_channels: int = 4, hidden: int = 64, cond_dim: int = 32,
                 use_spatial: bool = True, use_temporal: bool = True):
        super().__init__()
        c = latent_channels
        self.inp = nn.Conv3d(2 * c, hidden, 1)
        self.t_embed = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2 * hidden))
        self.c_embed = nn.Linear(cond_dim, 2 * hidden)
        self.out = nn.Sequential(nn.SiLU(), nn.Conv3d(hidden, hidden, 1), nn.SiLU(), nn.Conv3d(hidden, c, 1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)
        n = int(use_spatial) + int(use_temporal)
        self.mix = nn.Parameter(torch.tensor([float(use_spatial) / n, float(use_temporal) / n]))

    def forward(self, zs: Optional[torch.Tensor], zt: Optional[torch.Tensor], timestep: torch.Tensor,
                context: torch.Tensor) -> torch.Tensor:
        ref = zs if zs is not None else zt
        zs = zs if zs is not None else torch.zeros_like(ref)
        zt = zt if zt is not None else torch.zeros_like(ref)
        h = self.inp(torch.cat([zs, zt], dim=1))
        y = self.t_embed(timestep_embedding(timestep, h.shape[1]).to(h.dtype))
        y = y + self.c_embed(context.mean(1).to(h.dtype))
        scale, shift = y.chunk(2, dim=1)
        h = F.group_norm(h, 1) * (1 + scale[:, :, None, None, None]) + shift[:, :, None, None, None]
        return self.mix[0] * zs + self.mix[1] * zt + self.out(h)


class TapsComplete(Exception):
    """Raised by :class:`FeatureTaps` with ``stop_when_complete`` once every tapped block has run."""


class FeatureTaps:
    """Forward hooks that store block outputs as ``[B, C, T, h, w]`` while ``active``.

    Hooked blocks of a ``UNet3DConditionModel`` return ``[B*T, C, h, w]`` (or a tuple/ output
    object whose first entry is); ``num_frames`` must be set before each forward. With
    ``stop_when_complete`` the last tapped block raises :class:`TapsComplete`, so a caller that
    only needs the features (a frozen teacher) skips the rest of the network.
    """

    def __init__(self, root: nn.Module, names: Iterable[str], what: str, stop_when_complete: bool = False):
        self.features: Dict[str, torch.Tensor] = {}
        self.num_frames = 1
        self.active = False
        self.stop_when_complete = stop_when_complete
        self.handles = []
        names = list(names)
        self.num_names = len(set(names))
        for name in names:
            mod = module_by_name(root, name, what)
            self.handles.append(mod.register_forward_hook(self._hook(name)))

    def _hook(self, name):
        def fn(_mod, _inp, out):
            if not self.active:
                return
            x = out[0] if isinstance(out, (tuple, list)) else getattr(out, "sample", out)
            bt, c, h, w = x.shape
            t = self.num_frames
            self.features[name] = x.reshape(bt // t, t, c, h, w).permute(0, 2, 1, 3, 4)
            if self.stop_when_complete and len(self.features) == self.num_names:
                raise TapsComplete
        return fn

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []


def enable_block_checkpointing(unet) -> None:
    """Recompute each down/mid/up block of a ``UNet3DConditionModel`` in backward (activation
    checkpointing; diffusers' own flag is not supported by this class)."""
    from torch.utils.checkpoint import checkpoint

    blocks = list(unet.down_blocks) + list(unet.up_blocks) + ([unet.mid_block] if unet.mid_block else [])
    for blk in blocks:
        if getattr(blk, "_orster_ckpt", False):
            continue
        orig = blk.forward

        def fwd(*args, _orig=orig, _blk=blk, **kwargs):
            if torch.is_grad_enabled() and _blk.training:
                return checkpoint(_orig, *args, use_reentrant=False, **kwargs)
            return _orig(*args, **kwargs)

        blk.forward = fwd
        blk._orster_ckpt = True


class STD4DUNet(SavedModel):
    """Disentanglement VAE + spatial/temporal channels + fusion FFN (Eq. 1-5).

    ``mode``: ``two_channel`` (full model), ``no_disentangle`` (one channel on Z4D, its output is the
    noise), ``no_spatial`` (temporal channel on ZT only), ``no_temporal`` (spatial channel on ZS only).
    ``spatial_taps`` / ``temporal_taps``: block names inside a channel whose outputs are kept (for
    L_orster and L_const); spatial taps are read from the spatial channel, temporal taps from the
    temporal channel (from whichever channel exists in the ablations).
    """

    @register_to_config
    def __init__(self, unet_config: dict, mode: str = "two_channel", fusion_hidden: int = 64,
                 dvae_hidden: int = 32, spatial_taps: Optional[List[str]] = None,
                 temporal_taps: Optional[List[str]] = None):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        spatial_taps = list(spatial_taps or [])
        temporal_taps = list(temporal_taps or [])
        self.mode = mode
        c = unet_config.get("in_channels", 4)
        self.spatial = build_unet(unet_config) if mode in ("two_channel", "no_temporal", "no_disentangle") else None
        self.temporal = build_unet(unet_config) if mode in ("two_channel", "no_spatial") else None
        if mode != "no_disentangle":
            self.dvae = DisentanglementVAE(latent_channels=c, hidden=dvae_hidden)
            self.fusion = FusionFFN(latent_channels=c, hidden=fusion_hidden,
                                    cond_dim=unet_config.get("cross_attention_dim", 1024),
                                    use_spatial=self.spatial is not None, use_temporal=self.temporal is not None)
        else:
            self.dvae = None
            self.fusion = None
        s_root = self.spatial if self.spatial is not None else self.temporal
        t_root = self.temporal if self.temporal is not None else self.spatial
        self.spatial_taps = FeatureTaps(s_root, spatial_taps, "student spatial channel")
        self.temporal_taps = FeatureTaps(t_root, temporal_taps, "student temporal channel")

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_backbone(cls, unet, **kwargs) -> "STD4DUNet":
        """Both channels initialised from one ``UNet3DConditionModel`` (stage-1 or pretrained)."""
        model = cls(unet_config_of(unet), **kwargs)
        state = unet.state_dict()
        for ch in (model.spatial, model.temporal):
            if ch is not None:
                ch.load_state_dict(state)
        return model

    def channels(self) -> List[nn.Module]:
        return [ch for ch in (self.spatial, self.temporal) if ch is not None]

    def enable_gradient_checkpointing(self) -> None:
        for ch in self.channels():
            enable_block_checkpointing(ch)

    # -- forward -----------------------------------------------------------------------------
    def forward(self, z_t: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                latent_cond: Optional[torch.Tensor] = None, sample_posterior: bool = True,
                generator: Optional[torch.Generator] = None, capture: bool = False) -> Dict[str, torch.Tensor]:
        """Predict the noise of ``z_t [B, C, T, h, w]``.

        ``latent_cond`` (``[B, C, T, h, w]``, optional) is added to every channel's input.
        Returns ``eps`` plus ``kl`` and ``ortho`` (0 without disentangling); with ``capture`` the
        tapped features are in ``spatial_features`` / ``temporal_features`` (name -> [B, C, T, h', w']).
        """
        if z_t.ndim != 5:
            raise ValueError(f"z_t: expected [B, C, T, h, w], got {tuple(z_t.shape)}")
        for taps in (self.spatial_taps, self.temporal_taps):
            taps.active = capture
            taps.num_frames = z_t.shape[2]
            taps.features = {}
        add = (lambda z: z + latent_cond) if latent_cond is not None else (lambda z: z)
        zero = z_t.new_zeros(())
        if self.mode == "no_disentangle":
            eps = run_unet(self.spatial, add(z_t), timestep, context)
            out = {"eps": eps, "kl": zero, "ortho": zero}
        else:
            d = self.dvae(z_t, sample=sample_posterior, generator=generator)
            zs = run_unet(self.spatial, add(d["zs"]), timestep, context) if self.spatial is not None else None
            zt = run_unet(self.temporal, add(d["zt"]), timestep, context) if self.temporal is not None else None
            eps = self.fusion(zs, zt, timestep, context)
            out = {"eps": eps, "kl": d["kl"], "ortho": d["ortho"]}
        if capture:
            out["spatial_features"] = dict(self.spatial_taps.features)
            out["temporal_features"] = dict(self.temporal_taps.features)
        for taps in (self.spatial_taps, self.temporal_taps):
            taps.active = False
            taps.features = {}
        return out

    # -- merge -------------------------------------------------------------------------------
    def merged_state_dict(self) -> Dict[str, torch.Tensor]:
        """Spatial sub-blocks from the spatial channel, temporal sub-blocks from the temporal one."""
        s = self.spatial if self.spatial is not None else self.temporal
        t = self.temporal if self.temporal is not None else self.spatial
        s_state, t_state = s.state_dict(), t.state_dict()
        return {k: (t_state[k] if is_temporal_param(k) else v) for k, v in s_state.items()}

    def forward_merged(self, z_t: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                       latent_cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The merged unified 4D-UNet evaluated in place on ``z_t`` -> noise ``[B, C, T, h, w]``."""
        from torch.func import functional_call

        s = self.spatial if self.spatial is not None else self.temporal
        t = self.temporal if self.temporal is not None else self.spatial
        params = dict(s.named_parameters())
        params.update({k: v for k, v in t.named_parameters() if is_temporal_param(k)})
        params.update({k: v for k, v in s.named_buffers()})
        params.update({k: v for k, v in t.named_buffers() if is_temporal_param(k)})
        z = z_t + latent_cond if latent_cond is not None else z_t
        return functional_call(s, params, (z, timestep), {"encoder_hidden_states": context, "return_dict": False})[0]

    def merge(self, folder: str):
        """Write the unified 4D-UNet as a ``UNet3DConditionModel`` folder; returns the model."""
        unet = build_unet(self.config.unet_config)
        unet.load_state_dict(self.merged_state_dict())
        unet.save_pretrained(folder)
        return unet
