"""SFace against its reference implementation, OpenCV's ``cv2.FaceRecognizerSF``.

OpenCV's ``FaceRecognizerSF::feature`` takes a 112x112 aligned BGR image and builds its blob with
``blobFromImage(img, 1.0, Size(112, 112), Scalar(0, 0, 0), swapRB=true)``: the network sees RGB.
The float SFace model is not available offline, so the reference runs the same int8 ONNX file
that ``load_sface`` resolves; what is compared is everything around the network (channel
order, scale, layout), which is where our wrapper can go wrong.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures" / "zoo_arcface_sface_dcgan"


def _canonical_faces() -> torch.Tensor:
    """The four fixture photos are already canonical 256 crops."""
    import cv2

    imgs = [cv2.cvtColor(cv2.imread(str(FIXTURES / f"{n}.jpg")), cv2.COLOR_BGR2RGB) for n in ("obama", "obama2", "obama3", "biden")]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0


@pytest.mark.slow
def test_sface_matches_opencv_face_recognizer_sf():
    import cv2

    from facecloak.align import ARCFACE_112, canonical_to_template_theta, recrop
    from facecloak.zoo.registry import resolve
    from facecloak.zoo.sface import load_sface

    ours = load_sface()
    ref = cv2.FaceRecognizerSF.create(str(resolve("sface")), "")
    x = _canonical_faces()
    # The reference is given the very 112x112 crop our wrapper feeds the network, as 8-bit BGR.
    crops = (recrop(x, canonical_to_template_theta(ARCFACE_112, 112), 112).clamp(0, 1) * 255).round().byte()
    crops = crops.permute(0, 2, 3, 1).numpy()
    want = np.stack([ref.feature(cv2.cvtColor(np.ascontiguousarray(c), cv2.COLOR_RGB2BGR)).ravel() for c in crops])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    got = ours(x).numpy()
    assert np.abs(got - want).max() < 1e-4, np.abs(got - want).max()
    # The old BGR feed is measurably different, so this test would have caught it (cos 0.90-0.95 measured).
    bgr = ours.session.run(None, {ours.input_name: crops[:1, :, :, ::-1].transpose(0, 3, 1, 2).astype(np.float32)})[0].ravel()
    assert float(bgr / np.linalg.norm(bgr) @ want[0]) < 0.99
