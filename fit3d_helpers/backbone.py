"""2D backbones (timm ViTs) and their dense features.

Features are the last block's tokens after the final LayerNorm (timm's ``forward_features``), or before it with
``norm=False`` (what the official depth probe reads); patch tokens are reshaped to the token grid ``[B, D, h, w]``,
the CLS token is kept for the depth probe, and images are normalised with ImageNet mean/std and brought to a multiple
of the patch size (``fit``: resize, or pad as the official evaluation does).

Weight sources, as the official FiT3D code loads them (``timm.create_model(name, pretrained=True, num_classes=0,
dynamic_img_size=True)`` and, for the 3D-aware model, ``load_state_dict`` of the released checkpoint):

- ``"hub"``: timm's pretrained weights (Hugging Face hub, online or from the local HF cache);
- ``"fit3d"``: the released FiT3D fine-tuned checkpoint for that model, downloaded into the torch hub cache;
- a path to a local ``.pth`` / ``.safetensors`` state dict (e.g. the output of our own fine-tuning);
- ``"random"``: random init. Offline this is the only choice; every later output says so (``weights: "random"``);
- ``"auto"``: ``"hub"`` when reachable (or cached), otherwise ``"random"`` with a loud warning; with
  ``refuse_random`` (every profile but smoke, :func:`fit3d_helpers.pipeline.backbone_for`) it stops instead, naming
  the cache folders to fill.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .utils import RANDOM_WEIGHTS_BANNER, resolve_device

# Short names used in configs -> timm model names (the hub names the official FiT3D code loads).
MODELS: dict[str, str] = {
    "dinov2_small": "vit_small_patch14_dinov2.lvd142m",
    "dinov2_base": "vit_base_patch14_dinov2.lvd142m",
    "dinov2_reg_small": "vit_small_patch14_reg4_dinov2.lvd142m",
    "clip_base": "vit_base_patch16_clip_384.laion2b_ft_in12k_in1k",
    "mae_base": "vit_base_patch16_224.mae",
    "deit3_base": "deit3_base_patch16_224.fb_in1k",
}
FIT3D_URL = "https://huggingface.co/yuanwenyue/FiT3D/resolve/main/{key}_finetuned.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsError(RuntimeError):
    """Weights could not be loaded; the message says which source failed and what to do instead."""


def timm_name(model: str) -> str:
    """Accept a short name (``dinov2_small``) or a full timm name; return the timm name."""
    if model in MODELS:
        return MODELS[model]
    if model in MODELS.values():
        return model
    raise ValueError(
        f"unknown backbone {model!r}; choose one of {sorted(MODELS)} (or their timm names {sorted(MODELS.values())})"
    )


def short_name(model: str) -> str:
    name = timm_name(model)
    return next(k for k, v in MODELS.items() if v == name)


def fit3d_checkpoint_url(model: str) -> str:
    """URL of the released FiT3D fine-tuned checkpoint for ``model`` (not downloaded here)."""
    return FIT3D_URL.format(key=short_name(model))


def hub_id(model: str) -> str:
    """The Hugging Face repo id timm downloads the pretrained weights from (not contacted here)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(timm_name(model))
    return cfg.hf_hub_id or f"timm/{timm_name(model)}"


def _create(model: str, pretrained: bool, seed: int = 0) -> nn.Module:
    """timm model; a random init is seeded so every stage of a run sees the *same* random backbone."""
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model(
            timm_name(model), pretrained=pretrained, num_classes=0, dynamic_img_size=True, dynamic_img_pad=False
        )


_WEIGHTS_FIX = (
    "Fix: re-save only the model's tensors where the file was made (torch.save(model.state_dict(), path), or "
    "safetensors' save_file), copy or download the file again if it is incomplete, or pass another weights source "
    "('hub', 'fit3d', 'random')."
)


