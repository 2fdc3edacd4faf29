"""File formats: standard 3DGS ``.ply``, turntable videos (mp4, gif), asset folders and the
viewer-ready exports (``.splat``, ``.splatv``, SuperSplat PLY sequences)."""
from orster4d.io.asset import Asset, AssetError, export_asset, export_supersplat_sequence, read_asset
from orster4d.io.ply import read_ply, write_ply
from orster4d.io.splat import write_splat
from orster4d.io.splatv import write_splatv
from orster4d.io.video import mp4_available, read_video_frame_count, write_gif, write_mp4

__all__ = ["read_ply", "write_ply", "write_gif", "write_mp4", "mp4_available", "read_video_frame_count",
           "Asset", "AssetError", "read_asset", "export_asset", "export_supersplat_sequence",
           "write_splat", "write_splatv"]
