"""File formats: standard 3DGS ``.ply`` and turntable videos (mp4, gif)."""
from .ply import read_ply, write_ply
from .video import mp4_available, read_video_frame_count, write_gif, write_mp4

__all__ = ["read_ply", "write_ply", "write_gif", "write_mp4", "mp4_available", "read_video_frame_count"]
