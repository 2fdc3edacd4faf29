"""Turntable video writers: mp4 (through imageio-ffmpeg, when installed) and gif (Pillow)."""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import torch


def mp4_available() -> tuple:
    """``(True, "")`` when mp4 can be written, else ``(False, reason)``."""
    try:
        import imageio_ffmpeg  # noqa: F401

        imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # ImportError, or the package cannot find its ffmpeg binary
        return False, f"imageio-ffmpeg is not usable ({type(e).__name__}: {e}); pip install imageio-ffmpeg"
    return True, ""


def _to_uint8(frames: Union[torch.Tensor, np.ndarray]) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().to("cpu", torch.float32).numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape [F, H, W, 3], got {frames.shape}")
    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return frames


def write_mp4(path: Union[str, Path], frames, fps: int = 12) -> None:
    """Write ``frames [F, H, W, 3]`` (float in [0, 1] or uint8) as an H.264 mp4.

    Raises RuntimeError naming the missing package when imageio-ffmpeg is absent.
    """
    ok, why = mp4_available()
    if not ok:
        raise RuntimeError(why)
    import imageio_ffmpeg

    frames = _to_uint8(frames)
    f, h, w, _ = frames.shape
    # yuv420p needs even sizes; pad by repeating the last row/column.
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    writer = imageio_ffmpeg.write_frames(str(path), (frames.shape[2], frames.shape[1]), fps=fps,
                                         codec="libx264", pix_fmt_out="yuv420p", macro_block_size=1,
                                         output_params=["-loglevel", "error"])
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def write_gif(path: Union[str, Path], frames, fps: int = 12) -> None:
    """Write ``frames [F, H, W, 3]`` (float in [0, 1] or uint8) as a looping gif."""
    from PIL import Image

    frames = _to_uint8(frames)
    images = [Image.fromarray(fr) for fr in frames]
    images[0].save(str(path), save_all=True, append_images=images[1:], duration=int(round(1000 / fps)),
                   loop=0, optimize=False, disposal=1)


def read_video_frame_count(path: Union[str, Path]) -> int:
    """Number of frames of a gif (Pillow) or mp4 (imageio-ffmpeg, decoding every frame)."""
    path = Path(path)
    if path.suffix.lower() == ".gif":
        from PIL import Image

        with Image.open(path) as im:
            return int(im.n_frames)
    import imageio_ffmpeg

    count = 0
    reader = imageio_ffmpeg.read_frames(str(path))
    next(reader)  # metadata
    for _ in reader:
        count += 1
    return count
