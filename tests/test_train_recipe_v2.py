"""The v0.2 training recipe: far hinge, EOT degradations, the low-resolution residual, growing covers."""
import os

import pytest
import torch
from typer.testing import CliRunner

from facecloak.cli import app
from facecloak.models.hiding import HidingNet, HidingNetConfig
from facecloak.train import eot
from facecloak.train import losses as L
from facecloak.train.loop import list_cover_crops

from test_train import COVERS, tiny


def test_far_hinge_stops_pushing_below_the_margin():
    c = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    d = torch.tensor([[0.6, 0.8], [0.1, 0.995]])  # cos 0.6 and 0.1
    assert L.far_loss(c, d).item() == pytest.approx((0.6 + 0.1) / 2, abs=1e-3)
    assert L.far_loss(c, d, margin=0.2).item() == pytest.approx((0.6 - 0.2 + 0.0) / 2, abs=1e-3)
    d.requires_grad_(True)
    L.far_loss(c, d, margin=0.2).backward()
    assert d.grad[1].abs().sum() == 0 and d.grad[0].abs().sum() > 0  # the face already far gets no push


def test_ssim_loss_is_one_minus_the_evaluations_ssim_and_off_by_default():
    import numpy as np

    from facecloak.eval.metrics import ssim

    g = torch.Generator().manual_seed(0)
    c = torch.rand(2, 3, 32, 32, generator=g)
    d = (c + 0.1 * torch.randn(2, 3, 32, 32, generator=g)).clamp(0, 1)
    assert L.ssim_loss(c, c).item() == pytest.approx(0.0, abs=1e-6)
    want = np.mean([1 - ssim(a.permute(1, 2, 0).numpy() * 255, b.permute(1, 2, 0).numpy() * 255) for a, b in zip(c, d)])
    assert L.ssim_loss(c, d).item() == pytest.approx(want, abs=1e-4) and want > 0.05
    terms = {k: torch.tensor(1.0) for k in L.LOSS_TERMS}
    assert L.total_loss(terms, L.LossWeights(1, 1, 1, 1, 1)).item() == pytest.approx(5.0)  # λ_ssim 0: off
    assert L.total_loss(terms, L.LossWeights(1, 1, 1, 1, 1, ssim=2.0)).item() == pytest.approx(7.0)


def test_mid_loss_is_the_cosine_of_whole_feature_maps_and_off_by_default():
    c = torch.zeros(2, 2, 2, 2)
    c[:, 0] = 1.0  # every position points along channel 0
    d = c.clone()
    d[1] = 0.0
    d[1, 1] = 1.0  # face 1: every position along channel 1, orthogonal to its cover
    assert L.mid_loss(c, d).item() == pytest.approx((1.0 + 0.0) / 2)
    d.requires_grad_(True)
    L.mid_loss(c, d).backward()
    assert d.grad.abs().sum() > 0
    terms = {k: torch.tensor(1.0) for k in L.LOSS_TERMS}
    assert L.total_loss(terms, L.LossWeights(1, 1, 1, 1, 1)).item() == pytest.approx(5.0)  # λ_mid 0: off
    assert L.total_loss(terms, L.LossWeights(1, 1, 1, 1, 1, mid=3.0)).item() == pytest.approx(8.0)


def test_mobilefacenet_tap_is_the_same_pass():
    from facecloak.models.mobilefacenet import MobileFaceNet

    torch.manual_seed(0)
    net = MobileFaceNet().eval()
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        e, h = net.forward_tap(x, 11)
        assert torch.equal(net(x), e) and net.forward_tap(x)[1] is None
        assert h.shape == (2, 256, 14, 14)
        assert torch.allclose(net.blocks[:12](net.stem(x)), h)


def test_total_loss_ignores_logged_extras():
    terms = {k: torch.tensor(1.0) for k in L.LOSS_TERMS} | {"cos": torch.tensor(100.0)}
    w = L.LossWeights(1, 1, 1, 1, 1)
    assert L.total_loss(terms, w).item() == pytest.approx(5.0)


