"""Operating points and the same-photo protocol, on hand-built numbers (issues 9 and 13)."""
from __future__ import annotations

import numpy as np
import pytest

from facecloak.eval import protocols as P
from facecloak.eval import thresholds as T


# ----------------------------------------------------------------------------- FAR threshold


def test_far_threshold_accepts_at_most_the_allowed_impostors():
    # 2,000 impostor scores 0.000, 0.001, ..., 1.999 (shuffled): FAR 1e-3 allows m = 2 of them,
    # so the threshold sits just above the third largest, 1.997, and accepts 1.998 and 1.999.
    s = np.random.default_rng(0).permutation(np.arange(2000) / 1000)
    t = T.far_threshold(s, 1e-3)
    assert 1.997 < t < 1.998
    assert T.false_accept_rate(s, t) == pytest.approx(2 / 2000)
    # ... and it is the smallest such threshold: the third largest itself would be accepted too.
    assert T.false_accept_rate(s, 1.997) == pytest.approx(3 / 2000)


def test_far_threshold_with_ties_never_exceeds_the_target():
    # 1,000 scores, the top three equal: m = 1 but the tie cannot be split, so nothing above is
    # accepted and FAR falls to 0 rather than rising to 3e-3.
    s = np.r_[np.zeros(997), [0.9, 0.9, 0.9]]
    t = T.far_threshold(s, 1e-3)
    assert t > 0.9 and T.false_accept_rate(s, t) == 0.0


def test_far_threshold_of_a_small_set_lies_above_every_score():
    s = np.array([0.1, 0.4, 0.3])
    t = T.far_threshold(s, 1e-3)  # m = 0: no impostor may be accepted
    assert 0.4 < t < 0.4 + 1e-12


def test_far_threshold_rejects_bad_input():
    with pytest.raises(ValueError):
        T.far_threshold([], 1e-3)
    with pytest.raises(ValueError):
        T.far_threshold([0.1], 0.0)


# ----------------------------------------------------------------------------- published rules


def test_sface_published_rule_is_opencv_cosine():
    rule = T.PUBLISHED["sface"]
    assert (rule.metric, rule.value, rule.score_threshold()) == ("cosine", 0.363, 0.363)
    a, b = np.array([[1.0, 0.0]]), np.array([[0.363, np.sqrt(1 - 0.363**2)]]) * 5  # norm does not matter
    assert T.rule_scores("cosine", a, b)[0] == pytest.approx(0.363)


def test_dlib_published_rule_uses_raw_euclidean_distance():
    rule = T.PUBLISHED["dlib_resnet"]
    assert (rule.metric, rule.value) == ("euclidean_raw", 0.6)
    # Raw descriptors of norm 0.5 (not unit): 0.55 apart -> same person by dlib's rule...
    a = np.array([[0.5, 0.0], [0.5, 0.0]])
    b = np.array([[0.5 - 0.55, 0.0], [0.5, 0.65]])  # second pair: 0.65 apart -> different people
    s = T.rule_scores("euclidean_raw", a, b)
    assert s == pytest.approx([-0.55, -0.65])
    genuine = s >= rule.score_threshold()
    assert genuine.tolist() == [True, False]
    # ...while on unit vectors the first pair would be cos -1: the rule must see the raw norms.
    assert T.rule_scores("cosine", a, b)[0] == pytest.approx(-1.0)


def test_cosine_equivalent_of_a_distance():
    assert T.cosine_equivalent(0.6, 1.0, 1.0) == pytest.approx(1 - 0.36 / 2)  # 0.82 on unit vectors
    # Norm 0.5 vectors at cos c are sqrt(0.5 - 0.5 c) apart; invert that.
    c = 0.3
    d = np.sqrt(0.25 + 0.25 - 2 * 0.25 * c)
    assert T.cosine_equivalent(d, 0.5, 0.5) == pytest.approx(c)
    # Checked against two concrete vectors of different norms.
    a, b = np.array([0.6, 0.1, -0.2]), np.array([0.3, 0.5, 0.1])
    assert T.cosine_equivalent(np.linalg.norm(a - b), np.linalg.norm(a), np.linalg.norm(b)) == pytest.approx(
        a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_recognizers_without_a_published_point_say_so():
    assert T.PUBLISHED["facenet_casia"] is None and T.PUBLISHED["arcface_mbf"] is None


# ----------------------------------------------------------------------------- same photo, impostors


def test_same_photo_asr_reads_the_diagonal():
    # Rows: de-identified faces; columns: their originals. Off-diagonal scores (other photos)
    # are high on purpose: the protocol must ignore them.
    sim = np.array([[0.10, 0.9, 0.9], [0.9, 0.50, 0.9], [0.9, 0.9, 0.35]])
    assert P.same_photo_asr(sim, 0.4) == pytest.approx(2 / 3)  # 0.10 and 0.35 are below 0.4
    assert P.same_photo_asr(sim, 0.35) == pytest.approx(1 / 3)  # equal to the threshold: still a match
    with pytest.raises(ValueError):
        P.same_photo_asr(np.zeros((2, 3)), 0.5)


def test_impostor_scores_take_each_pair_of_different_people_once():
    sim = np.arange(16, dtype=float).reshape(4, 4)
    labels = ["a", "a", "b", "c"]
    # pairs (0,2) (0,3) (1,2) (1,3) (2,3); (0,1) is one person, the diagonal is no pair
    assert sorted(P.impostor_scores(sim, labels).tolist()) == [2.0, 3.0, 6.0, 7.0, 11.0]
    n = 500
    assert P.impostor_scores(np.zeros((n, n)), np.arange(n)).size == n * (n - 1) // 2


def test_enough_fakes_are_added_for_100k_impostor_pairs():
    from facecloak.eval.impostors import MIN_PAIRS, fakes_needed

    labels = [f"p{i // 10}" for i in range(300)]  # 30 people x 10 faces: 43,500 real impostor pairs
    n = fakes_needed(labels)

    def pairs(k):
        every = P.impostor_scores(np.zeros((300 + k,) * 2), labels + [f"fake{j}" for j in range(k)])
        return every.size

    assert pairs(n) >= MIN_PAIRS > pairs(n - 1)
    assert fakes_needed(labels, min_pairs=10) == 0
