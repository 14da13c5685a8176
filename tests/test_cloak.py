import numpy as np
import pytest
import torch

from facecloak.cloak import face_mask, paste_delta, pick_identity, photo_rng
from facecloak.align import warp_face
from tests.fakes import FixedDetector, landmarks_at, tiny_cloaker


def photo(h=400, w=600, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_mask_is_zero_at_border_and_one_inside():
    m = face_mask(256, 0.12)
    assert m[0].max() == 0 and m[:, 0].max() == 0 and m[-1].max() == 0 and m[:, -1].max() == 0
    assert m[128, 128] == 1.0
    assert np.all(np.diff(m[128, :128]) >= 0)  # monotone fade-in


def test_paste_delta_leaves_outside_pixels_untouched():
    img = photo()
    lm = landmarks_at(300, 200)
    _, m = warp_face(img, lm)
    delta = np.full((256, 256, 3), 20.0, np.float32)
    out = paste_delta(img, delta, m, face_mask())
    changed = np.any(out != img, axis=2)
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 1000
    # everything changed lies within the face crop's footprint around (300, 200)
    assert xs.min() > 300 - 200 and xs.max() < 300 + 200 and ys.min() > 0
    assert np.array_equal(out[:, :50], img[:, :50]) and np.array_equal(out[:, -50:], img[:, -50:])
    centre = out[200, 300].astype(int) - img[200, 300].astype(int)
    assert np.all((centre == 20) | (img[200, 300] > 235))


def test_pick_identity_respects_far_threshold_and_exclusion():
    sims = np.array([0.9, 0.1, 0.5, -0.2, 0.15])
    rng = photo_rng(photo(10, 10), 0)
    for _ in range(20):
        assert pick_identity(sims, 0.2, rng, set()) in (1, 3, 4)
    assert pick_identity(sims, 0.2, rng, {1, 3}) == 4
    # none far enough: least similar free one
    assert pick_identity(np.array([0.9, 0.8]), 0.2, rng, {1}) == 0


def test_protect_images_changes_only_faces_and_keeps_size():
    img = photo()
    det = FixedDetector(default=[landmarks_at(150, 200), landmarks_at(450, 200)])
    res = tiny_cloaker(det).protect(img)
    assert res.rgb.shape == img.shape and res.rgb.dtype == np.uint8
    assert [f.status for f in res.faces] == ["protected", "protected"]
    ids = [f.identity for f in res.faces]
    assert ids[0] != ids[1]  # every face of a photo gets its own fake identity
    diff = np.any(res.rgb != img, axis=2)
    assert diff[200, 150] or diff[190:210, 140:160].any()
    assert not diff[:, 290:310].any()  # the gap between the two faces is untouched
    assert not diff[:5].any() and not diff[-5:].any()
    for f in res.faces:
        assert 15 < f.psnr < 60


def test_a_black_and_white_photo_stays_black_and_white():
    img = photo()
    grey = np.repeat(img.mean(2, keepdims=True).round().astype(np.uint8), 3, axis=2)
    det = FixedDetector(default=[landmarks_at(150, 200), landmarks_at(450, 200)])
    out = tiny_cloaker(det).protect(grey).rgb
    assert (out != grey).any()  # protected
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    change = tiny_cloaker(det).protect(img).rgb.astype(int) - img
    assert not np.array_equal(change[..., 0], change[..., 1])  # on a colour photo the change has colour


def test_seed_reproducible_and_photo_dependent():
    det = FixedDetector(default=[landmarks_at(150, 200)])
    a = tiny_cloaker(det, seed=0).protect(photo(seed=1))
    b = tiny_cloaker(det, seed=0).protect(photo(seed=1))
    assert np.array_equal(a.rgb, b.rgb) and a.faces[0].identity == b.faces[0].identity
    ids = {tiny_cloaker(det).protect(photo(seed=s)).faces[0].identity for s in range(8)}
    assert len(ids) > 1  # different photos of a person do not all share one fake identity


def test_no_face_and_small_face():
    img = photo()
    res = tiny_cloaker(FixedDetector()).protect(img)
    assert res.faces == [] and np.array_equal(res.rgb, img)
    res = tiny_cloaker(FixedDetector(default=[landmarks_at(300, 200, eye=8)]), min_face=20).protect(img)
    assert res.faces[0].status == "too_small" and np.array_equal(res.rgb, img)


def test_batch_of_images_matches_one_by_one():
    det = FixedDetector(default=[landmarks_at(200, 200)])
    ck = tiny_cloaker(det)
    imgs = [photo(seed=s) for s in range(3)]
    together = ck.protect_images(imgs)
    for img, r in zip(imgs, together):
        single = ck.protect(img)
        assert np.abs(single.rgb.astype(int) - r.rgb.astype(int)).max() <= 1


def test_roi_paste_equals_full_frame_warp():
    import cv2

    from facecloak.align import invert_affine

    img = photo(500, 700, seed=3)
    _, m = warp_face(img, landmarks_at(620, 80, eye=90))  # partly outside the frame
    delta = np.random.default_rng(1).normal(0, 8, (256, 256, 3)).astype(np.float32)
    mask = face_mask()
    md = np.concatenate([delta * mask[..., None], mask[..., None]], 2)
    full = cv2.warpAffine(md, invert_affine(m), (700, 500), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    ref = img.copy()
    reg = full[..., 3] > 0
    ref[reg] = np.clip(np.round(img[reg].astype(np.float32) + full[..., :3][reg]), 0, 255).astype(np.uint8)
    out = paste_delta(img, delta, m, mask)
    # identical up to OpenCV's fixed-point interpolation rounding; nothing outside the footprint moves
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    assert np.array_equal(out[~reg], img[~reg])


def test_fast_strength_scales_the_networks_change():
    from facecloak.cloak import FAST_SCALES

    torch.manual_seed(0)
    covers = torch.rand(2, 3, 256, 256) * 0.6 + 0.2  # away from 0/1, so the clamp never bites
    outs = {}
    for name in ("low", "medium", "high"):
        ck = tiny_cloaker(strength=name)
        fake = ck.bank[:2]
        outs[name] = ck.protect_aligned(covers, fake)
    change = {k: (v - covers).abs().mean().item() for k, v in outs.items()}
    assert change["low"] < change["medium"] < change["high"]
    for name, s in FAST_SCALES.items():
        assert torch.allclose(outs[name], covers + s * (outs["medium"] - covers), atol=1e-6)


def test_keep_grey_takes_the_colour_out_of_a_grey_faces_change_only():
    from facecloak.cloak import keep_grey

    g = torch.Generator().manual_seed(0)
    grey = torch.rand(1, 1, 16, 16, generator=g).expand(1, 3, 16, 16) * 0.6 + 0.2
    colour = torch.rand(1, 3, 16, 16, generator=g) * 0.6 + 0.2
    covers = torch.cat([grey, colour])
    change = 0.05 * torch.randn(2, 3, 16, 16, generator=g)
    out = keep_grey(covers, covers + change)
    assert torch.allclose(out[0, 0], out[0, 1]) and torch.allclose(out[0, 1], out[0, 2])  # still grey
    assert torch.allclose(out[0] - covers[0], change[0].mean(0, keepdim=True).expand(3, -1, -1), atol=1e-6)
    assert torch.equal(out[1], covers[1] + change[1])  # a colour face keeps its change
    noisy = grey + (torch.rand(1, 3, 16, 16, generator=g) - 0.5) * 3 / 255  # a grey JPEG's chroma noise
    moved = keep_grey(noisy, noisy + change[:1]) - noisy
    assert torch.allclose(moved[0, 0], moved[0, 2], atol=1e-6)


def test_weights_carry_their_own_fast_scale(tmp_path):
    from facecloak.cloak import FAST_SCALES
    from facecloak.models.hiding import load_hiding_net, save_hiding_net

    torch.manual_seed(0)
    covers = torch.rand(2, 3, 256, 256) * 0.6 + 0.2
    ck = tiny_cloaker(strength="medium")
    raw = ck.protect_aligned(covers, ck.bank[:2])  # a network without the field: scale 1
    save_hiding_net(ck.hn, tmp_path / "old.safetensors")
    save_hiding_net(ck.hn, tmp_path / "cal.safetensors", extra={"fast_scale": 0.9})
    assert load_hiding_net(tmp_path / "old.safetensors").fast_scale == 1.0
    for name in ("medium", "high"):
        ck = tiny_cloaker(strength=name)
        ck.hn = load_hiding_net(tmp_path / "cal.safetensors")
        want = covers + 0.9 * FAST_SCALES[name] * (raw - covers)
        assert torch.allclose(ck.protect_aligned(covers, ck.bank[:2]), want, atol=1e-5)
    save_hiding_net(ck.hn, tmp_path / "bad.safetensors", extra={"fast_scale": 0.0})
    with pytest.raises(ValueError, match="fast_scale"):
        load_hiding_net(tmp_path / "bad.safetensors")


def test_cli_rejects_an_unknown_strength(tmp_path):
    from typer.testing import CliRunner

    from facecloak.cli import app

    r = CliRunner().invoke(app, ["protect", str(tmp_path), "--out", str(tmp_path / "o"), "--strength", "max"])
    assert r.exit_code == 2 and "--strength" in r.output