def test_quantize_ste_rounds_forward_and_passes_gradient():
    x = torch.tensor([0.1, 0.52, 0.9], requires_grad=True)
    y = eot.quantize_ste(x, 1)  # levels {0, 1}
    assert y.tolist() == [0.0, 1.0, 1.0]
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]


def test_down_up_removes_fine_detail_and_keeps_size():
    x = torch.zeros(1, 3, 64, 64)
    x[..., ::2, :] = 1.0  # 1-px stripes
    y = eot.down_up(x, 0.25)
    assert y.shape == x.shape
    assert (y - 0.5).abs().max() < 0.05  # stripes averaged away


def test_random_degrade_draws_every_kind_and_is_differentiable():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    kinds = set()
    for _ in range(40):
        y, kind = eot.random_degrade(x, g)
        kinds.add(kind)
        assert y.shape == x.shape
    assert kinds == set(eot.DEGRADATIONS)
    y, _ = eot.random_degrade(x, torch.Generator().manual_seed(1))
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_photo_kind_is_drawn_only_when_asked_and_is_a_lossy_differentiable_copy():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    assert "photo" not in {eot.random_degrade(x, g)[1] for _ in range(40)}  # not in the default draw
    draws = [eot.random_degrade(x, g, ("none", "photo", "photo")) for _ in range(60)]
    n_photo = sum(k == "photo" for _, k in draws)
    assert 30 <= n_photo <= 50  # a kind listed twice is drawn about twice as often
    y = next(y for y, k in draws if k == "photo")
    assert y.shape == x.shape and 0.01 < (y - x).abs().mean() < 0.4  # a small face's copy: detail lost
    levels = y.detach() * 63
    assert torch.allclose(levels, levels.round(), atol=1e-4)  # 6-bit values
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_eot_kinds_refuses_unknown_kinds(tmp_path):
    r = CliRunner().invoke(app, ["train", "--covers", str(tmp_path), "--out", str(tmp_path / "run"), "--eot", "--eot-kinds", "blur,fog"])
    assert r.exit_code == 2 and "fog" in r.output and not (tmp_path / "run").exists()


def test_low_resolution_residual_is_smooth_bounded_and_trains():
    cfg = HidingNetConfig(width=4, size=64, work_size=32, head_init_std=0.05, smooth_sigma=0.5, max_delta=0.1)
    hn = HidingNet(cfg)
    c = torch.rand(2, 3, 64, 64)
    f = torch.nn.functional.normalize(torch.randn(2, 512), dim=1)
    d = hn(c, f)
    assert d.shape == c.shape
    r = d - c
    assert r.abs().max() <= 0.1 + 1e-6
    # computed at 32 px and upsampled: neighbouring pixels differ far less than the residual itself
    assert (r[..., 1:] - r[..., :-1]).abs().mean() < 0.5 * r.abs().mean()
    d.mean().backward()
    assert all(p.grad is not None for p in hn.parameters())


def test_work_size_none_is_the_v01_network():
    torch.manual_seed(0)
    a = HidingNet(HidingNetConfig(width=4, size=32, head_init_std=0.05))
    b = HidingNet(HidingNetConfig(width=4, size=32, head_init_std=0.05, work_size=32))
    b.load_state_dict(a.state_dict())
    c, f = torch.rand(1, 3, 32, 32), torch.nn.functional.normalize(torch.randn(1, 512), dim=1)
    assert torch.equal(a(c, f), b(c, f))


def test_list_cover_crops_joins_folders_and_skips_partial_files(tmp_path):
    from PIL import Image

    for d, names in (("a", ["1.png", "2.png"]), ("b", ["3.png", "4.part.png"])):
        (tmp_path / d).mkdir()
        for n in names:
            Image.new("RGB", (8, 8)).save(tmp_path / d / n)
    got = list_cover_crops(os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    assert [p.name for p in got] == ["1.png", "2.png", "3.png"]


@pytest.mark.slow
def test_train_with_the_v2_recipe_options(tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", *tiny(2), "--out", str(out), "--work-size", "128", "--far-margin", "0.2", "--eot",
                                 "--smooth-sigma", "0.5"])
    assert r.exit_code == 0, r.output
    from facecloak.models.hiding import load_hiding_net

    hn = load_hiding_net(out / "last.safetensors")
    assert hn.config.work_size == 128 and hn.config.smooth_sigma == 0.5
    import json

    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["eot"] is True and cfg["weights"]["far_margin"] == 0.2
    assert all("ssim" not in rec for rec in map(json.loads, (out / "log.jsonl").read_text().splitlines()))  # λ_ssim 0: not computed


