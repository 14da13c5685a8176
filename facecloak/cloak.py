"""The protect pipeline as a library object: ``Cloaker``.

The shape follows GFPGAN's ``enhance``: landmarks -> align and warp -> network ->
inverse affine -> paste with a soft mask. Two choices keep the photo intact:

* only the *change* D - C is warped back and added, so the face is never resampled twice
  (no blur), and
* the feathered mask is exactly zero outside the face region, so every other pixel keeps
  its original value bit for bit.
"""
from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from .align import CANONICAL_256, invert_affine, warp_face


#: Fast mode's ``--strength``: the factor s on the network's change (0.75 / 1 / 1.25). Measured on
#: the offline benchmark (weights/README.md, "Quality vs protection"): s trades LPIPS-alex for ASR.
FAST_SCALES = {"low": 0.75, "medium": 1.0, "high": 1.25}


def _resized(model, size: int):
    """``model`` fed ``size``-px crops when it supports it (``at_size``) and size is set; else itself."""
    return model.at_size(size) if size and hasattr(model, "at_size") else model


def scale_residual(cover: torch.Tensor, deid: torch.Tensor, s: float) -> torch.Tensor:
    """D_s = clamp(C + s (D - C), 0, 1): the network's change made weaker (s < 1) or stronger (s > 1)."""
    return deid if s == 1.0 else (cover + s * (deid - cover)).clamp(0, 1)


#: A cover is greyscale when no pixel's channels differ by more than this (a grey JPEG decoded as
#: RGB carries a little chroma noise).
GREY_TOL = 4 / 255


def keep_grey(cover: torch.Tensor, deid: torch.Tensor, tol: float = GREY_TOL) -> torch.Tensor:
    """D unchanged for colour covers; for a greyscale cover (max over pixels of max_c C − min_c C
    ≤ ``tol``) D' = clamp(C + mean_c(D − C), 0, 1): the change loses its colour, so a black-and-white
    photo stays black and white. (B, 3, H, W) in [0, 1]."""
    grey = (cover.amax(1) - cover.amin(1)).flatten(1).amax(1) <= tol
    if not bool(grey.any()):
        return deid
    flat = (cover + (deid - cover).mean(1, keepdim=True)).clamp(0, 1)
    return torch.where(grey.view(-1, 1, 1, 1), flat, deid)


@dataclass
class CloakConfig:
    """Options of a protect run; the CLI maps its flags onto these.

    mode: "fast" (hiding network only, as in the paper) or "strong" (plus a per-face
        optimisation of a smooth edit, ``facecloak.strong``).
    strength: low | medium | high. Fast mode: the network's residual scaled by ``FAST_SCALES``
        times the weights' own ``fast_scale`` (see :func:`scale_residual`); strong mode: the preset ``facecloak.strong.PRESETS``.
    strong_steps: caps strong mode's steps per face (None: the preset's own budget).
    min_face: faces whose eye distance is below this many pixels are reported, not changed.
    far_cos: a fake identity must have cos < far_cos to the face's own EN feature.
    seed: fixes the fake identities (per photo content and face index), for reproducible runs.
    verify_retry: strong mode with verifiers (``--verify``): a face that a black box still matches
        is optimised once more, alone, with ``facecloak.strong.RETRY`` (more visible change).
    """

    mode: str = "fast"
    strength: str = "medium"
    strong_steps: int | None = None
    min_face: float = 20.0
    far_cos: float = 0.2
    seed: int = 0
    batch_size: int = 8
    feather: float = 0.12  # fraction of the crop used to fade the mask in
    verify_retry: bool = True


@dataclass
class FaceRecord:
    box: list[float]
    landmarks: list[list[float]]
    score: float
    status: str  # "protected" | "too_small"
    identity: int | None = None
    psnr: float | None = None
    strong_steps: int | None = None  # optimisation steps this face took in strong mode
    verify: dict = field(default_factory=dict)
    retried: bool = False  # strong mode + --verify: optimised again with strong.RETRY after a black box matched it


@dataclass
class CloakResult:
    rgb: np.ndarray
    faces: list[FaceRecord]


