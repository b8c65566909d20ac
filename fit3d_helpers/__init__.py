"""fit3d_helpers: the computing half of the FiT3D notebook course (the notebooks explain and orchestrate).

Modules, in the order the course uses them: ``data`` / ``synthetic`` (scenes), ``backbone`` (timm ViTs),
``render`` (Gaussian rasterizer: gsplat on CUDA, pure PyTorch on CPU), ``gaussians`` / ``strategy``
(densification) / ``lift`` (stage 1), ``finetune`` (stage 2), ``probe`` / ``awareness`` (evaluation), ``viz``,
``runner`` / ``report`` (batch runs and the HTML report), ``profiles`` (smoke / paper settings), ``utils`` (seeding,
devices, atomic artifacts).
"""

__version__ = "0.1.0"
