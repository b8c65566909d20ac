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
    assert B.fit3d_checkpoint_url("dinov2_small") == "https://huggingface.co/yuanwenyue/FiT3D/resolve/main/dinov2_small_finetuned.pth"
    assert B.fit3d_checkpoint_url("vit_small_patch14_reg4_dinov2.lvd142m").endswith("/dinov2_reg_small_finetuned.pth")
    assert B.hub_id("dinov2_small") == "timm/vit_small_patch14_dinov2.lvd142m"
    with pytest.raises(ValueError, match="unknown backbone"):
        B.timm_name("resnet50")


def test_features_shape_grid_and_cls(small: B.Backbone) -> None:
    imgs = torch.rand(2, 3, 168, 224)
    patch, cls = small.features(imgs)
    assert patch.shape == (2, 384, 12, 16) and cls.shape == (2, 384)
    # sizes not a multiple of the patch are resized to the nearest multiple
    patch2, _ = small.features(torch.rand(1, 3, 100, 150))
    assert patch2.shape[-2:] == (7, 11)
    # the patch tokens are the normed last-block tokens of timm's forward_features
    x = small.preprocess(imgs)
    ref = small.model.forward_features(x)[:, small.model.num_prefix_tokens :]
    assert torch.allclose(patch.flatten(2).transpose(1, 2), ref, atol=1e-5)


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
