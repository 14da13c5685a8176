"""Strong mode end to end on a real photo: shipped hiding network, real detector and recognizers."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facecloak.align import warp_face
from facecloak.cloak import CloakConfig, Cloaker

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
pytestmark = pytest.mark.slow


def test_strong_mode_on_a_real_photo_moves_the_face_away_on_its_surrogates():
    img = np.asarray(Image.open(EXAMPLES / "grace_hopper.jpg").convert("RGB"))
    ck = Cloaker.from_pretrained(device="cpu", config=CloakConfig(mode="strong", strength="medium", strong_steps=4), verify=False)
    res = ck.protect(img)
    (face,) = res.faces
    assert face.status == "protected" and 1 <= face.strong_steps <= 4
    assert 25 < face.psnr < 60

    # Re-align the written photo as a re-upload would, and compare with the network's own start.
    lm = np.array(face.landmarks)
    c, _ = warp_face(img, lm)
    d, _ = warp_face(res.rgb, lm)
    cover, out = (torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255 for a in (c, d))
    cfg = ck._strong_config()
    fake, _ = ck.identities_for(cover, [__import__("random").Random(0)], [0])
    start = cover + cfg.blend * (ck.hn(cover, fake).detach() - cover)
    with torch.no_grad():
        for name, (model, _) in ck._surrogates().items():
            f_c = model(cover)
            assert float((model(out) * f_c).sum()) < float((model(start) * f_c).sum())

    # Every pixel outside the face's crop footprint keeps its exact value.
    changed = np.any(res.rgb != img, axis=2)
    ys, xs = np.nonzero(changed)
    eye = np.linalg.norm(lm[1] - lm[0])
    assert changed.any() and np.abs(xs - lm[:, 0].mean()).max() < 4 * eye and np.abs(ys - lm[:, 1].mean()).max() < 4 * eye


def test_verify_retry_leaves_grace_hopper_unmatched_by_every_black_box():
    """`--mode strong --verify` on examples/grace_hopper.jpg: the default preset leaves SFace
    matching her (README, "What --verify says"), so --verify's retry protects her again, and then
    no black box (FaceNet, SFace, dlib at their FAR-1e-3 thresholds) matches her own original."""
    img = np.asarray(Image.open(EXAMPLES / "grace_hopper.jpg").convert("RGB"))
    ck = Cloaker.from_pretrained(device="cpu", config=CloakConfig(mode="strong", strength="medium"), verify=True)
    assert set(ck.verifiers) == {"facenet_casia", "sface", "dlib_resnet"}
    (face,) = ck.protect(img).faces
    assert face.retried and face.strong_steps > 10  # the preset's 10 steps, then the retry's
    assert not any(v["still_matches"] for v in face.verify.values()), face.verify
    assert face.psnr > 26