def _why_unreadable(path: Path, err: BaseException) -> str:
    """Why torch/safetensors could not read ``path``, in our words: torch's own text suggests ``weights_only=False``,
    which would run whatever code the file holds, so it is never passed on."""
    import re

    text = str(err)
    if "Weights only load failed" in text:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text) or re.search(r"GLOBAL ([\w.]+)", text)
        what = f" ({found.group(1)})" if found else ""
        return (
            f"it holds Python objects besides tensors{what}, which loading would have to execute; the course reads "
            "weights with torch.load(weights_only=True) and ran nothing from it"
        )
    if "PytorchStreamReader" in text or "zip archive" in text or isinstance(err, EOFError):
        return "it is truncated or corrupt (its PyTorch zip archive is incomplete)"
    if "SafetensorError" in type(err).__name__ or "deserializ" in text:
        return f"it is truncated or corrupt (safetensors: {text.splitlines()[0][:200]})"
    try:
        head = path.read_bytes()[:16]
    except OSError:
        head = b""
    return f"it is not a PyTorch or safetensors weights file (it starts with {head!r})"


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict (name -> tensor) from a ``.pth`` / ``.safetensors`` file, never executing code from it: every
    failure is a :class:`WeightsError` naming the file and the fix."""
    if not path.is_file():
        raise WeightsError(
            f"weights file {path} does not exist; pass an existing .pth/.safetensors path, 'hub', 'fit3d' or 'random'"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: object = load_file(str(path))
        else:
            with warnings.catch_warnings():  # "Detected pickle protocol 4": harmless, and confusing next to our error
                warnings.simplefilter("ignore", UserWarning)
                sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(f"cannot read weights file {path}: {_why_unreadable(path, err)}. {_WEIGHTS_FIX}") from None
    for key in ("state_dict", "model", "backbone"):  # common wrappers
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd:
        kind = "an empty dict" if isinstance(sd, dict) else f"a {type(sd).__name__}"
        raise WeightsError(
            f"weights file {path} holds {kind}, not a state dict (parameter name -> tensor). {_WEIGHTS_FIX}"
        )
    odd = [str(k) for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if odd:
        raise WeightsError(
            f"weights file {path} is not a state dict: {len(odd)} entries are not name -> tensor ({odd[:3]}). "
            f"{_WEIGHTS_FIX}"
        )
    return sd


def load_state_dict_checked(model: nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    """Load ``sd`` strictly; a checkpoint for another model or width gets an error naming the mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and sd[k].shape != own[k].shape and k != "pos_embed"
    ]
    if missing or unexpected or shapes:
        width = own["cls_token"].shape[-1] if "cls_token" in own else "?"
        raise WeightsError(
            f"checkpoint {source} does not fit this backbone ({type(model).__name__}, width {width}): "
            f"{len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, "
            f"shape mismatches {shapes[:3]}. "
            "Was it saved from another model or width? Pick the matching `model=`."
        )
    if "pos_embed" in sd and sd["pos_embed"].shape != own["pos_embed"].shape:
        from timm.layers import resample_abs_pos_embed

        npt = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
        grid = model.patch_embed.grid_size
        sd = dict(sd)
        sd["pos_embed"] = resample_abs_pos_embed(sd["pos_embed"], new_size=grid, num_prefix_tokens=npt)
    model.load_state_dict(sd, strict=True)


