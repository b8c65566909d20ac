"""The generator's fixed vocabulary: class names, room kinds, the version that keys cached datasets."""

from __future__ import annotations

import numpy as np

GENERATOR_VERSION = 3  # bump when the generator's output changes: it is part of the dataset cache key
# (3: the generation's wall times moved from transforms.json to timing.json)
_TIMING_KEYS = ("bake_seconds", "seconds")

CLASSES: list[str] = [
    "wall",
    "floor",
    "ceiling",
    "window",
    "door",
    "table",
    "chair",
    "cabinet",
    "bed",
    "lamp",
    "rug",
    "picture",
    "shelf",
    "plant",
]
_C = {name: i for i, name in enumerate(CLASSES)}
IGNORE_LABEL = 255

ROOM_KINDS = ("dining", "bedroom")  # generate_dataset alternates them so every split has beds and tables
_PAINTINGS = ("astronaut", "coffee", "chelsea", "rocket", "cat", "hubble_deep_field")
_UP = np.array([0.0, 0.0, 1.0])
