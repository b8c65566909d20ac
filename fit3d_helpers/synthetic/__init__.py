"""Offline synthetic indoor rooms, written in the same ``transforms.json`` layout as real data.

Why: the course must run without downloads, yet the later stages need what ScanNet++ gives — posed RGB views of a
furnished room, metric depth and semantic labels. This module builds a random room (walls, floor, ceiling, a window
with sky, a door, table and chairs, bed, cabinet, bookshelf, lamps, rug, plant, framed pictures) from box /
cylinder / sphere parts, bakes global illumination into its vertices once, and ray-casts views along a smooth
orbit. Everything is deterministic in ``seed``.

How the pictures are made:

* Geometry: every part is a grid of triangles whose edges are at most ``max_edge`` (12 cm by default) long, with
  its own vertices (flat faces keep flat normals, curved ones smooth normals) and per-vertex texture coordinates.
* Textures: scikit-image's bundled CC0 / public-domain images (``brick``, ``grass``, ``gravel``; ``astronaut``,
  ``coffee``, ``chelsea``, ``rocket``, ``cat``, ``hubble_deep_field`` as paintings) plus procedural wood, paint,
  fabric, rug and sky. Tiled textures repeat mirrored so they have no seams.
* Lighting (baked per vertex): direct light from area-light samples (window sky, ceiling panel, lamp shade) with
  shadow rays, then ``bounces`` rounds of cosine-weighted indirect light (one set of traced rays, re-gathered each
  round), lightly smoothed over the mesh to hide Monte-Carlo noise. In most rooms sunlight also enters through a
  window: it is traced per sub-pixel (crisp sun patches with window-bar shadows) and feeds the bounces.
* Rendering: one ray per sub-pixel (``supersample``² per pixel) for colour, the pixel-centre ray for planar depth
  (``t / |K⁻¹[u, v, 1]|``) and labels; fixed exposure per scene so that colours agree between views. All
  shading is view-independent (Lambertian), as a 3D Gaussian fit of the views assumes.
* Cameras: a smooth orbit >= 0.9 m from the walls at 1.2-1.8 m height, looking past the room's middle, 15 degrees
  between consecutive views (about 80 % of a view's pixels reappear in the next one).
* Ray casting: embreex (Embree) when installed, else trimesh's pure-Python intersector (much slower, warned).

Output of :func:`generate_scene` (read back by :func:`fit3d_helpers.data.load_scene`)::

    <scene>/transforms.json          fl_x, fl_y, cx, cy, w, h, classes, OpenGL transform_matrix per frame
    <scene>/images/frame_00000.png   8-bit RGB
    <scene>/depth/frame_00000.png    16-bit planar depth in millimetres (depth_unit_scale_factor 0.001)
    <scene>/labels/frame_00000.png   8-bit class ids into CLASSES

:func:`generate_dataset` keeps a dataset like a stage artifact (:mod:`fit3d_helpers.cache`):
``<root>/<hash of the settings>/CURRENT`` names the complete version ``v-<time>-<id>/`` holding ``dataset.json``
and the scene folders, so a rebuild never removes scenes under a reader. Modules: ``constants`` (classes, version),
``textures``, ``geometry`` (meshes, ray casting), ``layout`` / ``room`` / ``furniture`` (the room), ``lighting``
(the bake), ``render`` (cameras, views, :func:`render_scene`), ``dataset`` (files on disk).
"""

# The package is split along the generator's seams; this module keeps the public names where they always were.
from .constants import CLASSES, GENERATOR_VERSION, IGNORE_LABEL, ROOM_KINDS
from .dataset import DatasetInfo, generate_dataset, generate_scene
from .geometry import _Builder, _Mesh, _Tracer
from .render import RenderedScene, render_scene
from .room import _build_room

__all__ = [
    "CLASSES",
    "GENERATOR_VERSION",
    "IGNORE_LABEL",
    "ROOM_KINDS",
    "DatasetInfo",
    "RenderedScene",
    "generate_dataset",
    "generate_scene",
    "render_scene",
    "_Builder",
    "_Mesh",
    "_Tracer",
    "_build_room",
]
