"""Operating points of a recognizer: where "same person" begins.

Three kinds are reported for every recognizer (issue 13):

* ``best_accuracy``: the paper's protocol, the threshold with the best accuracy on the
  benchmark's own genuine + impostor pairs (:func:`facecloak.eval.protocols.best_accuracy_threshold`);
* ``far_1e-3``: the threshold at a false-accept rate of 1e-3 on a large impostor set built from
  training data only (:func:`far_threshold`, :mod:`facecloak.eval.impostors`); the default for the
  headline tables and for ``protect --verify``;
* ``published``: the recognizer's documented operating point (:data:`PUBLISHED`), or ``None``.

Convention everywhere: a *score* is a similarity, and a pair is judged genuine iff
``score >= threshold``. Distances are turned into scores by negation (:func:`rule_scores`), so
every ASR is ``mean(score < threshold)`` whatever the metric.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FAR_TARGET = 1e-3
KINDS = ("far_1e-3", "best_accuracy", "published")


def false_accept_rate(impostor_scores: np.ndarray, threshold: float) -> float:
    """FAR(t) = #{impostor pairs with score >= t} / #{impostor pairs}."""
    s = np.asarray(impostor_scores, dtype=np.float64).ravel()
    if s.size == 0:
        raise ValueError("no impostor scores given")
    return float(np.mean(s >= threshold))


def far_threshold(impostor_scores: np.ndarray, far: float = FAR_TARGET) -> float:
    """The smallest threshold t with FAR(t) <= ``far`` on these impostor scores.

    With n scores sorted in descending order s_(1) >= s_(2) >= ... and m = floor(far n), the
    threshold is the next float above s_(m+1): at most m impostor scores (those strictly above
    s_(m+1)) are accepted, and any lower threshold would accept s_(m+1) as well, i.e. more than
    m of them unless ties make that impossible. Needs n >= 1 / far for m >= 1 to be meaningful;
    with fewer scores it returns the threshold just above the largest one (FAR = 0).
    """
    s = np.asarray(impostor_scores, dtype=np.float64).ravel()
    if s.size == 0:
        raise ValueError("no impostor scores given")
    if not 0 < far < 1:
        raise ValueError(f"far must be in (0, 1), got {far}")
    m = int(math.floor(far * s.size + 1e-9))
    kth = np.partition(-s, m)[m] * -1.0  # s_(m+1), the (m+1)-th largest
    return float(np.nextafter(kth, np.inf))


# ------------------------------------------------------------------ published operating points
@dataclass(frozen=True)
class PublishedRule:
    """A documented decision rule: ``metric`` in {"cosine", "euclidean_raw"}, ``value``, ``source``.

    cosine: same person iff cos(a, b) >= value.
    euclidean_raw: same person iff ||a - b|| <= value on the recognizer's *raw* descriptors (not
    L2-normalised); as a score that is ``-||a - b|| >= -value``.
    """

    metric: str
    value: float
    source: str

    def score_threshold(self) -> float:
        """The threshold in score units (genuine iff score >= it)."""
        return -self.value if self.metric == "euclidean_raw" else self.value


PUBLISHED: dict[str, PublishedRule | None] = {
    # OpenCV's reference for FaceRecognizerSF (samples/dnn/face_detect.py and opencv_zoo's
    # face_recognition_sface demo): cosine_similarity_threshold = 0.363 (l2 threshold 1.128).
    "sface": PublishedRule("cosine", 0.363, "OpenCV FaceRecognizerSF sample: cosine >= 0.363"),
    # dlib's dnn_face_recognition_ex.cpp / face_recognition_model_v1 docs: "if two face descriptor
    # vectors have a Euclidean distance between them less than 0.6 then they are from the same
    # person" (99.38 % on LFW). The descriptors are not unit vectors, so the rule is applied to
    # the raw descriptors, not to cosines.
    "dlib_resnet": PublishedRule("euclidean_raw", 0.6, "dlib face recognition docs: Euclidean distance < 0.6"),
    # davidsandberg/facenet 20180408-102900 documents no fixed threshold: validate_on_lfw.py picks
    # the best-accuracy squared-L2 threshold per LFW fold (np.arange(0, 4, 0.01)) and does not
    # publish it, so there is no released operating point to report.
    "facenet_casia": None,
    # insightface's w600k_mbf release gives LFW/IJB figures, not a verification threshold.
    "arcface_mbf": None,
}


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm: x / ||x||."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def rule_scores(metric: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise scores of raw embeddings a (N, D) and b (N, D) under ``metric``.

    cosine: ``<a, b> / (||a|| ||b||)``; euclidean_raw: ``-||a - b||`` (raw, not normalised).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if metric == "cosine":
        return np.sum(unit(a) * unit(b), axis=-1)
    if metric == "euclidean_raw":
        return -np.linalg.norm(a - b, axis=-1)
    raise ValueError(f"unknown metric {metric!r}")


def cosine_equivalent(distance: float, norm_a: float, norm_b: float) -> float:
    """The cosine at which raw descriptors of norms ``norm_a``, ``norm_b`` are ``distance`` apart.

    From ``d^2 = |a|^2 + |b|^2 - 2 |a| |b| cos``: ``cos = (|a|^2 + |b|^2 - d^2) / (2 |a| |b|)``.
    For unit vectors this is ``1 - d^2 / 2``; dlib's 0.6 is then cos 0.82. It shows where a raw
    distance rule sits on the cosine scale of the other thresholds (at the median norm).
    """
    return float((norm_a**2 + norm_b**2 - distance**2) / (2.0 * norm_a * norm_b))
