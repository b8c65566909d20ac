"""Backbone loading and features, offline: random init and local files; hub/FiT3D paths checked without the network."""

from __future__ import annotations

import pytest
import torch

from fit3d_helpers import backbone as B


@pytest.fixture(scope="module")
def small() -> B.Backbone:
    return B.load_backbone("dinov2_small", "random", device="cpu")


def test_names_and_urls_without_network() -> None:
    assert B.timm_name("dinov2_small") == "vit_small_patch14_dinov2.lvd142m"
    assert B.short_name("vit_base_patch16_clip_384.laion2b_ft_in12k_in1k") == "clip_base"
    assert (
        B.fit3d_checkpoint_url("dinov2_small")
        == "https://huggingface.co/yuanwenyue/FiT3D/resolve/main/dinov2_small_finetuned.pth"
    )
    assert B.fit3d_checkpoint_url("vit_small_patch14_reg4_dinov2.lvd142m").endswith("/dinov2_reg_small_finetuned.pth")
    assert B.hub_id("dinov2_small") == "timm/vit_small_patch14_dinov2.lvd142m"
    with pytest.raises(ValueError, match="unknown backbone"):
        B.timm_name("resnet50")


def test_features_shape_grid_and_cls(small: B.Backbone) -> None:
    imgs = torch.rand(2, 3, 168, 224)
    patch, cls = small.features(imgs)
    assert patch.shape == (2, 384, 12, 16) and cls.shape == (2, 384)
    # sizes not a multiple of the patch: resized down to the multiple, as the official stages 1 and 2 (876x584 -> 62x41)
    assert small.grid_size(584, 876) == (41, 62) and small.grid_size(584, 876, "pad") == (42, 63)
    patch2, _ = small.features(torch.rand(1, 3, 100, 150))
    assert patch2.shape[-2:] == (7, 10)
    # ... or centre-padded up to it, as the official probes (zeros after normalisation)
    padded = small.preprocess(torch.ones(1, 3, 100, 150), fit="pad")
    assert padded.shape[-2:] == (112, 154) and float(padded[..., :6, :].abs().max()) == 0  # 12 rows: 6 on top
    assert float(padded[..., 6, 2:152].abs().min()) > 0 and float(padded[..., :, :2].abs().max()) == 0
    # the patch tokens are the normed last-block tokens of timm's forward_features
    x = small.preprocess(imgs)
    ref = small.model.forward_features(x)[:, small.model.num_prefix_tokens :]
    assert torch.allclose(patch.flatten(2).transpose(1, 2), ref, atol=1e-5)


def test_pre_layernorm_tokens_for_the_depth_probe(small: B.Backbone) -> None:
    """The official depth probe reads the last block before the final LayerNorm (final_norm=False), CLS included."""
    imgs = torch.rand(2, 3, 56, 84)
    pre_patch, pre_cls = small.features(imgs, norm=False)
    post_patch, post_cls = small.features(imgs)
    x = small.preprocess(imgs)
    m = small.model
    tokens = m.blocks(m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(x)))))  # forward_features without m.norm
    assert torch.allclose(pre_cls, tokens[:, 0], atol=1e-5)
    assert torch.allclose(pre_patch.flatten(2).transpose(1, 2), tokens[:, m.num_prefix_tokens :], atol=1e-5)
    assert torch.allclose(post_cls, m.norm(tokens)[:, 0], atol=1e-5) and not torch.allclose(pre_cls, post_cls)


def test_random_init_is_seeded_and_flagged(small: B.Backbone) -> None:
    again = B.load_backbone("dinov2_small", "random", device="cpu")
    assert again.weights == "random" and again.is_random
    assert torch.equal(small.model.pos_embed, again.model.pos_embed)
    assert small.describe()["weights"] == "random"


def test_auto_falls_back_to_random_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIT3D_OFFLINE", "1")
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        bb = B.load_backbone("dinov2_small", "auto", device="cpu")
    assert bb.weights == "random"


def test_hub_and_fit3d_offline_errors_name_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIT3D_OFFLINE", "1")
    with pytest.raises(B.WeightsError, match="weights='random'"):
        B.load_backbone("dinov2_small", "hub", device="cpu")
    with pytest.raises(B.WeightsError, match="dinov2_small_finetuned.pth"):
        B.load_backbone("dinov2_small", "fit3d", device="cpu")


