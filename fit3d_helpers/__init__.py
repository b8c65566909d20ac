"""fit3d_helpers: the computing half of the FiT3D notebook course (the notebooks explain and orchestrate).

The method, in the order the course uses it: ``profiles`` (every setting), ``data`` / ``scenes`` / ``synthetic`` /
``capture`` (posed scenes: loaders, generated rooms, your own photos through SfM), ``backbone`` (timm ViTs),
``render`` / ``render_reference`` (the Gaussian rasterizer and its per-pixel reference), ``gaussians`` /
``strategy`` / ``lift`` (stage 1), ``finetune`` (stage 2), ``probe`` / ``probe_data`` / ``evaldata`` /
``awareness`` (evaluation), ``ablations``, ``figure_data``, ``pipeline`` (stage functions), ``cache`` /
``checkpoint`` / ``utils`` (artifacts, resumable loops, seeding, devices).

``fit3d_helpers.course`` presents: report pages, slides, figures, glossary, the paper's numbers, the notebooks'
plotting helpers and the batch runner. It reads artifacts and computes no stage; no method module imports it
(``docs/architecture.md``; ``tests/test_imports.py`` holds the wall).
"""

__version__ = "0.1.0"