def _offline() -> bool:
    return os.environ.get("FIT3D_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"


@functools.cache
def host_reachable(host: str = "huggingface.co", port: int = 443, timeout: float = 3.0) -> bool:
    """One quick TCP connect, so that an offline machine falls back in seconds, not after a minute of retries."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _hf_offline(enabled: bool) -> Iterator[None]:
    """Make huggingface_hub use its local cache only (a cached model still loads offline, and fast)."""
    if not enabled:
        yield
        return
    import huggingface_hub.constants as hf_constants

    old = hf_constants.HF_HUB_OFFLINE
    hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hf_constants.HF_HUB_OFFLINE = old


@dataclass
class Backbone:
    """A timm ViT plus what the rest of the course needs to know about it."""

    model: nn.Module
    name: str  # short name, e.g. "dinov2_small"
    weights: str  # "hub" | "fit3d" | "random" | "file:<path>"
    device: torch.device
    source_id: str | None = None  # who made these weights, when a stage did (e.g. "finetune/<hash>"); keys use it
    bf16: bool = False  # run the ViT under bfloat16 autocast (``precision``: see :func:`resolve_precision`)
    patch_size: int = field(init=False)
    dim: int = field(init=False)

    def __post_init__(self) -> None:
        self.patch_size = int(self.model.patch_embed.patch_size[0])
        self.dim = int(self.model.embed_dim)

    @property
    def is_random(self) -> bool:
        return self.weights == "random"

    def grid_size(self, height: int, width: int, fit: str = "resize") -> tuple[int, int]:
        """Token grid for an image of this size: ``"resize"`` floors each side to a patch multiple (as the official
        stages 1 and 2: 876×584 -> 868×574, 62×41 tokens), ``"pad"`` rounds up (the official probes pad)."""
        p = self.patch_size
        if fit == "pad":
            return max(1, -(-height // p)), max(1, -(-width // p))
        return max(1, height // p), max(1, width // p)

    def preprocess(self, images: torch.Tensor, fit: str = "resize") -> torch.Tensor:
        """[B, 3, H, W] in 0..1 -> ImageNet-normalised, its sides a multiple of the patch size.

        ``fit="resize"``: bilinear resize down to the multiple (stages 1 and 2 of the official code); ``"pad"``:
        zero-pad (after normalisation) centred up to the multiple, as the official evaluation's ``CenterPadding``.
        """
        if fit not in ("resize", "pad"):
            raise ValueError(f"fit must be 'resize' or 'pad', got {fit!r}")
        h, w = self.grid_size(images.shape[-2], images.shape[-1], fit)
        size = (h * self.patch_size, w * self.patch_size)
        mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        if fit == "resize" and tuple(images.shape[-2:]) != size:
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        x = (images - mean) / std
        if fit == "pad" and tuple(x.shape[-2:]) != size:
            dh, dw = size[0] - x.shape[-2], size[1] - x.shape[-1]
            x = F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
        return x

    def forward_tokens(
        self, images: torch.Tensor, *, norm: bool = True, fit: str = "resize"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable features: images [B, 3, H, W] in 0..1 -> (patch [B, D, h, w], cls [B, D]) of the last block.

        ``norm=True``: after the final LayerNorm (timm's ``forward_features``; stages 1, 2 and the segmentation probe);
        ``norm=False``: before it (the official depth probe's ``final_norm=False``).
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W] in 0..1, got {tuple(images.shape)}")
        x = self.preprocess(images.to(self.device), fit)
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            if norm:
                tokens = self.model.forward_features(x)  # [B, prefix + h*w, D], after the final norm
                npt = self.model.num_prefix_tokens
                patch = tokens[:, npt:].transpose(1, 2).reshape(tokens.shape[0], self.dim, h, w)  # [B, D, h, w]
                return patch.float(), tokens[:, 0].float()
            last = len(self.model.blocks) - 1
            ((patch, prefix),) = self.model.forward_intermediates(
                x, indices=[last], norm=False, return_prefix_tokens=True, output_fmt="NCHW", intermediates_only=True
            )  # patch [B, D, h, w], prefix [B, npt, D]
        return patch.float(), prefix[:, 0].float()

    @torch.no_grad()
    def features_pre_and_post_norm(
        self, images: torch.Tensor, batch_size: int = 8, *, fit: str = "resize"
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frozen features before and after the final LayerNorm from ONE forward (the probes need both: segmentation
        the normed tokens, depth the pre-norm ones): (patch, cls, patch_pre, cls_pre), on the CPU."""
        was_training = self.model.training
        self.model.eval()
        out: list[list[torch.Tensor]] = [[], [], [], []]
        for i in range(0, images.shape[0], batch_size):
            pre, cls_pre = self.forward_tokens(images[i : i + batch_size], norm=False, fit=fit)  # [B, D, h, w], [B, D]
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                post = self.model.norm(pre.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).float()
                cls = self.model.norm(cls_pre).float()
            for lst, t in zip(out, (post, cls, pre, cls_pre)):
                lst.append(t.float().cpu())
        self.model.train(was_training)
        return tuple(torch.cat(t) for t in out)  # type: ignore[return-value]

    @torch.no_grad()
    def features(
        self, images: torch.Tensor, batch_size: int = 8, *, norm: bool = True, fit: str = "resize"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen features in eval mode, batched, returned on the CPU: (patch [N, D, h, w], cls [N, D])."""
        was_training = self.model.training
        self.model.eval()
        patches, clss = [], []
        for i in range(0, images.shape[0], batch_size):
            p, c = self.forward_tokens(images[i : i + batch_size], norm=norm, fit=fit)
            patches.append(p.float().cpu())
            clss.append(c.float().cpu())
        self.model.train(was_training)
        return torch.cat(patches), torch.cat(clss)

    def state_version(self) -> tuple[int, ...]:
        """Changes whenever the model's weights change (optimiser steps, ``load_state_dict``, a ``.data`` swap such as
        a LoRA merge): the key of in-process memos of its features. PyTorch counts every in-place write to a tensor in
        ``Tensor._version``; a swap moves its storage. (Writes through ``p.data`` bypass both; this package has none.)
        """
        tensors = [*self.model.parameters(), *self.model.buffers()]
        return (id(self.model), *(x for t in tensors for x in (t.data_ptr(), t._version)))

    def identity(self) -> dict[str, str]:
        """What artifact keys record about the model: portable (a weights file by its content, not its path)."""
        w = self.source_id or self.weights
        if w.startswith("file:"):
            w = "file:" + file_digest(w[5:])
        out = {"backbone": self.name, "weights": w}
        if self.bf16:  # another precision, other features: part of every key that depends on them
            out["precision"] = "bf16"
        return out

    def describe(self) -> dict[str, object]:
        """What every stats.json records about the backbone."""
        return {
            "backbone": self.name,
            "timm_name": timm_name(self.name),
            "weights": self.weights,
            "dim": self.dim,
            "patch_size": self.patch_size,
        }


def file_digest(path: str | Path) -> str:
    """``<name>-<sha256[:12]>`` of a weights file, cached by (path, size, mtime): how keys name a local file."""
    p = Path(path)
    st = p.stat()
    return _digest(str(p.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return f"{Path(path).name}-{h.hexdigest()[:12]}"


def hub_cached(model: str) -> bool:
    """True when timm's pretrained weights of ``model`` are in the local Hugging Face cache (no network needed)."""
    from huggingface_hub import try_to_load_from_cache

    repo = hub_id(model)
    return any(
        isinstance(try_to_load_from_cache(repo, f), str)
        for f in ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin")
    )


def fit3d_cached_path(model: str) -> Path:
    """Where ``weights="fit3d"`` keeps (and first looks for) the released checkpoint: torch hub's checkpoint folder."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(fit3d_checkpoint_url(model)).name


def hub_cache_folder(model: str) -> Path:
    """Where huggingface_hub (and so timm) keeps ``model``'s pretrained weights: ``$HF_HOME/hub/models--<org>--<name>``
    (``HF_HUB_CACHE`` overrides it)."""
    import huggingface_hub.constants as hf_constants

    return Path(hf_constants.HF_HUB_CACHE) / ("models--" + hub_id(model).replace("/", "--"))


def missing_weights_message(model: str, who: str, err: BaseException | None = None) -> str:
    """Why ``weights="auto"`` stops instead of using random weights, with the cache paths to fill and how."""
    name = short_name(model)
    why = f" ({type(err).__name__})" if err is not None else ""
    who = who[:1].upper() + who[1:]
    return (
        f"backbone.weights='auto' could not load the pretrained {timm_name(name)} weights: they are not in the "
        f"Hugging Face cache and the hub could not be reached or did not serve them{why}. {who} does not run on "
        "random weights (only the smoke profile falls back to them). Fill the caches on a connected machine and "
        "copy them here: "
        f"`python -c \"import timm; timm.create_model('{timm_name(name)}', pretrained=True)\"` fills "
        f"{hub_cache_folder(name)} (timm/Hugging Face cache: HF_HOME or HF_HUB_CACHE move it); the released FiT3D "
        f"checkpoint ({fit3d_checkpoint_url(name)}) goes to {fit3d_cached_path(name)} (torch hub cache: TORCH_HOME "
        f"moves it). Or set backbone.weights=<path to a .pth/.safetensors state dict>, or backbone.weights=random to "
        "run on random weights on purpose (every output then says so)."
    )


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bfloat16 instructions (x86 ``avx512_bf16`` or ``amx_bf16``): there bf16 matmuls run about
    twice as fast as float32; elsewhere they are emulated, and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> bool:
    """Whether to run the ViT in bfloat16: ``"bf16"`` yes, ``"fp32"`` no, ``"auto"`` on CPUs that do it natively."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    if precision == "auto":
        return device.type == "cpu" and cpu_has_native_bf16()
    return precision == "bf16"


def load_backbone(
    model: str = "dinov2_small",
    weights: str = "auto",
    device: str | torch.device = "auto",
    *,
    seed: int = 0,
    precision: str = "fp32",
    refuse_random: str | None = None,
) -> Backbone:
    """Build the timm model and load weights from ``weights`` (see the module docstring).

    ``"hub"``, ``"auto"`` and ``"fit3d"`` use a cached file before they look at the network, so a second session
    offline (or a Colab runtime with the caches on Drive) works without a connection. ``refuse_random`` (e.g.
    ``"the 'paper' profile"``): ``"auto"`` raises :class:`WeightsError` with the cache paths to fill instead of falling
    back to a random init, since hours of GPU work on a random backbone would be wasted (an explicit
    ``weights="random"`` is still honoured).
    """
    dev = resolve_device(device)
    name = short_name(model)
    if weights == "random":
        net, source = _create(name, pretrained=False, seed=seed), "random"
    elif weights in ("hub", "auto"):
        try:
            with _hf_offline(_offline() or hub_cached(name) or not host_reachable()):
                net, source = _create(name, pretrained=True), "hub"
        except Exception as err:  # no network, no cache
            if weights == "auto" and refuse_random:
                raise WeightsError(missing_weights_message(name, refuse_random, err)) from None
            if weights == "hub":
                raise WeightsError(
                    f"could not load pretrained {timm_name(name)} from the hub ({hub_id(name)}): {err}. "
                    "Connect to the internet once (the weights are cached), pass weights='<path to .pth>', "
                    "or weights='random'."
                ) from err
            warnings.warn(
                f"{RANDOM_WEIGHTS_BANNER} (hub load of {hub_id(name)} failed: {type(err).__name__})", stacklevel=2
            )
            net, source = _create(name, pretrained=False, seed=seed), "random"
    elif weights == "fit3d":
        url = fit3d_checkpoint_url(name)
        cached = fit3d_cached_path(name)
        try:
            if cached.is_file():
                sd = _read_state_dict(cached)
            elif _offline() or not host_reachable():
                raise WeightsError(f"huggingface.co is not reachable (offline) and {cached} does not exist")
            else:
                cached.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(url, str(cached), progress=True)  # temp file, then an atomic move
                sd = _read_state_dict(cached)
        except Exception as err:
            raise WeightsError(
                f"could not load the released FiT3D checkpoint {url}: {err}. Download it on a connected machine to "
                f"{cached} (the course looks there first), or pass its local path as weights='<path>'."
            ) from err
        net = _create(name, pretrained=False)  # only now: a missing checkpoint fails in milliseconds
        load_state_dict_checked(net, sd, url)
        source = "fit3d"
    else:
        path = Path(weights)
        sd = _read_state_dict(path)  # a bad file fails before the model is built
        net = _create(name, pretrained=False)
        load_state_dict_checked(net, sd, str(path))
        source = f"file:{path}"
    return Backbone(
        model=net.to(dev).eval(), name=name, weights=source, device=dev, bf16=resolve_precision(precision, dev)
    )