def test_local_file_roundtrip_and_wrong_model(tmp_path, small: B.Backbone) -> None:
    path = tmp_path / "w.pth"
    torch.save(small.model.state_dict(), path)
    loaded = B.load_backbone("dinov2_small", str(path), device="cpu")
    assert loaded.weights == f"file:{path}"
    x = torch.rand(1, 3, 56, 56)
    assert torch.allclose(loaded.features(x)[0], small.features(x)[0])
    with pytest.raises(B.WeightsError, match="does not fit this backbone"):
        B.load_backbone("dinov2_base", str(path), device="cpu")
    with pytest.raises(B.WeightsError, match="does not exist"):
        B.load_backbone("dinov2_small", str(tmp_path / "missing.pth"), device="cpu")


# ---------------------------------------------------------------------------------------------- stand-in weights


@pytest.fixture
def caches(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """Empty Hugging Face and torch hub caches in tmp_path, and a network that must not be touched."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.delenv("FIT3D_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(hf_constants, "HUGGINGFACE_HUB_CACHE", str(tmp_path / "hf"), raising=False)
    old_hub = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torch_hub"))

    def no_network(*args, **kwargs):
        raise AssertionError("the network was consulted although a cached file exists")

    monkeypatch.setattr(B, "host_reachable", no_network)
    yield tmp_path
    torch.hub.set_dir(old_hub)


def _stand_in_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """A random state dict in timm's format for ViT-S/14 (what the hub and the FiT3D release hold, other values)."""
    return {
        k: v.clone()
        for k, v in B.load_backbone("dinov2_small", "random", device="cpu", seed=seed).model.state_dict().items()
    }


def test_hub_and_auto_load_from_the_hugging_face_cache_offline(caches) -> None:
    from safetensors.torch import save_file

    sd = _stand_in_state_dict(7)
    rev = "0123456789abcdef0123456789abcdef01234567"
    repo = caches / "hf" / "models--timm--vit_small_patch14_dinov2.lvd142m"
    (repo / "snapshots" / rev).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(repo / "snapshots" / rev / "model.safetensors"))
    assert B.hub_cached("dinov2_small")
    for weights in ("hub", "auto"):
        bb = B.load_backbone("dinov2_small", weights, device="cpu")
        assert bb.weights == "hub" and not bb.is_random
        got = bb.model.state_dict()
        assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd), weights


def test_fit3d_loads_the_cached_release_offline(caches) -> None:
    sd = _stand_in_state_dict(11)
    path = B.fit3d_cached_path("dinov2_small")
    assert path == caches / "torch_hub" / "checkpoints" / "dinov2_small_finetuned.pth"
    path.parent.mkdir(parents=True)
    torch.save(sd, path)
    bb = B.load_backbone("dinov2_small", "fit3d", device="cpu")
    assert bb.weights == "fit3d" and bb.identity() == {"backbone": "dinov2_small", "weights": "fit3d"}
    got = bb.model.state_dict()
    assert all(torch.equal(got[k], sd[k]) for k in sd)
    path.unlink()
    with pytest.raises(B.WeightsError, match="network was consulted"):  # no cache: only then is the network asked
        B.load_backbone("dinov2_small", "fit3d", device="cpu")


