"""Embedded default data: procedural dynamic objects, their renders, and dataset readers/writers."""
from .dataset import DynamicDataset, load_dataset, write_dataset
from .procedural import FAMILIES, ProceduralObject, make_object
from .render import generate_scene, render_multiview, render_object, render_orbital

__all__ = ["DynamicDataset", "load_dataset", "write_dataset", "FAMILIES", "ProceduralObject", "make_object",
           "generate_scene", "render_multiview", "render_object", "render_orbital"]
