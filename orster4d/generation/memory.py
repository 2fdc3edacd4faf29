"""Peak GPU memory of one generation with the ``paper`` preset's real architectures (random weights).

    python -m orster4d.generation.memory [--frames 24] [--size 256] [--steps 2] [--guidance 3] [--dtype bfloat16] [--json OUT]

Builds an ``STD4DPipeline`` whose components have the published architectures the paper preset
loads from its pretrained folders: the ModelScope text-to-video ``UNet3DConditionModel`` (block
widths 320/640/1280/1280, two layers per block, 64-channel heads, 1024-wide cross-attention), the
Stable Diffusion ``AutoencoderKL`` (8x downsampling, 4 latent channels) and open_clip ViT-H-14
(1024-wide text tokens), all with random weights, on the paper's orbit at ``--size`` pixels and
``--frames`` frames. It runs one orbital-video generation (batched classifier-free guidance and the
prior tokens) and prints a JSON line with the peak allocated and reserved CUDA memory (GiB) and
the wall time. CUDA only: on a machine without CUDA it says so and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

PAPER_UNET = dict(in_channels=4, out_channels=4, sample_size=32,
                  down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D",
                                    "DownBlock3D"),
                  up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
                  block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, norm_num_groups=32,
                  cross_attention_dim=1024, attention_head_dim=64)
PAPER_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, sample_size=256,
                 down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                 block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32,
                 scaling_factor=0.18215)
PAPER_CLIP = "ViT-H-14"
PAPER_PRIOR_BLOCKS = {"spatial": ["down_blocks.2.attentions.0"], "temporal": ["down_blocks.2.temp_attentions.0"]}


def build_paper_pipeline(frames: int = 24, size: int = 256):
    """The paper-scale ``STD4DPipeline`` with random weights (float32, CPU)."""
    import open_clip
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel

    from orster4d.cameras import OrbitTrajectory
    from orster4d.generation.models.conditions import CLIPConditionEncoder, STD4DConditioner
    from orster4d.generation.pipeline import STD4DPipeline

    clip = CLIPConditionEncoder(model_cfg=open_clip.get_model_config(PAPER_CLIP))
    cond = STD4DConditioner(kinds=["text", "image", "static3d"], context_dim=PAPER_UNET["cross_attention_dim"],
                            latent_channels=4, modes=["orbit", "static", "reference"], **clip.feature_dims())
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                          beta_end=0.012, clip_sample=False, set_alpha_to_one=False)
    return STD4DPipeline(vae=AutoencoderKL(**PAPER_VAE), unet=UNet3DConditionModel(**PAPER_UNET), scheduler=sched,
                         conditioner=cond, clip_encoder=clip,
                         trajectory=OrbitTrajectory(num_frames=frames, width=size, height=size).to_dict(),
                         prior_blocks=PAPER_PRIOR_BLOCKS)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m orster4d.generation.memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=2, help="denoising steps (memory does not grow with them)")
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default="bfloat16")
    p.add_argument("--json", help="also write the report to this file")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("orster4d.generation.memory: needs CUDA (peak GPU memory is measured on a CUDA device); "
              "torch sees none", file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    pipe = build_paper_pipeline(args.frames, args.size).to(dev, getattr(torch, args.dtype))
    pipe.set_progress_bar_config(disable=True)
    weights = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    out = pipe(prompt="a striped red hopper hopping", num_inference_steps=args.steps, guidance_scale=args.guidance,
               generator=torch.Generator().manual_seed(0), return_priors=True)
    torch.cuda.synchronize(dev)
    gib = 1024 ** 3
    report = {
        "device": torch.cuda.get_device_name(dev), "frames": args.frames, "size": args.size, "steps": args.steps,
        "guidance": args.guidance, "dtype": args.dtype, "weights_gib": weights / gib,
        "peak_allocated_gib": torch.cuda.max_memory_allocated(dev) / gib,
        "peak_reserved_gib": torch.cuda.max_memory_reserved(dev) / gib,
        "wall_s": time.perf_counter() - t0, "video": list(out.video.shape),
        "priors": {k: list(v.shape) for k, v in out.priors.items()}}
    report["fits_24_gb_card"] = report["peak_reserved_gib"] * gib < 24e9
    print(json.dumps(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