def test_one_forward_gives_both_kinds_of_features(small: B.Backbone) -> None:
    imgs = torch.rand(3, 3, 56, 84)
    post, cls, pre, cls_pre = small.features_pre_and_post_norm(imgs, batch_size=2)
    ref_post, ref_cls = small.features(imgs)
    ref_pre, ref_cls_pre = small.features(imgs, norm=False)
    for a, b in ((post, ref_post), (cls, ref_cls), (pre, ref_pre), (cls_pre, ref_cls_pre)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_precision_auto_is_bf16_only_where_the_cpu_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(B, "cpu_has_native_bf16", lambda: False)
    assert B.resolve_precision("auto", cpu) is False and B.resolve_precision("bf16", cpu) is True
    monkeypatch.setattr(B, "cpu_has_native_bf16", lambda: True)
    assert B.resolve_precision("auto", cpu) is True and B.resolve_precision("fp32", cpu) is False
    bb = B.load_backbone("dinov2_small", "random", device="cpu", precision="bf16")
    assert bb.identity()["precision"] == "bf16"  # another precision is another key
    patch, _ = bb.features(torch.rand(1, 3, 28, 28))
    assert patch.dtype == torch.float32
    with pytest.raises(ValueError, match="precision must be"):
        B.resolve_precision("fp16", cpu)


# ---------------------------------------------------------------------------------------------- bad weights files


class _Payload:
    """Unpickling this runs ``touch <marker>``: a weights file that carries code."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _bad_weights(kind: str, tmp_path):
    """(path of a bad weights file of this kind, the marker file its code would create)."""
    import pickle

    from safetensors.torch import save_file

    marker = tmp_path / "CODE_RAN"
    good = {"w": torch.zeros(64)}
    if kind == "pickle-with-code":
        path = tmp_path / "evil.pth"
        path.write_bytes(pickle.dumps({"pos_embed": _Payload(marker)}))
    elif kind == "torch-zip-with-code":
        path = tmp_path / "evil_zip.pth"
        torch.save({"model": {"pos_embed": _Payload(marker)}}, path)
    elif kind == "truncated-pth":
        path = tmp_path / "cut.pth"
        torch.save(good, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "empty-pth":
        path = tmp_path / "empty.pth"
        path.write_bytes(b"")
    elif kind == "bare-tensor":
        path = tmp_path / "tensor.pth"
        torch.save(torch.zeros(3, 4), path)
    elif kind == "not-a-state-dict":
        path = tmp_path / "meta.pth"
        torch.save({"epoch": 3, "lr": 0.1}, path)
    elif kind == "text":
        path = tmp_path / "notes.pth"
        path.write_text("hello, these are not weights\n")
    else:  # truncated-safetensors
        path = tmp_path / "cut.safetensors"
        save_file(good, str(path))
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path, marker


TORCH_HINTS = ("weights_only=False", "`weights_only` set to `False`")  # torch's advice, which would run the code
BAD_KINDS = ["pickle-with-code", "torch-zip-with-code", "truncated-pth", "empty-pth", "bare-tensor",
             "not-a-state-dict", "text", "truncated-safetensors"]  # fmt: skip


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_a_bad_weights_file_is_a_weights_error_naming_it_and_runs_no_code(kind: str, tmp_path) -> None:
    import traceback

    path, marker = _bad_weights(kind, tmp_path)
    with pytest.raises(B.WeightsError) as info:
        B.load_backbone("dinov2_small", str(path), device="cpu")
    text = "".join(traceback.format_exception(info.value))  # what a notebook shows, chained errors included
    assert str(path) in str(info.value) and "Fix:" in str(info.value), str(info.value)
    assert not any(hint in text for hint in TORCH_HINTS), text
    assert not marker.exists(), "loading the weights file executed code from it"
    if "code" in kind:
        assert "ran nothing" in str(info.value)
    if kind == "torch-zip-with-code":
        assert "(posix.system)" in str(info.value)  # what the file would have called


def test_a_corrupt_cached_release_is_an_error_without_torchs_hint(caches) -> None:
    path = B.fit3d_cached_path("dinov2_small")
    path.parent.mkdir(parents=True)
    bad, marker = _bad_weights("pickle-with-code", caches)
    path.write_bytes(bad.read_bytes())
    with pytest.raises(B.WeightsError) as info:
        B.load_backbone("dinov2_small", "fit3d", device="cpu")
    assert str(path) in str(info.value) and not any(h in str(info.value) for h in TORCH_HINTS)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------- random weights refused


def test_auto_refuses_random_weights_for_the_paper_and_nyu_profiles(caches, monkeypatch) -> None:
    """Offline with empty caches: smoke falls back loudly; paper and nyu stop, naming the cache folders to fill."""
    import warnings

    from fit3d_helpers import pipeline
    from fit3d_helpers.profiles import load_profile

    monkeypatch.setenv("FIT3D_OFFLINE", "1")
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        assert pipeline.backbone_for(load_profile("smoke"), "cpu").is_random
    for name in ("paper", "nyu"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no fallback warning either: it stops before building a random model
            with pytest.raises(B.WeightsError) as info:
                pipeline.backbone_for(load_profile(name), "cpu")
        msg = str(info.value)
        assert f"The {name!r} profile does not run on random weights" in msg, msg
        assert str(B.hub_cache_folder("dinov2_small")) in msg and str(B.fit3d_cached_path("dinov2_small")) in msg
        assert str(caches / "hf" / "models--timm--vit_small_patch14_dinov2.lvd142m") in msg
        assert "timm.create_model('vit_small_patch14_dinov2.lvd142m', pretrained=True)" in msg
        assert "backbone.weights=random" in msg  # the deliberate way, still allowed:
    paper_random = load_profile("paper", {"backbone.weights": "random"})
    assert pipeline.backbone_for(paper_random, "cpu").is_random
