"""Protocol maths (ASR, ROC AUC, Rank-k, CMC), quality metrics and image-processing attacks."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from facecloak.eval import attacks, metrics, protocols as P


# ----------------------------------------------------------------------------- verification


def test_threshold_separable():
    scores = [0.1, 0.2, 0.3, 0.6, 0.7, 0.8]
    same = [0, 0, 0, 1, 1, 1]
    t, acc = P.best_accuracy_threshold(scores, same)
    assert t == pytest.approx(0.45) and acc == 1.0


def test_threshold_tie_takes_smallest():
    # Sorted distinct 0.1, 0.5, 0.6, 0.9 -> candidates -0.9, 0.3, 0.55, 0.75, 1.9 with
    # accuracies 2/4, 3/4, 2/4, 3/4, 2/4: the two best tie, the smaller one wins.
    t, acc = P.best_accuracy_threshold([0.5, 0.9, 0.1, 0.6], [1, 1, 0, 0])
    assert t == pytest.approx(0.3) and acc == 0.75


def test_threshold_equal_scores_cannot_be_split():
    t, acc = P.best_accuracy_threshold([0.5, 0.5, 0.5], [1, 0, 1])
    assert t < 0.5 and acc == pytest.approx(2 / 3)


def test_threshold_matches_brute_force():
    rng = np.random.default_rng(1)
    scores = np.round(np.concatenate([rng.normal(0.6, 0.15, 60), rng.normal(0.2, 0.15, 60)]), 2)  # with ties
    same = np.r_[np.ones(60, bool), np.zeros(60, bool)]
    t, acc = P.best_accuracy_threshold(scores, same)
    brute = max(np.mean((scores >= c) == same) for c in np.r_[scores, scores + 1e-9, -9, 9])
    assert acc == pytest.approx(brute)
    assert np.mean((scores >= t) == same) == pytest.approx(acc)


def test_attack_success_ratio():
    assert P.attack_success_ratio([0.1, 0.3, 0.5, 0.7], 0.5) == 0.5  # 0.5 itself is "same"
    assert P.attack_success_ratio(np.array([0.9, 0.8]), 0.1) == 0.0
    with pytest.raises(ValueError):
        P.attack_success_ratio([], 0.5)


def test_roc_auc_known_and_brute_force():
    assert P.roc_auc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert P.roc_auc([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0]) == 0.0
    assert P.roc_auc([0.5] * 4, [1, 0, 1, 0]) == 0.5
    rng = np.random.default_rng(2)
    s = np.round(rng.normal(size=80), 1)  # many ties
    y = rng.random(80) < 0.4
    g, i = s[y], s[~y]
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in g for b in i])
    assert P.roc_auc(s, y) == pytest.approx(brute, abs=1e-12)


# ----------------------------------------------------------------------------- identification


SIM = np.array(
    [  # gallery ids: a    b    c    d
        [0.9, 0.2, 0.1, 0.0],  # probe a: rank 1
        [0.8, 0.5, 0.6, 0.1],  # probe b: a and c beat it -> rank 3
        [0.3, 0.3, 0.3, 0.2],  # probe c: ties with a and b -> 1 (optimistic) / 3 (pessimistic)
    ]
)
GAL = ["a", "b", "c", "d"]
PRB = ["a", "b", "c"]


def test_rank_of_true_and_ties():
    assert P.rank_of_true(SIM, PRB, GAL).tolist() == [1, 3, 1]
    assert P.rank_of_true(SIM, PRB, GAL, ties="pessimistic").tolist() == [1, 3, 3]


def test_rank_duplicate_gallery_identity_counts_once():
    sim = np.array([[0.5, 0.9, 0.8, 0.1]])
    # gallery: x, y, y, z; probe x is beaten by identity y only (twice in the gallery) -> rank 2
    assert P.rank_of_true(sim, ["x"], ["x", "y", "y", "z"]).tolist() == [2]
    # best true score counts: probe y's best is 0.9 -> rank 1
    assert P.rank_of_true(sim, ["y"], ["x", "y", "y", "z"]).tolist() == [1]


def test_rank_missing_identity_raises():
    with pytest.raises(ValueError, match="not in the gallery"):
        P.rank_of_true(SIM, ["a", "b", "zz"], GAL)


def test_cmc_and_rank_k():
    c = P.cmc(SIM, PRB, GAL, max_rank=4)
    np.testing.assert_allclose(c, [2 / 3, 2 / 3, 1, 1])
    assert P.cmc(SIM, PRB, GAL).shape == (4,)  # defaults to the number of gallery identities
    assert P.rank_k(SIM, PRB, GAL, 1) == pytest.approx(2 / 3)
    assert P.rank_k(SIM, PRB, GAL, 2, ties="pessimistic") == pytest.approx(1 / 3)


def test_identification_over_six_set_pairs():
    n = 6
    ids = [list(range(n))] * 3
    calls = []

    def similarity(p, g):
        calls.append((p, g))
        eye = np.eye(n)
        return -eye if p == 0 else eye  # probes from set 0: true match always ranked last

    out = P.identification_over_set_pairs(ids, similarity, max_rank=6)
    assert sorted(calls) == [(p, g) for p, g in itertools.permutations(range(3), 2)]
    # 2 of the 6 pairs have every rank = 6, the other 4 have rank 1
    assert out["rank1"] == pytest.approx(4 / 6) and out["rank5"] == pytest.approx(4 / 6)
    np.testing.assert_allclose(out["cmc"], [4 / 6] * 5 + [1.0])
    assert len(out["pairs"]) == 6 and out["pairs"][0][:2] == (0, 1) and out["pairs"][0][2] == 0.0


def test_cosine_similarity():
    a = np.array([[1.0, 0.0], [3.0, 4.0]])
    np.testing.assert_allclose(P.cosine_similarity(a, a), [[1, 0.6], [0.6, 1]])


# ----------------------------------------------------------------------------- metrics


def _smooth_image(seed: int, size: int = 64) -> np.ndarray:
    """A natural-ish RGB uint8 image: upsampled low-resolution noise."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size // 8, size // 8, 3)).astype(np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def test_psnr_known_values():
    a = np.zeros((8, 8, 3), np.uint8)
    assert metrics.psnr(a, a) == math.inf
    assert metrics.psnr(a, a + 255) == pytest.approx(0.0)
    assert metrics.psnr(a, a + 1) == pytest.approx(20 * math.log10(255))  # 48.13 dB
    b = a.copy()
    b[0, 0, 0] = 16  # MSE = 256 / 192
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 * 192 / 256))


