"""Embedded default data: procedural dynamic objects, their renders, and dataset readers/writers."""
from orster4d.data.dataset import DynamicDataset, load_dataset, write_dataset
from orster4d.data.procedural import FAMILIES, ProceduralObject, make_object
from orster4d.data.render import generate_scene, render_multiview, render_object, render_orbital

__all__ = ["DynamicDataset", "load_dataset", "write_dataset", "FAMILIES", "ProceduralObject", "make_object",
           "generate_scene", "render_multiview", "render_object", "render_orbital"]