def face_mask(size: int = 256, feather: float = 0.12) -> np.ndarray:
    """Feathered mask on the canonical crop: 1 inside, a cosine fade over ``feather * size``
    pixels to exactly 0 at the crop border: m = 0.5 - 0.5 cos(pi min(1, d / fade)), d = distance to the border."""
    i = np.arange(size, dtype=np.float64)
    edge = np.minimum(i, size - 1 - i)  # distance to the nearest border, 0 on the border
    d = np.minimum(edge[:, None], edge[None, :])
    t = np.clip(d / (feather * size), 0, 1)
    return (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)


def paste_delta(img: np.ndarray, delta: np.ndarray, matrix: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """out = img + warp⁻¹(mask · delta), rounded; pixels where the warped mask is 0 are untouched.

    img: (H, W, 3) uint8; delta: (256, 256, 3) float in pixel units (D - C) * 255;
    matrix: the 2x3 image->crop alignment matrix.
    """
    import cv2

    h, w = img.shape[:2]
    inv = invert_affine(matrix)
    # Warp only into the bounding box of the crop's footprint: a 12 MP photo costs the same as a small one.
    size = delta.shape[0]
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], float) @ inv.T
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 1, [w, h])
    out = img.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    roi_m = inv.copy()
    roi_m[:, 2] -= [x0, y0]
    md = np.concatenate([delta * mask[..., None], mask[..., None]], axis=2).astype(np.float32)
    warped = cv2.warpAffine(md, roi_m, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    region = warped[..., 3] > 0
    roi = out[y0:y1, x0:x1]
    vals = roi[region].astype(np.float32) + warped[..., :3][region]
    roi[region] = np.clip(np.round(vals), 0, 255).astype(np.uint8)
    return out


def pick_identity(sims: np.ndarray, far_cos: float, rng: random.Random, exclude: set[int]) -> int:
    """Pick a bank index whose cos to the face (``sims``, one row) is < far_cos and that is not in
    ``exclude`` (identities already given to other faces of the photo); falls back to the
    least similar free identity when none is far enough."""
    ok = [int(j) for j in np.flatnonzero(sims < far_cos) if j not in exclude]
    if not ok:
        ok = [int(j) for j in np.argsort(sims) if j not in exclude][:1]
    return rng.choice(ok)


def photo_rng(rgb: np.ndarray, seed: int) -> random.Random:
    """Seeded by the photo's content: reproducible per photo, different across photos of a person."""
    digest = hashlib.sha256(np.ascontiguousarray(rgb[::7, ::7]).tobytes()).digest()
    return random.Random(int.from_bytes(digest[:8], "little") ^ seed)


class Cloaker:
    """Detect, align, de-identify and paste back every face of a batch of photos.

    Args:
        hn: the hiding network; en: the extracting network (ArcFace) used to pick fake
        identities; bank: (N, 512) fake-identity features; detector: a ``FaceDetector``;
        config: ``CloakConfig``; verifiers: recognizers that played no part in making the
        cloak, for ``--verify`` (name -> (Recognizer, threshold)).
    """

    def __init__(self, hn, en, bank: torch.Tensor, detector, config: CloakConfig | None = None, verifiers=None, device="cpu"):
        self.hn, self.en, self.detector = hn.eval(), en, detector
        self.bank = torch.nn.functional.normalize(bank.float(), dim=1).to(device)
        self.cfg = config or CloakConfig()
        self.verifiers = verifiers or {}
        self.device = torch.device(device)
        self.mask = face_mask(256, self.cfg.feather)
        self._models: dict = {}  # strong mode's surrogate recognizers by name, loaded on first use
        self.last_strong_steps: list[int] = []

    @classmethod
    def from_pretrained(cls, weights=None, hf_repo=None, device="cpu", config=None, verify=False) -> "Cloaker":
        from . import pretrained

        return pretrained.build_cloaker(weights=weights, hf_repo=hf_repo, device=device, config=config, verify=verify)

    # ------------------------------------------------------------ aligned faces
    @torch.no_grad()
    def identities_for(self, covers: torch.Tensor, rngs: list[random.Random], photos: list[int]) -> tuple[torch.Tensor, list[int]]:
        """EN features of the fake identity chosen for each cover: far from the cover, and
        different for every face of the same photo (``photos[k]`` is face k's photo)."""
        feats = torch.cat([self.en(covers[i : i + 32].to(self.device)) for i in range(0, len(covers), 32)])
        sims = (feats @ self.bank.T).cpu().numpy()
        used: dict[int, set[int]] = {}
        ids = []
        n_cand = self._strong_config().candidates if self.cfg.mode == "strong" else 1
        for k, rng in enumerate(rngs):
            taken = used.setdefault(photos[k], set())
            cands = []
            for _ in range(n_cand):
                cands.append(pick_identity(sims[k], self.cfg.far_cos, rng, taken | set(cands)))
            ids.append(cands[self._choose(covers[k], cands)] if n_cand > 1 else cands[0])
            taken.add(ids[-1])
        return self.bank[ids], ids

    def _strong_config(self):
        from .strong import preset

        return preset(self.cfg.strength, self.cfg.strong_steps)

    def _surrogates(self, cfg=None) -> dict:
        """Strong mode's surrogate recognizers with the targets of ``cfg`` (default: the preset):
        EN (this cloaker's own) and the preset's other ones, each loaded once; SFace and dlib are
        never among them."""
        from .pretrained import load_recognizer

        cfg = cfg or self._strong_config()
        for n, _ in cfg.targets:
            if (n, cfg.slow_size) not in self._models:
                model = self.en if n == "arcface_mbf" else _resized(load_recognizer(n, self.device), cfg.slow_size)
                # Channels-last weights pick oneDNN's faster convolutions: 16-18 % less CPU per forward +
                # backward of ArcFace and FaceNet (measured on the 2-core box); same outputs up to rounding.
                self._models[n, cfg.slow_size] = model.to(memory_format=torch.channels_last)
        return {n: (self._models[n, cfg.slow_size], t) for n, t in cfg.targets}

    def _choose(self, cover: torch.Tensor, cands: list[int]) -> int:
        """Index into ``cands`` of the fake identity whose starting point leaves the face furthest."""
        from .strong import choose_identities

        c = cover[None].to(self.device)
        return int(choose_identities(c, self.bank[cands][None], self.hn, self._surrogates(), self._strong_config().blend)[0])

    def protect_aligned(self, covers: torch.Tensor, fake_feats: torch.Tensor, strong=None) -> torch.Tensor:
        """D for canonical covers (B, 3, 256, 256) in [0, 1]; batched through the network.
        ``strong``: a ``StrongConfig`` in place of the preset (strong mode only)."""
        outs = []
        self.last_strong_steps = []
        for i in range(0, covers.shape[0], self.cfg.batch_size):
            c = covers[i : i + self.cfg.batch_size].to(self.device)
            f = fake_feats[i : i + self.cfg.batch_size].to(self.device)
            with torch.no_grad(), torch.autocast("cuda", torch.float16, enabled=self.device.type == "cuda"):
                d = keep_grey(c, self.hn(c, f).float())
            if self.cfg.mode == "strong":
                d = self._strong_refine(c, d, f, strong)
            else:
                d = scale_residual(c, d, FAST_SCALES[self.cfg.strength] * getattr(self.hn, "fast_scale", 1.0))
            outs.append(d.cpu())
        return torch.cat(outs) if outs else covers.new_zeros(0, 3, 256, 256)

    def _strong_refine(self, c: torch.Tensor, d: torch.Tensor, f: torch.Tensor, cfg=None) -> torch.Tensor:
        """Strong mode on one batch: optimise from D0 = C + β (D − C), every face stopping on its own."""
        from .strong import blend_start, optimise

        cfg = cfg or self._strong_config()

        def start_fn(covers: torch.Tensor, e: torch.Tensor) -> torch.Tensor:  # D0(e), for cfg.lr_embed
            return blend_start(covers, keep_grey(covers, self.hn(covers, e).float()), cfg.blend)

        res = optimise(c, blend_start(c, d, cfg.blend), f, self._surrogates(cfg), cfg, seed=self.cfg.seed, start_fn=start_fn)
        self.last_strong_steps += res.steps
        return res.deid

    # ------------------------------------------------------------ whole photos
    def protect_images(self, images: list[np.ndarray]) -> list[CloakResult]:
        """Protect a batch of RGB uint8 photos; all their faces go through the network together."""
        detections = [self.detector.detect(img) for img in images]
        crops, where, rngs = [], [], []
        records: list[list[FaceRecord]] = []
        for i, (img, faces) in enumerate(zip(images, detections)):
            rng = photo_rng(img, self.cfg.seed)
            recs = []
            for face in faces:
                lm = np.asarray(face.landmarks, dtype=np.float64).reshape(5, 2)
                rec = FaceRecord(box=[float(v) for v in face.box], landmarks=lm.round(2).tolist(), score=float(face.score), status="protected")
                if np.linalg.norm(lm[1] - lm[0]) < self.cfg.min_face:
                    rec.status = "too_small"
                else:
                    crop, m = warp_face(img, lm)
                    crops.append(crop)
                    where.append((i, len(recs), m))
                    rngs.append(rng)
                recs.append(rec)
            records.append(recs)
        results = [CloakResult(img.copy(), recs) for img, recs in zip(images, records)]
        if not crops:
            return results
        covers = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
        fake, ids = self.identities_for(covers, rngs, [i for i, _, _ in where])
        deid = self._deidentify(covers, fake, ids, [records[i][j] for i, j, _ in where])
        delta = ((deid - covers) * 255).permute(0, 2, 3, 1).numpy()
        for k, (i, _, m) in enumerate(where):
            results[i].rgb = paste_delta(results[i].rgb, delta[k], m, self.mask)
        return results

    def protect_crops(self, crops: list[np.ndarray]) -> list[CloakResult]:
        """``--aligned`` input: each image already is a canonical 256x256 face crop."""
        covers = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
        rngs = [photo_rng(c, self.cfg.seed) for c in crops]
        fake, ids = self.identities_for(covers, rngs, list(range(len(crops))))
        lm = CANONICAL_256.round(2).tolist()
        recs = [FaceRecord(box=[0.0, 0.0, 256.0, 256.0], landmarks=lm, score=1.0, status="protected") for _ in crops]
        deid = self._deidentify(covers, fake, ids, recs)
        out = (deid * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        return [CloakResult(o, [r]) for o, r in zip(out, recs)]

    def _deidentify(self, covers: torch.Tensor, fake: torch.Tensor, ids: list[int], recs: list[FaceRecord]) -> torch.Tensor:
        """D for each cover, filling each face's record: identity, PSNR, strong-mode steps and, with
        verifiers, their verdicts. In strong mode with ``verify_retry``, the faces a verifier still
        matches are optimised once more with ``strong.RETRY`` and verified again."""
        deid = self.protect_aligned(covers, fake)
        steps = list(self.last_strong_steps) or [None] * len(recs)
        if self.verifiers:
            self._verify(covers, deid, recs)
            again = [k for k, r in enumerate(recs) if any(v["still_matches"] for v in r.verify.values())]
            if again and self.cfg.mode == "strong" and self.cfg.verify_retry:
                from .strong import RETRY

                deid[again] = self.protect_aligned(covers[again], fake[again], strong=RETRY)
                for k, n in zip(again, self.last_strong_steps):
                    steps[k] = steps[k] + n
                    recs[k].retried = True
                self._verify(covers[again], deid[again], [recs[k] for k in again])
        for k, rec in enumerate(recs):
            rec.identity, rec.psnr, rec.strong_steps = int(ids[k]), float(_psnr(covers[k], deid[k])), steps[k]
        return deid

    def protect(self, image: np.ndarray) -> CloakResult:
        return self.protect_images([image])[0]

    @torch.no_grad()
    def _verify(self, covers: torch.Tensor, deid: torch.Tensor, recs: list[FaceRecord]) -> None:
        """Cosine between original and protected embeddings per black-box recognizer; a face is
        still recognised when that cosine reaches the recognizer's own threshold."""
        for name, (model, thr) in self.verifiers.items():
            dev = _device_of(model)  # each verifier where its weights are, whatever device made the crops
            a, b = model(covers.to(dev)), model(deid.to(dev))
            cos = (a * b).sum(1).float().cpu().tolist()
            for rec, c in zip(recs, cos):
                rec.verify[name] = {"cos": round(c, 4), "threshold": thr, "still_matches": bool(c >= thr)}


def _device_of(model) -> torch.device:
    """The device of a model's first parameter or buffer; CPU for models without any."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None) if isinstance(model, torch.nn.Module) else None
    return first.device if first is not None else torch.device("cpu")


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    from .eval.metrics import psnr

    return psnr(a.numpy(), b.numpy(), data_range=1.0)
