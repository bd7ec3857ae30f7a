"""minivit.analysis: attention extraction, rollout, mean attention distance and the
similarity of position embeddings; each against a small example worked out by hand."""
import math

import numpy as np
import pytest

import minivit
from minivit.analysis import (attention_maps, attention_rollout, cls_attention_map,
                              mean_attention_distance, patch_distances, pos_embed_similarity)


def small_vit(**kw):
    cfg = dict(img_size=(8, 12), patch_size=4, embed_dim=8, depth=3, num_heads=2, seed=0)
    return minivit.ViT(**{**cfg, **kw})


def random_attention(shape, seed=0, sharp=3.0):
    """Row-stochastic maps (a softmax over the last axis) of shape (L, B, H, T, T)."""
    s = sharp * np.random.default_rng(seed).standard_normal(shape)
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# --- attention_maps --------------------------------------------------------------------
def test_attention_maps_all_layers_and_heads_in_eval_mode(device, xp):
    """(L, B, H, T, T), the model's own maps, rows summing to 1 even with attention
    dropout on (eval mode inside), in chunks equal to one pass; the mode is restored."""
    model = small_vit(attn_drop_rate=0.5)              # in train mode, as built
    x = xp.asarray(np.random.default_rng(0).standard_normal((5, 3, 8, 12)), dtype=np.float32)
    logits, maps = attention_maps(model, x, batch_size=2, return_logits=True)
    assert model.training
    assert isinstance(maps, np.ndarray) and maps.shape == (3, 5, 2, 7, 7) and maps.dtype == np.float32
    np.testing.assert_allclose(maps.sum(-1), 1.0, atol=1e-5)
    model.eval()
    want_logits, want = model(x, return_attn=True)
    for layer in range(3):
        np.testing.assert_allclose(maps[layer], minivit.to_numpy(want[layer]), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(logits, minivit.to_numpy(want_logits), rtol=1e-5, atol=1e-6)
    # chunks change nothing but BLAS round-off (its blocking depends on the batch size)
    np.testing.assert_allclose(attention_maps(model, x, batch_size=5), maps, rtol=1e-5, atol=1e-7)
    assert not model.training


def test_cls_attention_map_reads_row_0_on_the_grid():
    T = 1 + 2 * 3
    a = np.arange(T * T, dtype=float).reshape(T, T)
    m = cls_attention_map(a, grid=(2, 3))
    assert np.array_equal(m, [[1, 2, 3], [4, 5, 6]])          # row-major: patch (r, c) = 1 + 3r + c
    assert cls_attention_map(np.zeros((4, 2, 10, 10))).shape == (4, 2, 3, 3)   # square by default
    with pytest.raises(ValueError, match="not a square grid"):
        cls_attention_map(a)


# --- attention_rollout -----------------------------------------------------------------
def test_rollout_hand_computed_two_layers():
    """One image, one head, T = 2.
    A_1 = [[1, 0], [1/2, 1/2]]  ->  (A_1 + I) / rowsum = [[1, 0], [1/4, 3/4]]
    A_2 = [[1/2, 1/2], [0, 1]]  ->                      [[3/4, 1/4], [0, 1]]
    R = A'_2 A'_1 = [[3/4 + 1/16, 3/16], [1/4, 3/4]]    (A'_1 A'_2 would differ)"""
    A1 = [[1.0, 0.0], [0.5, 0.5]]
    A2 = [[0.5, 0.5], [0.0, 1.0]]
    attn = np.array([A1, A2])[:, None, None]             # (L=2, B=1, H=1, 2, 2)
    R = attention_rollout(attn)
    np.testing.assert_allclose(R[0], [[13 / 16, 3 / 16], [1 / 4, 3 / 4]], atol=1e-15)
    # without the identity: the plain product A_2 A_1
    np.testing.assert_allclose(attention_rollout(attn, add_identity=False)[0],
                               np.array(A2) @ np.array(A1), atol=1e-15)


def test_rollout_hand_computed_max_fusion_normalises_rows():
    """Two heads, max fusion: rows of the fused map no longer sum to the same number, so
    dividing by the column sums instead of the row sums gives another answer.
    max(h1, h2) = [[0.9, 0.8], [0.6, 0.7]];  + I = [[1.9, 0.8], [0.6, 1.7]]
    rows sum to 2.7 and 2.3  ->  [[19/27, 8/27], [6/23, 17/23]]"""
    h1 = [[0.9, 0.1], [0.3, 0.7]]
    h2 = [[0.2, 0.8], [0.6, 0.4]]
    attn = np.array([[h1, h2]])[None]                    # (L=1, B=1, H=2, 2, 2)
    np.testing.assert_allclose(attention_rollout(attn, "max")[0],
                               [[19 / 27, 8 / 27], [6 / 23, 17 / 23]], atol=1e-15)


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
def test_rollout_rows_sum_to_one(fusion):
    """R is row-stochastic for every head fusion, on random maps and on a model's own."""
    attn = random_attention((4, 3, 3, 10, 10))
    R = attention_rollout(attn, fusion)
    assert R.shape == (3, 10, 10) and (R >= 0).all()
    np.testing.assert_allclose(R.sum(-1), 1.0, atol=1e-12)
    model = small_vit()
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 12)).astype(np.float32)
    R = attention_rollout(attention_maps(model, x), fusion)
    np.testing.assert_allclose(R.sum(-1), 1.0, atol=1e-6)
    assert cls_attention_map(R, model.grid_size).shape == (2, 2, 3)