def test_train_with_an_ssim_term_and_the_photo_eot(tmp_path):
    import json

    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", *tiny(2), "--out", str(out), "--eot", "--eot-kinds", "photo", "--lambda-ssim", "2"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["eot_kinds"] == ["photo"] and cfg["weights"]["ssim"] == 2.0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps, vals = [x for x in log if "loss" in x], [x["val"] for x in log if "val" in x]
    assert steps and vals and all(0 <= x["ssim"] < 0.1 for x in steps + vals)  # logged; D starts at C, so near 0


def test_train_with_a_mid_feature_term(tmp_path):
    import json

    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", *tiny(2), "--out", str(out), "--lambda-mid", "3"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["config"]["weights"]["mid"] == 3.0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps, vals = [x for x in log if "loss" in x], [x["val"] for x in log if "val" in x]
    assert steps and vals and all(0.9 < x["mid"] <= 1.0 + 1e-5 for x in steps + vals)  # D starts at C: maps alike
    base = tmp_path / "base"
    assert CliRunner().invoke(app, ["train", *tiny(2), "--out", str(base)]).exit_code == 0
    assert all("mid" not in x for x in map(json.loads, (base / "log.jsonl").read_text().splitlines()))  # λ_mid 0: not computed


def test_keep_grey_in_training_is_wired_and_off_by_default(tmp_path, monkeypatch):
    import json

    from facecloak import cloak

    calls = []
    real = cloak.keep_grey
    monkeypatch.setattr(cloak, "keep_grey", lambda c, d: calls.append(c.shape[0]) or real(c, d))
    assert CliRunner().invoke(app, ["train", *tiny(2), "--out", str(tmp_path / "off")]).exit_code == 0
    assert calls == []
    r = CliRunner().invoke(app, ["train", *tiny(2), "--out", str(tmp_path / "on"), "--keep-grey"])
    assert r.exit_code == 0, r.output
    assert calls and json.loads((tmp_path / "on" / "config.json").read_text())["config"]["keep_grey"] is True


@pytest.mark.slow
def test_train_adds_a_warp_head_to_warp_free_weights(tmp_path):
    """`--init` with v0.3-style weights and `--warp-px`: the new head starts at zero and trains."""
    first, second = tmp_path / "plain", tmp_path / "warp"
    r = CliRunner().invoke(app, ["train", *tiny(1), "--out", str(first), "--work-size", "128"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["train", *tiny(2), "--out", str(second), "--work-size", "128", "--warp-px", "2",
                                 "--warp-grid", "8", "--init", str(first / "last.safetensors")])
    assert r.exit_code == 0, r.output
    from facecloak.models.hiding import load_hiding_net

    hn = load_hiding_net(second / "last.safetensors")
    assert hn.config.warp_px == 2 and hn.config.warp_grid == 8
    assert hn.flow_head.weight.abs().max() > 0  # two Adam steps moved the zero-initialised head


def test_param_groups_give_the_warp_head_its_own_step():
    from facecloak.models.hiding import HidingNet, HidingNetConfig
    from facecloak.train.loop import param_groups

    warped = HidingNet(HidingNetConfig(width=4, size=64, warp_px=2.0))
    groups = param_groups(warped, 1e-4, 10.0)
    assert [g["lr"] for g in groups] == [1e-4, pytest.approx(1e-3)]
    assert {id(p) for p in groups[1]["params"]} == {id(warped.flow_head.weight), id(warped.flow_head.bias)}
    assert sum(len(g["params"]) for g in groups) == len(list(warped.parameters()))
    plain = HidingNet(HidingNetConfig(width=4, size=64))
    assert [g["lr"] for g in param_groups(plain, 1e-4, 10.0)] == [1e-4]


def test_soften_removes_fine_detail_like_an_enlarged_small_face():
    import random

    import numpy as np

    from facecloak.train.data import soften

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)  # all fine detail
    y = soften(x, random.Random(1))
    assert y.shape == x.shape and y.dtype == np.uint8
    grad = lambda a: np.abs(np.diff(a.astype(float), axis=1)).mean()  # noqa: E731
    assert grad(y) < 0.5 * grad(x)  # high frequencies gone
    assert abs(y.astype(float).mean() - x.astype(float).mean()) < 2  # brightness kept
    assert np.array_equal(soften(x, random.Random(1)), y)  # seeded
    flat = np.full((256, 256, 3), 77, np.uint8)
    assert np.array_equal(soften(flat, random.Random(2)), flat)  # nothing to lose, nothing changed


