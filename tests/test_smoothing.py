"""The smoothing control of notebook 05: the blur is matched to the rendered targets' smoothness, at equal budget."""

from __future__ import annotations

import pytest
import torch

from fit3d_helpers import ablations as A
from fit3d_helpers import finetune as FT
from fit3d_helpers.backbone import load_backbone


def _tokens(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 16, 6, 8, generator=g) + 0.5  # [N, D, h, w], noisy tokens sharing a mean direction


def test_blur_makes_tokens_smoother_and_zero_sigma_is_identity() -> None:
    x = _tokens()
    assert torch.equal(A.blur_tokens(x, 0.0), x)
    y = A.blur_tokens(x, 1.0)
    assert y.shape == x.shape
    assert torch.allclose(A.blur_tokens(torch.ones_like(x), 2.5), torch.ones_like(x))  # weights sum to one
    assert A.neighbour_cosine(y) > A.neighbour_cosine(x) + 0.2
    assert A.high_freq_fraction(y) < 0.5 * A.high_freq_fraction(x)


def test_blur_equals_a_replicate_padded_gaussian_convolution() -> None:
    x = _tokens(2)
    sigma, r = 1.7, 6  # r = ceil(3 sigma)
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
    k = k / k.sum()
    y = torch.nn.functional.pad(x.reshape(-1, 1, 6, 8), (r, r, r, r), mode="replicate")
    y = torch.nn.functional.conv2d(y, (k[:, None] * k[None, :])[None, None])  # the 2D kernel, by hand
    assert torch.allclose(A.blur_tokens(x, sigma), y.reshape(x.shape), atol=1e-5)


def test_match_sigma_recovers_the_smoothness_of_a_known_blur() -> None:
    x = _tokens(1)
    w = torch.ones_like(x[:, :1])
    w[:, :, :2] = 0.0  # anonymised rows do not count
    goal = A.neighbour_cosine(A.blur_tokens(x, 1.3), w)
    sigma = A.match_sigma(x, goal, w)
    assert sigma == pytest.approx(1.3, abs=1e-3)
    assert A.neighbour_cosine(A.blur_tokens(x, sigma), w) == pytest.approx(goal, abs=1e-4)
    assert A.match_sigma(x, A.neighbour_cosine(x, w) - 0.1, w) == 0.0  # already smoother: no blur
    assert A.match_sigma(x, 1.01, w, sigma_max=2.0) == 2.0  # unreachable: clipped


def test_control_matches_the_rendered_smoothness_at_the_same_budget(lifted, artifacts) -> None:
    cfg = FT.FinetuneConfig(lr=1e-4, checkpoint_every=100)
    bb = load_backbone("dinov2_small", "random", device="cpu")
    rendered = FT.finetune([lifted[0]], bb, cfg, val_lifts=[lifted[1]], root=artifacts)
    control = FT.finetune(
        [lifted[0]],
        load_backbone("dinov2_small", "random", device="cpu"),
        cfg,
        val_lifts=[lifted[1]],
        root=artifacts,
        targets_from=A.SmoothedOwnFeatures(),
    )
    assert control.path != rendered.path  # its own artifact (the key says what the targets were)
    for k in ("steps", "train_views", "lr", "epochs", "mask", "mode", "batch_per_process", "val_scenes"):
        assert control.stats[k] == rendered.stats[k], k  # the same budget
    assert control.stats["val_l1_before"] == rendered.stats["val_l1_before"]  # validated on the same targets
    (scene,) = control.stats["targets_from"]["per_scene"].values()
    assert 0 < scene["sigma_tokens"] < 8.0  # a real blur, not clipped
    assert scene["neighbour_cosine_smoothed"] == pytest.approx(scene["neighbour_cosine_rendered"], abs=1e-3)
    assert scene["neighbour_cosine_own"] < scene["neighbour_cosine_rendered"]
    assert rendered.losses["loss"] != control.losses["loss"]  # other targets, so another run


def test_control_keeps_views_and_masks(lifted, vit_small, artifacts) -> None:
    t, _ = FT.scene_targets(lifted[0], vit_small, root=artifacts)
    (s,), stats = A.SmoothedOwnFeatures()([t], vit_small)
    assert torch.equal(s.images, t.images) and torch.equal(s.masks, t.masks)
    assert s.targets.shape == t.targets.shape and not torch.equal(s.targets, t.targets)
    own, _ = vit_small.forward_tokens(t.images)
    sigma = stats["per_scene"][t.scene]["sigma_tokens"]
    assert torch.allclose(s.targets, A.blur_tokens(own.cpu(), sigma), atol=1e-5)  # the backbone's own, blurred
