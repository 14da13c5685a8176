"""Verification and identification protocols (paper section 4.3), from scores alone.

Everything here is pure numpy and works on similarity scores or similarity matrices, so the
maths is testable with hand-built numbers and independent of any recognizer.

Verification (1-to-1):
  1. calibrate a threshold on genuine + impostor pairs of *original* images
     (:func:`best_accuracy_threshold`);
  2. de-identify one image of each genuine pair and score it against the other;
  3. ASR = fraction of those genuine pairs now judged impostor (:func:`attack_success_ratio`).

Identification (1-to-N): probes are de-identified, the gallery holds originals; the rank of
each probe's true identity gives the CMC curve, Rank-1 and Rank-5. With 3 disjoint sets of one
image per person the paper averages over the 6 ordered (probe set, gallery set) pairs
(:func:`identification_over_set_pairs`).
"""
from __future__ import annotations

from typing import Callable, Literal, Sequence

import numpy as np

Ties = Literal["optimistic", "pessimistic"]


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(P,D) x (G,D) -> (P,G) matrix of ``<a_i, b_j> / (||a_i|| ||b_j||)``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def _check_pairs(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    same = np.asarray(same, dtype=bool).ravel()
    if scores.shape != same.shape or scores.size == 0:
        raise ValueError(f"scores and same must be non-empty and equally long, got {scores.shape} and {same.shape}")
    return scores, same


def best_accuracy_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Threshold with the highest verification accuracy, and that accuracy.

    A pair is judged *genuine* iff ``score >= threshold``. Accuracy is
    ``(#genuine with s >= t + #impostor with s < t) / n``.

    Candidates are exhaustive: the midpoints between consecutive *distinct* sorted scores,
    plus one threshold below the minimum (everything genuine) and one above the maximum
    (everything impostor), placed 1.0 beyond the extreme score. Equal scores cannot be split,
    so ties never produce extra candidates.

    When several candidates reach the best accuracy, the *smallest* is returned: the most
    lenient "same person" rule, which makes ASR (score < t) the hardest to achieve, so reported
    de-identification is never flattered by the tie-break.
    """
    scores, same = _check_pairs(scores, same)
    uniq = np.unique(scores)  # sorted, distinct
    cands = np.concatenate([[uniq[0] - 1.0], (uniq[:-1] + uniq[1:]) / 2.0, [uniq[-1] + 1.0]])
    # For each candidate t: genuine accepted = #genuine with s >= t, impostor rejected = #impostor with s < t.
    g = np.sort(scores[same])
    i = np.sort(scores[~same])
    tp = g.size - np.searchsorted(g, cands, side="left")
    tn = np.searchsorted(i, cands, side="left")
    acc = (tp + tn) / scores.size
    k = int(np.argmax(acc))  # argmax returns the first maximum = smallest threshold
    return float(cands[k]), float(acc[k])


def attack_success_ratio(genuine_scores_after: np.ndarray, threshold: float) -> float:
    """ASR = ``#{genuine pairs with score < threshold} / #{genuine pairs}``.

    The scores are those of genuine pairs after one image of each pair was de-identified;
    a pair below the threshold is judged impostor, i.e. the de-identification succeeded.
    """
    s = np.asarray(genuine_scores_after, dtype=np.float64).ravel()
    if s.size == 0:
        raise ValueError("no genuine scores given")
    return float(np.mean(s < threshold))


def same_photo_asr(sim: np.ndarray, threshold: float) -> float:
    """Same-photo ASR (issue 9): each de-identified face against *its own* original.

    ``sim`` is the (N, N) score matrix between de-identified faces (rows) and their originals
    (columns, same order), so the diagonal holds each face's score against its own photo:
    ``ASR_same = #{i : sim[i, i] < threshold} / N``. The hardest case for a protector, since an
    unprotected copy of the very same photo is the best gallery an attacker can have.
    """
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1] or sim.shape[0] == 0:
        raise ValueError(f"expected a non-empty square matrix, got shape {sim.shape}")
    return attack_success_ratio(np.diag(sim), threshold)


def impostor_scores(sim: np.ndarray, labels) -> np.ndarray:
    """Scores of every unordered pair (i < j) of *different* identities in a square ``sim`` (N, N).

    ``labels[i]`` is face i's identity; pairs of one identity and the diagonal are left out.
    N faces give up to N (N - 1) / 2 impostor pairs.
    """
    sim = np.asarray(sim, dtype=np.float64)
    lab = np.asarray(labels)
    if sim.shape != (lab.size, lab.size):
        raise ValueError(f"sim has shape {sim.shape}, expected ({lab.size}, {lab.size})")
    iu, ju = np.triu_indices(lab.size, k=1)
    keep = lab[iu] != lab[ju]
    return sim[iu[keep], ju[keep]]


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` in ascending order, ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # Group equal values: each group gets the mean of the positions it spans.
    starts = np.flatnonzero(np.concatenate([[True], xs[1:] != xs[:-1]]))
    ends = np.concatenate([starts[1:], [xs.size]])
    avg = (starts + ends + 1) / 2.0  # mean of 1-based positions start+1 .. end
    ranks = np.empty(x.size)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def roc_auc(scores: np.ndarray, same: np.ndarray) -> float:
    """Area under the ROC curve = P(genuine score > impostor score) + 0.5 P(equal).

    Computed with the Mann-Whitney statistic: with average ranks R over all scores,
    ``AUC = (sum_{genuine} R - n_g (n_g + 1) / 2) / (n_g n_i)``.
    """
    scores, same = _check_pairs(scores, same)
    n_g, n_i = int(same.sum()), int((~same).sum())
    if n_g == 0 or n_i == 0:
        raise ValueError("roc_auc needs both genuine and impostor pairs")
    r = _average_ranks(scores)
    return float((r[same].sum() - n_g * (n_g + 1) / 2.0) / (n_g * n_i))


def rank_of_true(
    sim: np.ndarray, probe_ids: Sequence, gallery_ids: Sequence, ties: Ties = "optimistic"
) -> np.ndarray:
    """1-based rank of each probe's true identity in its row of ``sim`` (P, G).

    With ``s*`` the best score of the probe's own identity in the gallery,
    ``rank = 1 + #{gallery entries of other identities with score > s*}`` (``ties="optimistic"``,
    the default: the recognizer wins ties, so de-identification is never credited for them),
    or with ``>=`` (``ties="pessimistic"``). Several gallery images of one identity count once,
    through their best score. Every probe identity must be in the gallery.
    """
    sim = np.asarray(sim, dtype=np.float64)
    pid = np.asarray(probe_ids)
    gid = np.asarray(gallery_ids)
    if sim.shape != (pid.size, gid.size):
        raise ValueError(f"sim has shape {sim.shape}, expected ({pid.size}, {gid.size})")
    match = pid[:, None] == gid[None, :]
    missing = ~match.any(axis=1)
    if missing.any():
        raise ValueError(f"probe identities not in the gallery: {sorted(set(pid[missing].tolist()))}")
    true_best = np.where(match, sim, -np.inf).max(axis=1, keepdims=True)
    others = np.where(match, -np.inf, sim)
    beats = others >= true_best if ties == "pessimistic" else others > true_best
    # Count distinct impostor identities only once each: take their best score per identity.
    if len(np.unique(gid)) != gid.size:
        beats = _per_identity_any(beats, gid)
    return 1 + beats.sum(axis=1)


def _per_identity_any(beats: np.ndarray, gid: np.ndarray) -> np.ndarray:
    """Collapse (P, G) booleans to (P, #identities): does any image of that identity beat the truth."""
    _, inv = np.unique(gid, return_inverse=True)
    out = np.zeros((beats.shape[0], inv.max() + 1), dtype=bool)
    for col, ident in enumerate(inv):
        out[:, ident] |= beats[:, col]
    return out


def cmc(
    sim: np.ndarray, probe_ids: Sequence, gallery_ids: Sequence, max_rank: int | None = None, ties: Ties = "optimistic"
) -> np.ndarray:
    """Cumulative Match Characteristic: ``CMC[k-1] = #{probes with rank <= k} / #probes``.

    ``max_rank`` defaults to the number of gallery identities (where the CMC reaches 1).
    """
    ranks = rank_of_true(sim, probe_ids, gallery_ids, ties)
    if max_rank is None:
        max_rank = len(np.unique(np.asarray(gallery_ids)))
    ks = np.arange(1, max_rank + 1)
    return (ranks[None, :] <= ks[:, None]).mean(axis=1)


def rank_k(sim: np.ndarray, probe_ids: Sequence, gallery_ids: Sequence, k: int, ties: Ties = "optimistic") -> float:
    """Rank-k identification rate = ``CMC[k-1]``: fraction of probes whose truth is in the top k."""
    return float(cmc(sim, probe_ids, gallery_ids, k, ties)[k - 1])


def identification_over_set_pairs(
    set_ids: Sequence[Sequence],
    similarity: Callable[[int, int], np.ndarray],
    max_rank: int = 10,
    ties: Ties = "optimistic",
) -> dict:
    """Rank-1, Rank-5 and CMC averaged over all ordered (probe set, gallery set) pairs.

    ``set_ids[s]`` lists the identities of set ``s`` (the paper: 3 sets, one image per person).
    ``similarity(p, g)`` must return the (len(set p), len(set g)) score matrix between the
    *de-identified* images of set ``p`` (probes) and the *original* images of set ``g`` (gallery);
    the caller decides how (cache embeddings, pick the recognizer, apply an attack...).

    For S sets there are S(S-1) ordered pairs (6 for 3 sets). Returns
    ``{"rank1", "rank5", "cmc" (mean curve, length max_rank), "pairs": [(p, g, rank1, rank5), ...]}``
    where each average is the plain mean over pairs: ``Rank-k = (1 / #pairs) sum_pairs CMC_pair[k-1]``.
    """
    if max_rank < 5:
        raise ValueError("max_rank must be at least 5 to report Rank-5")
    curves, pairs = [], []
    for p in range(len(set_ids)):
        for g in range(len(set_ids)):
            if p == g:
                continue
            c = cmc(similarity(p, g), set_ids[p], set_ids[g], max_rank, ties)
            curves.append(c)
            pairs.append((p, g, float(c[0]), float(c[4])))
    if not curves:
        raise ValueError("need at least two sets")
    mean = np.mean(curves, axis=0)
    return {"rank1": float(mean[0]), "rank5": float(mean[4]), "cmc": mean, "pairs": pairs}