def test_rollout_takes_a_list_of_layers_and_checks_arguments():
    attn = random_attention((2, 1, 2, 5, 5))
    assert np.array_equal(attention_rollout(list(attn)), attention_rollout(attn))
    with pytest.raises(ValueError, match="head_fusion must be one of"):
        attention_rollout(attn, "median")
    with pytest.raises(ValueError, match=r"\(L, B, H, T, T\)"):
        attention_rollout(attn[0])


# --- mean attention distance -----------------------------------------------------------
def test_patch_distances():
    d = patch_distances((2, 3), patch_size=4)
    assert d.shape == (6, 6) and np.array_equal(d, d.T) and not d.diagonal().any()
    assert d[0, 1] == 4 and d[0, 3] == 4 and d[0, 5] == pytest.approx(4 * math.sqrt(5))


def test_mean_attention_distance_hand_computed():
    """2x2 grid of 4-pixel patches (centre distances 0, 4, 4, 4 sqrt 2 from each corner).
    head 0: every query reads only itself                           -> 0
    head 1: uniform over the 4 patches, [CLS] ignored               -> (0 + 4 + 4 + 4 sqrt 2) / 4
    head 2: every query reads patch 0 only (not symmetric: query q sits dist(q, 0) away)
                                                                    -> (0 + 4 + 4 + 4 sqrt 2) / 4
    head 3: half on [CLS], half on the query itself                 -> 0
    head 4: half on [CLS], half on patch 3 (the far corner of 0)    -> (4 sqrt 2 + 4 + 4 + 0) / 4,
            or half that with renormalize=False (the [CLS] share counted as distance 0)
    head 5: query 0 half on [CLS], half on patch 3; the others read only themselves
            -> 4 sqrt 2 / 4 (2 sqrt 2 / 4 without renormalising); unequal [CLS] shares
            make a transposed map (keys for queries) give another value"""
    T = 5
    heads = np.zeros((6, T, T))
    heads[:, 0, 0] = 1                                   # the [CLS] query's row: ignored
    heads[0, 1:, 1:] = np.eye(4)
    heads[1, 1:, 1:] = 0.25
    heads[2, 1:, 1] = 1
    heads[3, 1:, 0] = 0.5
    heads[3, 1:, 1:] += 0.5 * np.eye(4)
    heads[4, 1:, 0] = 0.5
    heads[4, 1:, 4] = 0.5
    heads[5, 1:, 1:] = np.eye(4)
    heads[5, 1, :] = [0.5, 0, 0, 0, 0.5]
    attn = heads[None, None]                             # (L=1, B=1, H=6, T, T)
    far, r2 = (8 + 4 * math.sqrt(2)) / 4, math.sqrt(2)
    got = mean_attention_distance(attn, patch_size=4)
    np.testing.assert_allclose(got, [[0, far, far, 0, far, r2]], atol=1e-14)
    got = mean_attention_distance(attn, patch_size=4, renormalize=False)
    np.testing.assert_allclose(got, [[0, far, far, 0, far / 2, r2 / 2]], atol=1e-14)


def test_mean_attention_distance_averages_images_and_queries_on_a_model():
    model = small_vit()
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 12)).astype(np.float32)
    maps = attention_maps(model, x)
    mad = mean_attention_distance(maps, model.patch_size, model.grid_size)
    assert mad.shape == (3, 2)
    assert (mad >= 0).all() and (mad <= patch_distances(model.grid_size, 4).max()).all()
    one_by_one = [mean_attention_distance(maps[:, i:i + 1], 4, model.grid_size) for i in range(3)]
    np.testing.assert_allclose(mad, np.mean(one_by_one, axis=0), rtol=1e-12)


# --- position embeddings ---------------------------------------------------------------
def test_pos_embed_similarity_hand_computed():
    """Grid 1x3, embeddings at angles 0, 90 and 45 degrees, of different lengths (only
    the direction counts)."""
    e = np.array([[9.0, 9.0],                            # [CLS]: left out
                  [2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])[None]
    S = pos_embed_similarity(e, grid=(1, 3))
    h = 1 / math.sqrt(2)
    want = np.array([[1, 0, h], [0, 1, h], [h, h, 1]]).reshape(1, 3, 1, 3)
    np.testing.assert_allclose(S, want, atol=1e-15)


def test_pos_embed_similarity_recovers_rows_and_columns():
    """2x3 grid, E_(r,c) = [onehot(r), onehot(c)]: cos = ([r == r'] + [c == c']) / 2, so the
    map of patch (r, c) is 1 at (r, c), 1/2 on its row and column, 0 elsewhere (a
    column-major reshape would put them elsewhere)."""
    gh, gw = 2, 3
    e = np.zeros((1, 1 + gh * gw, gh + gw))
    for r in range(gh):
        for c in range(gw):
            e[0, 1 + r * gw + c, [r, gh + c]] = 1.0
    S = pos_embed_similarity(e, grid=(gh, gw))
    r, c = np.divmod(np.arange(gh * gw), gw)
    want = ((r[:, None] == r).astype(float) + (c[:, None] == c)) / 2
    np.testing.assert_allclose(S, want.reshape(gh, gw, gh, gw), atol=1e-15)


def test_pos_embed_similarity_of_a_model():
    model = small_vit()
    S = pos_embed_similarity(model)
    assert S.shape == (2, 3, 2, 3)
    N = 6
    flat = S.reshape(N, N)
    np.testing.assert_allclose(flat.diagonal(), 1.0, atol=1e-12)
    np.testing.assert_allclose(flat, flat.T, atol=1e-15)
    assert np.array_equal(S, pos_embed_similarity(model.state_dict()["pos_embed"], grid=(2, 3)))