def test_ssim_known_values():
    a = _smooth_image(0)
    assert metrics.ssim(a, a) == pytest.approx(1.0)
    # Two constant images 0 and 10: SSIM = C1 / (10^2 + C1), C1 = (0.01 * 255)^2.
    z = np.zeros((32, 32, 3))
    c1 = (0.01 * 255) ** 2
    assert metrics.ssim(z, z + 10) == pytest.approx(c1 / (100 + c1))


def test_ssim_matches_skimage():
    from skimage.metrics import structural_similarity

    a = _smooth_image(1, 80)
    rng = np.random.default_rng(3)
    for noise in (3, 20, 60):
        b = np.clip(a.astype(int) + rng.integers(-noise, noise + 1, a.shape), 0, 255).astype(np.uint8)
        ref = structural_similarity(
            a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1, data_range=255
        )
        assert metrics.ssim(a, b) == pytest.approx(ref, abs=1e-10)
        ta = torch.from_numpy(a).permute(2, 0, 1)[None].double() / 255
        tb = torch.from_numpy(b).permute(2, 0, 1)[None].double() / 255
        assert float(metrics.ssim_torch(ta, tb)) == pytest.approx(ref, abs=1e-9)


def test_ssim_map_locates_the_change_and_averages_to_ssim():
    a = _smooth_image(2, 64)
    b = a.copy()
    b[40:50, 40:50] = 255 - b[40:50, 40:50]  # one changed patch, bottom right
    m = metrics.ssim_map(a, b)
    assert m.shape == (64 - 10, 64 - 10)
    assert m.mean() == pytest.approx(metrics.ssim(a, b), abs=1e-12)
    # map position (i, j) is the window centred on pixel (i + 5, j + 5): far from the patch SSIM is 1
    assert np.allclose(m[:20, :20], 1.0) and m[35:45, 35:45].min() < 0.5
    with pytest.raises(ValueError, match="shape mismatch"):
        metrics.ssim_map(a, b[:-1])


def test_summarise():
    assert metrics.summarise([1, 2, 3, 10]) == {"mean": 4.0, "median": 2.5}
    assert metrics.summarise([30.0, math.inf, 40.0])["median"] == 40.0


# ----------------------------------------------------------------------------- attacks


def test_attack_registry_shapes():
    img = _smooth_image(4)
    assert set(attacks.ATTACKS) == {"median_blur", "gaussian_blur", "jpeg", "bit_depth"}
    for name, fn in attacks.ATTACKS.items():
        out = fn(img)
        assert out.shape == img.shape and out.dtype == np.uint8, name
        assert not np.array_equal(out, img), name
    with pytest.raises(ValueError):
        attacks.jpeg(img.astype(np.float32))


def test_bit_depth_levels():
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    out = attacks.ATTACKS["bit_depth"](img)
    levels = np.unique(out)
    assert len(levels) <= 8
    assert set(levels.tolist()) <= {0, 36, 73, 109, 146, 182, 219, 255}
    assert np.abs(out.astype(int) - img).max() <= math.ceil(255 / 14)  # half a quantisation step
    assert np.array_equal(attacks.bit_depth(out), out)  # idempotent


def test_median_blur_removes_impulses():
    img = np.full((32, 32, 3), 128, np.uint8)
    img[5, 7] = 255
    img[20, 3, 1] = 0
    assert np.all(attacks.ATTACKS["median_blur"](img) == 128)


def test_gaussian_blur_impulse_response():
    img = np.zeros((21, 21, 3), np.uint8)
    img[10, 10] = 255
    out = attacks.ATTACKS["gaussian_blur"](img).astype(float)
    w = np.exp(-np.arange(-2, 3) ** 2 / 8.0)
    w /= w.sum()
    expected = 255 * np.outer(w, w)
    np.testing.assert_allclose(out[8:13, 8:13, 0], expected, atol=1.0)
    assert out[:8].max() == 0  # 5x5 support only


def test_jpeg_quality_10_is_lossy_but_recognisable():
    img = _smooth_image(6, 128)
    q10 = metrics.psnr(img, attacks.ATTACKS["jpeg"](img))
    q95 = metrics.psnr(img, attacks.jpeg(img, quality=95))
    assert 18 < q10 < q95
    assert q95 > 35
