"""Tests of the 3D-awareness check on a synthetic scene: a textured plane seen by two pinhole cameras."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from fit3d_helpers.awareness import (
    awareness_table,
    correspondence_scores,
    correspondences,
    covisible_pairs,
    sample_features,
    token_centres,
)

H, W = 96, 128
GRID = (6, 8)  # 16-pixel patches
PLANE_Z = 3.0  # world plane z = 3


def _K(f: float = 100.0, cx: float = 64.0, cy: float = 48.0) -> torch.Tensor:
    return torch.tensor([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _c2w(yaw_deg: float, tx: float) -> torch.Tensor:
    a = math.radians(yaw_deg)
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3] = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    T[0, 3] = tx
    return T


def _plane_depth(K: torch.Tensor, c2w: torch.Tensor) -> torch.Tensor:
    """Analytic planar depth of the plane z = PLANE_Z at every pixel centre (c + 0.5, r + 0.5)."""
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5, indexing="ij"
    )
    rays = torch.stack([xs, ys, torch.ones_like(xs)], -1) @ torch.linalg.inv(K).T  # camera dirs, z = 1
    dirs_w = rays @ c2w[:3, :3].T
    return (PLANE_Z - c2w[2, 3]) / dirs_w[..., 2]  # planar depth = ray parameter for z-unit camera rays


def _scene():
    """View A = world frame; view B turned 6 degrees, moved 0.35 m, with different intrinsics."""
    ka, kb = _K(), _K(110.0, 60.0, 50.0)
    ca, cb = _c2w(0.0, 0.0), _c2w(6.0, 0.35)
    return (_plane_depth(ka, ca), ka, ca), (_plane_depth(kb, cb), kb, cb)


def _analytic_projection(uv_a: torch.Tensor, K_a: torch.Tensor, K_b: torch.Tensor, c2w_b: torch.Tensor) -> torch.Tensor:
    x = (uv_a[:, 0].double() - K_a[0, 2]) / K_a[0, 0] * PLANE_Z
    y = (uv_a[:, 1].double() - K_a[1, 2]) / K_a[1, 1] * PLANE_Z
    pw = torch.stack([x, y, torch.full_like(x, PLANE_Z)], 1)  # camera A = world frame
    w2c = torch.linalg.inv(c2w_b)
    pc = pw @ w2c[:3, :3].T + w2c[:3, 3]
    return (pc @ K_b.T)[:, :2] / pc[:, 2:3]


def _position_features(depth, K, c2w, grid_hw, q: torch.Tensor, omega: float = 0.7) -> torch.Tensor:
    """Features that are a fixed function of the 3D point seen at each token: a random orthonormal map of
    [cos, sin](omega * xyz). Cosine between two such features = mean_i cos(omega * dx_i): largest at the
    same 3D point and decreasing with distance over the scene (omega * extent < pi)."""
    pix = torch.floor(token_centres(grid_hw, (H, W)))
    z = depth[pix[:, 1].long(), pix[:, 0].long()]
    uv = pix + 0.5
    cam = torch.cat([uv, torch.ones_like(uv[:, :1])], 1) @ torch.linalg.inv(K).T * z[:, None]
    world = cam @ c2w[:3, :3].T + c2w[:3, 3]
    emb = torch.cat([torch.cos(omega * world), torch.sin(omega * world)], 1)  # [h*w, 6]
    return (emb @ q.T).T.reshape(q.shape[0], *grid_hw).float()  # [D, h, w]


def _orthonormal(d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, 6, generator=g, dtype=torch.float64))
    return q  # [d, 6], orthonormal columns: cosine preserved


def test_token_centres_convention():
    c = token_centres((16, 16), (224, 224))  # 14-pixel patches; pixel (r, c) centred at (c + 0.5, r + 0.5)
    assert c[0].tolist() == [7.0, 7.0] and c[1].tolist() == [21.0, 7.0] and c[16].tolist() == [7.0, 21.0]


def test_correspondences_match_analytic_projection():
    (da, K, ca), (db, Kb, cb) = _scene()
    uv_a, uv_b = correspondences(da, K, ca, db, Kb, cb, GRID, (H, W))
    expected = _analytic_projection(uv_a, K, Kb, cb)
    assert uv_a.shape == uv_b.shape and uv_a.shape[1] == 2
    assert torch.allclose(uv_b.double(), expected, atol=1e-3)
    # Every A token whose analytic projection lands inside B is kept (a plane occludes nothing).
    all_a = torch.floor(token_centres(GRID, (H, W))) + 0.5
    proj = _analytic_projection(all_a, K, Kb, cb)
    inside = (proj[:, 0] >= 0) & (proj[:, 0] < W) & (proj[:, 1] >= 0) & (proj[:, 1] < H)
    assert uv_a.shape[0] == int(inside.sum()) and 0 < uv_a.shape[0] < GRID[0] * GRID[1]
    # uv_a are the centres of the pixels under the token centres 16j + 8: 16j + 8.5.
    assert torch.all(uv_a % 16 == 8.5)


def test_correspondences_drop_occluded_and_invalid():
    (da, K, ca), (db, Kb, cb) = _scene()
    uv_a0, uv_b0 = correspondences(da, K, ca, db, Kb, cb, GRID)
    db_occ = db.clone()
    db_occ[:, :40] = 1.0  # something much closer covers B's left part
    uv_a1, uv_b1 = correspondences(da, K, ca, db_occ, Kb, cb, GRID)
    blocked = torch.floor(uv_b0[:, 0]) < 40
    assert blocked.any() and uv_a1.shape[0] == int((~blocked).sum())
    assert torch.allclose(uv_b1, uv_b0[~blocked])
    da_bad = da.clone()
    da_bad[:, :33] = 0.0
    da_bad[:16] = float("nan")
    uv_a2, _ = correspondences(da_bad, K, ca, db, Kb, cb, GRID)
    assert torch.all(uv_a2[:, 0] >= 33) and torch.all(uv_a2[:, 1] >= 16) and uv_a2.shape[0] > 0


def test_sample_features_hits_token_values_at_centres():
    feat = torch.randn(5, *GRID)
    got = sample_features(feat, token_centres(GRID, (H, W)).float(), (H, W))
    assert torch.allclose(got, feat.reshape(5, -1).T, atol=1e-6)


def test_scores_geometric_features_recall_one_random_features_chance():
    (da, K, ca), (db, Kb, cb) = _scene()
    uv_a, uv_b = correspondences(da, K, ca, db, Kb, cb, GRID)
    q = _orthonormal(32)
    fa, fb = _position_features(da, K, ca, GRID, q), _position_features(db, Kb, cb, GRID, q)
    s = correspondence_scores(fa, fb, uv_a, uv_b, (H, W), px_thresholds=(16, 32))
    assert s["n"] == uv_a.shape[0]
    assert s["recall@16px"] == 1.0 and s["recall@32px"] == 1.0
    assert s["cos_true"] > 0.99 and s["cos_random"] < s["cos_true"] - 0.1
    assert s["median_px_error"] <= 16 * math.sqrt(0.5) + 1e-6
    # Sub-token matching on upsampled B features gets closer than the token spacing.
    s_up = correspondence_scores(fa, fb, uv_a, uv_b, (H, W), px_thresholds=(16, 32), b_upsample=4)
    assert s_up["median_px_error"] < s["median_px_error"]

    recalls, chances, gaps = [], [], []
    for seed in range(8):
        g = torch.Generator().manual_seed(seed)
        ra, rb = torch.randn(32, *GRID, generator=g), torch.randn(32, *GRID, generator=g)
        r = correspondence_scores(ra, rb, uv_a, uv_b, (H, W), px_thresholds=(16, 32), seed=seed)
        recalls.append(r["recall@16px"])
        chances.append(r["chance@16px"])
        gaps.append(abs(r["cos_true"] - r["cos_random"]))
    mean_recall, mean_chance = sum(recalls) / len(recalls), sum(chances) / len(chances)
    assert 0.0 < mean_chance < 0.2
    assert abs(mean_recall - mean_chance) < 0.1
    assert sum(gaps) / len(gaps) < 0.1


def test_scores_with_no_correspondences_are_nan():
    empty = torch.zeros(0, 2)
    s = correspondence_scores(torch.randn(4, *GRID), torch.randn(4, *GRID), empty, empty, (H, W))
    assert s["n"] == 0 and math.isnan(s["recall@14px"]) and math.isnan(s["cos_true"])


def test_awareness_table_and_pairs():
    (da, K, ca), (db, Kb, cb) = _scene()
    q = _orthonormal(32)
    geo = torch.stack([_position_features(da, K, ca, GRID, q), _position_features(db, Kb, cb, GRID, q)])
    rnd = [torch.randn(32, *GRID), torch.randn(32, *GRID)]
    views = [SimpleNamespace(depth=da.numpy(), K=K.numpy(), cam_to_world=ca.numpy()), (db, Kb, cb)]
    pairs = covisible_pairs(views, GRID, min_overlap=0.3)
    assert {(a, b) for a, b, _ in pairs} == {(0, 1), (1, 0)}
    assert all(0.3 <= ov <= 0.95 for _, _, ov in pairs)

    table = awareness_table(views, pairs, {"geo": geo, "random": rnd, "fn": lambda i: geo[i]}, px_thresholds=(16, 32))
    assert set(table) == {"geo", "random", "fn"}
    assert table["geo"]["n_pairs"] == 2 and table["geo"]["recall@16px"] == 1.0
    assert table["fn"] == table["geo"]
    assert table["random"]["recall@16px"] < 0.5 and table["random"]["n"] == table["geo"]["n"]
    # Pooling: n is the sum over both directions.
    n01 = correspondences(da, K, ca, db, Kb, cb, GRID)[0].shape[0]
    n10 = correspondences(db, Kb, cb, da, K, ca, GRID)[0].shape[0]
    assert table["geo"]["n"] == n01 + n10
    with pytest.raises(ValueError):
        awareness_table([(None, K, ca), (db, Kb, cb)], [(0, 1)], {"geo": geo})


def test_covisible_pairs_spread_and_limit():
    K = _K()
    views = [(_plane_depth(K, _c2w(0.0, 0.4 * i)), K, _c2w(0.0, 0.4 * i)) for i in range(5)]
    every = covisible_pairs(views, GRID, min_overlap=0.0, max_overlap=1.0)
    assert len(every) == 20 and [p[2] for p in every] == sorted((p[2] for p in every), reverse=True)
    some = covisible_pairs(views, GRID, min_overlap=0.0, max_overlap=1.0, max_pairs=5)
    assert len(some) == 5 and some[0] == every[0] and some[-1] == every[-1]
    # Neighbours overlap more than views four steps apart.
    ov = {(a, b): o for a, b, o in every}
    assert ov[(0, 1)] > ov[(0, 4)]


def test_correspondences_image_border_is_exact():
    """B is A moved right so the plane shifts left by `shift` px: the first token column (pixel centre 8.5)
    lands at 8.5 - shift, inside B only while that is >= 0."""
    K = _K()
    ca = _c2w(0.0, 0.0)
    depth = _plane_depth(K, ca)
    n_tokens = GRID[0] * GRID[1]
    for shift, expected in ((8.3, n_tokens), (8.7, n_tokens - GRID[0])):
        cb = _c2w(0.0, shift * PLANE_Z / 100.0)
        uv_a, uv_b = correspondences(depth, K, ca, _plane_depth(K, cb), K, cb, GRID)
        assert uv_a.shape[0] == expected
        assert torch.allclose(uv_b[:, 0], uv_a[:, 0] - shift, atol=1e-4)