def test_soft_covers_share_and_the_default_leaves_covers_as_before(tmp_path):
    import json
    import random

    import numpy as np

    from facecloak.train.data import CoverDataset, augment, list_crops, read_rgb, to_tensor

    paths = list_crops(COVERS)[:4]
    off, on = (CoverDataset(paths, True, seed=3, soft=s) for s in (0.0, 1.0))
    for i in range(len(paths)):
        before = to_tensor(augment(read_rgb(paths[i]), random.Random(hash((3, 0, i)) & 0xFFFFFFFF)))  # what runs drew before
        assert torch.equal(off[i], before)  # soft 0: the same covers as every earlier run
        assert not torch.equal(on[i], off[i])  # soft 1: every cover softened
    grad = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean().item()  # noqa: E731
    assert np.mean([grad(on[i]) for i in range(4)]) < np.mean([grad(off[i]) for i in range(4)])
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", *tiny(2), "--out", str(out), "--soft-covers", "0.5"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["config"]["soft_covers"] == 0.5
    assert CliRunner().invoke(app, ["train", *tiny(2), "--out", str(out), "--soft-covers", "1.5"]).exit_code == 2


def test_random_windows_cut_the_same_corner_from_c_and_d():
    """Each face's window is one of the four corner k x k slices, the same in C and D; all four
    are drawn, gradients flow into D, and channels-last stays channels-last."""
    h = w = 12
    k = 8
    pos = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w)  # each pixel names its place
    cover = pos.expand(6, 3, h, w).clone()
    deid = (cover + 1000).requires_grad_(True)
    g = torch.Generator().manual_seed(0)
    corners = set()
    for _ in range(10):
        c, d, wt = L.random_windows(cover, deid, k, g)
        assert c.shape == d.shape == (6, 3, k, k) and wt.shape == (6, 1, k, k)
        for i in range(6):
            y, x = divmod(int(c[i, 0, 0, 0]), w)
            corners.add((y, x))
            assert torch.equal(c[i], cover[i, :, y : y + k, x : x + k])
            assert torch.equal(d[i], deid[i, :, y : y + k, x : x + k])
    assert corners == {(0, 0), (0, h - k), (h - k, 0), (h - k, h - k)}
    d.sum().backward()
    assert deid.grad.sum() == 6 * 3 * k * k
    cl = cover.contiguous(memory_format=torch.channels_last)
    assert L.random_windows(cl, cl, k, g)[0].is_contiguous(memory_format=torch.channels_last)
    for bad in (h, h // 2 - 1):  # the whole image, or corners that leave the middle unseen
        with pytest.raises(ValueError):
            L.random_windows(cover, cover, bad, g)


def test_window_weights_make_a_spatial_mean_unbiased():
    """E over the four windows of the weighted window mean = the whole image's mean, exactly, for a
    per-pixel loss; the weights are (k/H)^2 / P(p): 1x, 2x, 4x that in the shared middle, edges, corners."""
    h, k = 12, 8
    ell = torch.rand(1, 1, h, h) ** 3  # any per-pixel loss map
    g = torch.Generator().manual_seed(1)
    seen = {}
    while len(seen) < 4:
        _, win, wt = L.random_windows(ell, ell, k, g)
        seen[(int(wt[0, 0, 0, 0] * 1e6), float(win.sum()))] = (wt * win).mean()
    assert torch.stack(list(seen.values())).mean() == pytest.approx(ell.mean().item(), rel=1e-5)
    _, _, wt = L.random_windows(ell, ell, k, g)
    assert sorted({round(v / (k / h) ** 2, 4) for v in wt.unique().tolist()}) == [1.0, 2.0, 4.0]
    fmap = torch.zeros(1, 5, k // 4, k // 4)
    assert L.weights_at(wt, fmap).shape == (1, 1, 2, 2) and L.weights_at(None, fmap) == 1.0
    # the weighted perceptual MSE on a window is the plain one when the weights are 1
    a, b = torch.rand(2, 4, 3, 3), torch.rand(2, 4, 3, 3)
    assert L.perc_loss(a, b, torch.ones(2, 1, 6, 6)).item() == pytest.approx(L.perc_loss(a, b).item())


def test_loss_crop_reaches_the_vgg_terms_in_training_only(tmp_path, monkeypatch):
    """--loss-crop N: every training step's VGG terms see N x N windows; validation sees whole faces;
    without the option no window is cut (the v0.2-v0.9 recipes)."""
    import json

    from facecloak.train import loop

    sizes = []
    real = loop.L.random_windows
    monkeypatch.setattr(loop.L, "random_windows", lambda c, d, k, g: sizes.append(k) or real(c, d, k, g))
    trunk_sizes = []
    real_terms = loop.Critics.terms

    def spy(self, cover, deid, *a, **kw):
        out = real_terms(self, cover, deid, *a, **kw)
        trunk_sizes.append((kw.get("window") is not None, self.loss_crop))
        return out

    monkeypatch.setattr(loop.Critics, "terms", spy)
    assert CliRunner().invoke(app, ["train", *tiny(2), "--out", str(tmp_path / "off")]).exit_code == 0
    assert sizes == []
    trunk_sizes.clear()
    r = CliRunner().invoke(app, ["train", *tiny(2), "--out", str(tmp_path / "on"), "--loss-crop", "48"])
    assert r.exit_code == 0, r.output
    assert sizes == [48, 48]  # the two training steps, not the validation pass
    assert (True, 48) in trunk_sizes and (False, 48) in trunk_sizes
    assert json.loads((tmp_path / "on" / "config.json").read_text())["config"]["loss_crop"] == 48
    r = CliRunner().invoke(app, ["train", *tiny(1), "--out", str(tmp_path / "bad"), "--loss-crop", "24"])
    assert r.exit_code != 0 and "--loss-crop 24" in r.output and not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_windowed_lpips_estimates_the_whole_face_lpips_with_the_real_vgg():
    """On a real face with a smooth change, the corner-window LPIPS-vgg (the --loss-crop 64 training
    recipe) averages to the whole-face value; the perceptual MSE at relu5_3, whose receptive field is
    larger than the window, is biased upward by the window's border (documented in the model card)."""
    import numpy as np
    from PIL import Image

    from facecloak.train.loop import Critics

    img = Image.open(COVERS / "obama.jpg").convert("RGB").resize((256, 256))
    c = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255).unsqueeze(0)
    noise = torch.nn.functional.interpolate(torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)), size=256, mode="bicubic")
    d = (c + 0.03 * noise).clamp(0, 1)
    c, d = c.expand(16, -1, -1, -1), d.expand(16, -1, -1, -1)
    e = torch.nn.functional.normalize(torch.randn(16, 512), dim=1)
    critics = Critics(torch.device("cpu"), 112, 64)
    with torch.no_grad():
        whole = critics.terms(c[:1], d[:1], e[:1])
        g = torch.Generator().manual_seed(0)
        est = [critics.terms(c, d, e, window=g) for _ in range(2)]
    lp = sum(t["lpips"].item() for t in est) / len(est)
    assert lp == pytest.approx(whole["lpips"].item(), rel=0.15)  # measured: 0.062 vs 0.068
    assert all(t["rec"].item() == pytest.approx(whole["rec"].item(), rel=1e-4) for t in est)  # pixel terms see the whole face
    assert sum(t["perc"].item() for t in est) / len(est) > whole["perc"].item()
