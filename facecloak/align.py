"""Face alignment: 5-point templates, similarity transforms, and differentiable re-cropping.

Every face facecloak touches is first warped to the *canonical* 256x256 template (the
crop the hiding network sees). Each recognizer then re-crops from that canonical image to
its own template with a fixed affine warp (``affine_grid``/``grid_sample``), so training
losses backpropagate through the re-crop.

Landmark order everywhere: left eye, right eye, nose tip, left mouth corner, right mouth
corner (image left/right, as facexlib's RetinaFace returns them).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: Canonical 256x256 template: the FFHQ/GFPGAN 512 template halved. Looser than ArcFace's
#: (eye distance 0.25 of the width, against 0.31), so every recognizer's crop fits inside.
CANONICAL_256 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.19360],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float64,
) / 2.0

#: InsightFace ArcFace 112x112 template (also used by SFace).
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

TEMPLATES: dict[str, tuple[np.ndarray, int]] = {
    "canonical256": (CANONICAL_256, 256),
    "arcface112": (ARCFACE_112, 112),
}


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (Umeyama 1991) mapping ``src`` points onto ``dst``.

    Finds scale s, rotation R and translation t minimising ``sum ||s R src_i + t - dst_i||^2``:
    with centred points X = src - mean(src), Y = dst - mean(dst) and ``U S V^T = svd(Y^T X / n)``,
    ``R = U diag(1, det(U V^T)) V^T``, ``s = trace(S D) / var(X)``, ``t = mean(dst) - s R mean(src)``.

    Returns the 2x3 matrix ``[s R | t]``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, yd = src - mu_s, dst - mu_d
    cov = yd.T @ xs / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    r = u @ d @ vt
    var = (xs**2).sum() / len(src)
    s = float(np.trace(np.diag(sig) @ d) / var)
    t = mu_d - s * r @ mu_s
    return np.hstack([s * r, t[:, None]])


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine ``[A | b]``: ``[A^-1 | -A^-1 b]``."""
    a_inv = np.linalg.inv(m[:, :2])
    return np.hstack([a_inv, -a_inv @ m[:, 2:]])


def align_matrix(landmarks: np.ndarray, template: str = "canonical256") -> np.ndarray:
    """2x3 matrix warping image coordinates onto ``template`` coordinates."""
    pts, _ = TEMPLATES[template]
    return similarity_transform(np.asarray(landmarks, dtype=np.float64).reshape(5, 2), pts)


def warp_face(img: np.ndarray, landmarks: np.ndarray, template: str = "canonical256") -> tuple[np.ndarray, np.ndarray]:
    """Crop the face in ``img`` (HxWx3 uint8) to ``template``; return the crop and its 2x3 matrix."""
    import cv2

    m = align_matrix(landmarks, template)
    size = TEMPLATES[template][1]
    crop = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return crop, m


def pixel_affine_to_theta(m: np.ndarray, in_size: int, out_size: int) -> torch.Tensor:
    """Convert a pixel-space 2x3 map *from output to input* pixels into an ``affine_grid`` theta.

    ``affine_grid`` works in normalised coordinates (align_corners=False):
    ``u = (2x + 1) / n - 1``. With N_n(x) = (2x + 1)/n - 1 and its inverse, the theta is
    ``N_in ∘ m ∘ N_out^{-1}`` written as a 2x3 matrix.
    """

    def norm(n: int) -> np.ndarray:  # pixel -> normalised, 3x3 homogeneous
        return np.array([[2.0 / n, 0, 1.0 / n - 1], [0, 2.0 / n, 1.0 / n - 1], [0, 0, 1]])

    m3 = np.vstack([m, [0, 0, 1]])
    theta = norm(in_size) @ m3 @ np.linalg.inv(norm(out_size))
    return torch.tensor(theta[:2], dtype=torch.float32)


def canonical_to_template_theta(template_pts: np.ndarray, out_size: int) -> torch.Tensor:
    """The fixed theta that re-crops a canonical 256 image to a recognizer's template."""
    # Map output (template) pixels back to canonical pixels: similarity template -> canonical.
    m = similarity_transform(np.asarray(template_pts), CANONICAL_256)
    return pixel_affine_to_theta(m, 256, out_size)


def box_theta(box: tuple[float, float, float, float], out_size: int) -> torch.Tensor:
    """Theta that crops the axis-aligned ``(x0, y0, x1, y1)`` box of a canonical 256 image."""
    x0, y0, x1, y1 = box
    sx, sy = (x1 - x0) / out_size, (y1 - y0) / out_size
    m = np.array([[sx, 0, x0 + 0.5 * sx - 0.5], [0, sy, y0 + 0.5 * sy - 0.5]])
    return pixel_affine_to_theta(m, 256, out_size)


def recrop(x: torch.Tensor, theta: torch.Tensor, out_size: int) -> torch.Tensor:
    """Differentiably resample ``x`` (B,C,256,256) with a fixed ``theta`` to (B,C,out,out)."""
    th = theta.to(x.device, x.dtype).unsqueeze(0).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(th, [x.shape[0], x.shape[1], out_size, out_size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
