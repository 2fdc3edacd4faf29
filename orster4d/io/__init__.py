"""File formats: standard 3DGS ``.ply`` and turntable videos (mp4, gif)."""
from orster4d.io.ply import read_ply, write_ply
from orster4d.io.video import mp4_available, read_video_frame_count, write_gif, write_mp4

__all__ = ["read_ply", "write_ply", "write_gif", "write_mp4", "mp4_available", "read_video_frame_count"]
