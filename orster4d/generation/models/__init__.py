"""STD-4D diffusion: image VAE, disentanglement VAE, two-channel 4D-UNet,
fusion FFN, merge and conditions."""
from orster4d.generation.models.base import SavedModel
from orster4d.generation.models.unet4d import STD4DUNet, FusionFFN, is_temporal_param, build_unet
from orster4d.generation.models.vae import DisentanglementVAE, load_image_vae, encode_video, decode_latents

__all__ = ["SavedModel", "STD4DUNet", "FusionFFN", "is_temporal_param", "build_unet",
           "DisentanglementVAE", "load_image_vae", "encode_video", "decode_latents"]
