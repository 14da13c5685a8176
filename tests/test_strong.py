"""Strong mode's objective, parameterisation, EOT and per-face early stopping, on tiny models."""
import numpy as np
import pytest
import torch

from facecloak import strong as S
from tests.fakes import FakeRecognizer, FixedDetector, landmarks_at, tiny_cloaker


def unit(x):
    return torch.nn.functional.normalize(x, dim=1)


def checker(n: int = 32) -> torch.Tensor:
    """(n, n) texture for the masking tests: a checkerboard of 2x2-pixel squares, 0 and 1."""
    return ((torch.arange(n)[:, None] // 2 + torch.arange(n)[None] // 2) % 2).float()


# ------------------------------------------------------------------ objective terms
def test_far_hinge_is_zero_below_target_and_linear_above():
    a = unit(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]))
    b = unit(torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]))  # cos 1, 0.707, 0
    h = S.far_hinge(a, b, target=0.5)
    assert torch.allclose(h, torch.tensor([0.5, 0.7071 - 0.5, 0.0]), atol=1e-4)


def test_near_term_is_one_minus_cos():
    a = unit(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert torch.allclose(S.near_term(a, a), torch.zeros(2))
    assert torch.allclose(S.near_term(a, a.flip(1)), torch.ones(2))


def test_pixel_term_is_one_at_tau():
    c = torch.full((2, 3, 16, 16), 0.5)
    assert torch.allclose(S.pixel_term(c + S.TAU, c), torch.ones(2))
    assert torch.allclose(S.pixel_term(c, c), torch.zeros(2))


def test_edge_term_prices_texture_not_smooth_shading():
    c = torch.rand(1, 3, 32, 32)
    shade = torch.linspace(0, 0.05, 32).view(1, 1, 1, 32).expand(1, 3, 32, 32)
    checker = 0.05 * ((torch.arange(32)[:, None] + torch.arange(32)[None]) % 2).float().expand(1, 3, 32, 32)
    assert S.edge_term(c + 0.05, c).item() == pytest.approx(0.0, abs=1e-6)  # a constant offset: no new edge
    assert S.edge_term(c + checker, c) > 100 * S.edge_term(c + shade, c)
    # the same energy, for the pixel term the two are alike
    assert S.pixel_term(c + checker, c) == pytest.approx(2 * S.pixel_term(c + 0.025, c).item(), rel=1e-4)


def test_masking_weight_is_one_on_flat_skin_and_small_on_texture():
    flat = torch.full((1, 3, 32, 32), 0.5)
    texture = 0.5 + 0.2 * checker().expand(1, 3, 32, 32)
    kappa = 8 / 255
    assert torch.allclose(S.masking_weight(flat, kappa), torch.ones(1, 1, 32, 32), atol=1e-4)
    w = S.masking_weight(texture, kappa)
    assert w.shape == (1, 1, 32, 32)
    # local variance of a ±0.1 pattern is 0.01: W = κ² / (0.01 + κ²) away from the borders
    assert w[..., 8:24, 8:24].mean().item() == pytest.approx(kappa**2 / (0.01 + kappa**2), rel=0.1)


def test_masked_edge_term_prices_a_new_edge_on_texture_below_one_on_flat_skin():
    c = torch.full((1, 3, 32, 64), 0.5)
    c[..., 32:] += 0.2 * checker()  # right half textured
    line = torch.zeros(1, 3, 32, 64)
    on_flat, on_texture = line.clone(), line.clone()
    on_flat[..., 10:22, 14] = 0.05
    on_texture[..., 10:22, 46] = 0.05
    w = S.masking_weight(c, 8 / 255)
    assert S.edge_term(c + on_flat, c) == pytest.approx(S.edge_term(c + on_texture, c).item())  # unweighted: alike
    assert S.edge_term(c + on_texture, c, w) < 0.2 * S.edge_term(c + on_flat, c, w)
    assert S.edge_term(c + on_flat, c, w) == pytest.approx(S.edge_term(c + on_flat, c).item(), rel=1e-3)  # W = 1 on flat
    assert S.edge_term(c + on_flat, c, torch.ones(1, 1, 32, 64)) == pytest.approx(S.edge_term(c + on_flat, c).item())


# ------------------------------------------------------------------ parameterisation
def test_render_with_zero_parameters_is_the_start():
    d0 = torch.rand(2, 3, 64, 64)
    out = S.render(d0, torch.zeros(2, 3, 8, 8), torch.zeros(2, 2, 4, 4))
    assert torch.allclose(out, d0, atol=2e-5)  # grid_sample round-off


def test_colour_offsets_are_smooth():
    z = torch.randn(1, 3, 8, 8) * 0.05
    u = S.upsample(z, 128)
    step = (u[..., 1:] - u[..., :-1]).abs().max()
    assert step < 0.2 * (z[..., 1:] - z[..., :-1]).abs().max()  # spread over 16 pixels per grid cell


def test_warp_by_a_whole_pixel_is_a_shift():
    x = torch.rand(1, 3, 32, 32)
    flow = torch.zeros(1, 2, 32, 32)
    flow[:, 0] = 1.0  # sample one pixel to the right
    assert torch.allclose(S.warp(x, flow)[..., :-1], x[..., 1:], atol=1e-5)


def test_a_one_channel_offset_is_grey_shading():
    d0 = torch.full((1, 3, 32, 32), 0.5)
    z = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.05
    out = S.render(d0, z, None)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    assert (out - d0).abs().max() > 0.01


def test_rendering_at_work_size_matches_the_full_size_render_downscaled():
    d0 = S.upsample(torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1)), 128).clamp(0, 1)
    z = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 0.03
    w = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(3)) * 2.0  # pixels of the 128 px crop
    small = S.render(S.to_work_size(d0, 64), z, w, flow_scale=0.5)
    assert (small - S.to_work_size(S.render(d0, z, w), 64)).abs().mean() < 2e-3
    unscaled = S.render(S.to_work_size(d0, 64), z, w)  # flow not converted: twice the displacement
    assert (unscaled - S.to_work_size(S.render(d0, z, w), 64)).abs().mean() > 2 * (small - S.to_work_size(S.render(d0, z, w), 64)).abs().mean()


def test_to_work_size_leaves_the_own_size_alone():
    x = torch.rand(1, 3, 32, 32)
    assert S.to_work_size(x, 0) is x and S.to_work_size(x, 32) is x
    assert S.to_work_size(x, 16).shape == (1, 3, 16, 16)


# ------------------------------------------------------------------ EOT
def test_transforms_keep_shape_range_and_gradient():
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    for t in (S.gaussian_blur(x, 1.0), S.rescale(x, 0.6), S.shift(x, 2, -3), S.jpeg_like(x, 50)):
        assert t.shape == x.shape and float(t.detach().min()) >= 0 and float(t.detach().max()) <= 1 + 1e-6
        (g,) = torch.autograd.grad(t.sum(), x)
        assert g.abs().sum() > 0


def test_jpeg_like_keeps_smooth_images_and_drops_fine_texture():
    smooth = torch.linspace(0.2, 0.8, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64).contiguous()
    checker = 0.5 + 0.03 * (2 * ((torch.arange(64)[:, None] + torch.arange(64)[None]) % 2).float() - 1).expand(1, 3, 64, 64)
    assert (S.jpeg_like(smooth, 90) - smooth).abs().mean() < 2 / 255
    assert (S.jpeg_like(checker, 30) - 0.5).abs().mean() < 0.3 * (checker - 0.5).abs().mean()


def test_dct_matrix_is_orthonormal():
    d = S._dct_matrix()
    assert torch.allclose(d @ d.T, torch.eye(8), atol=1e-6)


def test_shift_moves_content():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(S.shift(x, 1, 0)[0, 0, :, 1:], x[0, 0, :, :-1])


def test_similarity_rotates_scales_and_shifts_about_the_centre():
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    assert torch.allclose(S.similarity(x, 0, 1, 0, 0), x, atol=1e-5)
    assert torch.allclose(S.similarity(x, 0, 1, 3, -2), S.shift(x, 3, -2), atol=1e-5)  # same sign convention
    (g,) = torch.autograd.grad(S.similarity(x, 3, 1.04, 0.5, 0).sum(), x)
    assert g.abs().sum() > 0

    def peak(img):
        return tuple((img[0, 0] == img[0, 0].max()).nonzero()[0].tolist())  # (row, col)

    dot = torch.zeros(1, 1, 65, 41)  # centre (row 32, col 20); a non-square image checks the aspect
    dot[0, 0, 32, 30] = 1  # 10 px right of the centre
    assert peak(S.similarity(dot, 90, 1, 0, 0)) == (42, 20)  # a quarter turn: 10 px below it
    assert peak(S.similarity(dot, 0, 1.5, 0, 0)) == (32, 35)  # scaled 1.5x: 15 px right
    g = torch.Generator().manual_seed(0)
    outs = [S.random_transform(x.detach(), g, ("similarity",)) for _ in range(8)]
    assert all(o.shape == x.shape for o in outs) and any((o - x).abs().max() > 0.05 for o in outs)


def test_bits_transform_reduces_depth_and_passes_the_gradient():
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    g = torch.Generator().manual_seed(0)

    def on_grid(y, bits):  # every value a multiple of 1 / (2^bits - 1)
        v = y.detach() * (2**bits - 1)
        return torch.allclose(v, v.round(), atol=1e-4)

    draws = [S.random_transform(x, g, ("bits",)) for _ in range(12)]
    reduced = [y for y in draws if not torch.equal(y, x)]  # the identity is drawn too
    assert reduced and all(any(on_grid(y, b) for b in (3, 4, 5)) for y in reduced)
    (gx,) = torch.autograd.grad(S.random_transform(x, torch.Generator().manual_seed(1), ("bits",)).sum(), x)
    assert torch.equal(gx, torch.ones_like(x))  # straight-through


# ------------------------------------------------------------------ optimisation
def _surrogates(target=0.0):
    return {"arcface_mbf": (FakeRecognizer(0), target), "other": (FakeRecognizer(1), target)}


def smooth_faces(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random images (upsampled 8x8 noise): blur and JPEG barely change them."""
    g = torch.Generator().manual_seed(seed)
    return S.upsample(torch.rand(n, 3, 8, 8, generator=g), size).clamp(0, 1)


def test_optimise_moves_faces_away_on_every_surrogate_within_bounds():
    c = smooth_faces(3)
    f = unit(torch.randn(3, 512, generator=torch.Generator().manual_seed(0)))
    cfg = S.StrongConfig(max_steps=8, grid=8, flow_grid=0, lr_colour=0.01, lam_pix=0.0, lam_edge=0.0, targets=(("arcface_mbf", -1.0), ("other", -1.0)))
    sur = _surrogates(-1.0)
    res = S.optimise(c, c.clone(), f, sur, cfg)
    assert res.steps == [8, 8, 8]  # the target is unreachable: nobody stops early
    for name in sur:
        assert max(res.cos[name]) < 0.9
    assert (res.deid - c).abs().max() <= 1.25 * cfg.max_colour  # bicubic overshoot is < 25 %


def test_the_warp_alone_also_moves_faces():
    c = smooth_faces(2, 64)
    f = unit(torch.randn(2, 512, generator=torch.Generator().manual_seed(0)))
    cfg = S.StrongConfig(max_steps=6, grid=2, flow_grid=4, lr_colour=0.0, lr_flow=1.0, lam_pix=0.0, lam_edge=0.0, eot=(),
                         targets=(("arcface_mbf", -1.0), ("other", -1.0)))
    res = S.optimise(c, c.clone(), f, _surrogates(-1.0), cfg)
    assert max(res.cos["arcface_mbf"]) < 0.999


def test_pixel_and_edge_terms_hold_the_change_back():
    c = smooth_faces(2)
    f = unit(torch.randn(2, 512, generator=torch.Generator().manual_seed(0)))
    base = dict(max_steps=6, grid=8, flow_grid=4, lr_colour=0.02, eot=(), targets=(("arcface_mbf", -1.0), ("other", -1.0)))
    free = S.optimise(c, c.clone(), f, _surrogates(-1.0), S.StrongConfig(lam_pix=0.0, lam_edge=0.0, **base)).deid
    held = S.optimise(c, c.clone(), f, _surrogates(-1.0), S.StrongConfig(lam_pix=50.0, lam_edge=50.0, **base)).deid
    assert ((held - c) ** 2).mean() < ((free - c) ** 2).mean()


def test_optimise_prices_edges_through_the_masking_weight():
    """Masking changes nothing where the cover is flat (W = 1) and changes the result on texture."""
    flat = torch.full((2, 3, 32, 32), 0.5)
    textured = flat + 0.15 * (2 * checker() - 1)
    f = unit(torch.randn(2, 512, generator=torch.Generator().manual_seed(0)))
    base = dict(max_steps=4, grid=16, flow_grid=4, lr_colour=0.01, lam_pix=0.0, lam_edge=5.0, eot=(), targets=(("arcface_mbf", -1.0), ("other", -1.0)))

    def run(c, masking):
        return S.optimise(c, c.clone(), f, _surrogates(-1.0), S.StrongConfig(masking=masking, **base)).deid

    assert torch.allclose(run(flat, 8 / 255), run(flat, 0.0), atol=1e-5)
    assert not torch.allclose(run(textured, 8 / 255), run(textured, 0.0), atol=1e-4)


def test_each_face_stops_once_its_margin_is_reached():
    c = smooth_faces(2)
    start = c.clone()
    start[0] = smooth_faces(1, seed=5)[0]  # face 0 already starts far from its original; face 1 does not
    f = unit(torch.randn(2, 512, generator=torch.Generator().manual_seed(0)))
    sur = _surrogates(0.9)
    with torch.no_grad():
        cos0 = {n: (m(start) * m(c)).sum(1) for n, (m, _) in sur.items()}
    assert all(v[0] < 0.9 < v[1] for v in cos0.values())
    cfg = S.StrongConfig(max_steps=6, patience=2, grid=8, flow_grid=0, lr_colour=0.002, lam_pix=0.0, lam_edge=0.0, lam_near=0.0, eot=(),
                         targets=(("arcface_mbf", 0.9), ("other", 0.9)))
    res = S.optimise(c, start, f, sur, cfg)
    assert res.steps[0] == 2  # `patience` steps below target, then frozen
    assert res.steps[1] > 2


def test_finished_faces_are_frozen():
    c = smooth_faces(2)
    f = unit(torch.randn(2, 512, generator=torch.Generator().manual_seed(0)))
    cfg = S.StrongConfig(max_steps=5, patience=1, grid=4, flow_grid=4, eot=(), targets=(("arcface_mbf", 1.5), ("other", 1.5)))
    res = S.optimise(c, c.clone(), f, _surrogates(1.5), cfg)  # every face is below 1.5 at once
    assert res.steps == [1, 1]
    one = S.optimise(c, c.clone(), f, _surrogates(1.5), S.StrongConfig(**{**cfg.__dict__, "max_steps": 1}))
    assert torch.allclose(res.deid, one.deid)


class CountingRecognizer(FakeRecognizer):
    def __init__(self, seed):
        super().__init__(seed)
        self.calls = 0

    def embed(self, x):
        self.calls += 1
        return super().embed(x)


def test_the_slow_surrogate_runs_every_nth_step_and_its_last_cos_counts_for_stopping():
    c = smooth_faces(2, 64)
    f = unit(torch.randn(2, 512, generator=torch.Generator().manual_seed(0)))
    sur = {"arcface_mbf": (CountingRecognizer(0), -1.0), "other": (CountingRecognizer(1), -1.0)}
    cfg = S.StrongConfig(max_steps=5, slow_every=2, grid=4, flow_grid=0, eot=(), targets=(("arcface_mbf", -1.0), ("other", -1.0)))
    res = S.optimise(c, c.clone(), f, sur, cfg)
    assert res.steps == [5, 5]
    assert sur["arcface_mbf"][0].calls == 1 + 5  # the original's features, then every step
    assert sur["other"][0].calls == 1 + 3  # the original's, then steps 0, 2 and 4
    # Targets every face meets at once: stopping waits for the slow surrogate's first look.
    easy = {"arcface_mbf": (CountingRecognizer(0), 1.5), "other": (CountingRecognizer(1), 1.5)}
    cfg = S.StrongConfig(max_steps=6, patience=2, slow_every=3, grid=4, flow_grid=0, eot=(), targets=(("arcface_mbf", 1.5), ("other", 1.5)))
    res = S.optimise(c, c.clone(), f, easy, cfg)
    assert res.steps == [2, 2] and easy["other"][0].calls == 1 + 1
    assert all(v < 1.5 for v in res.cos["other"])  # step 1 reused step 0's cosine


def test_turns_run_one_surrogate_per_step_in_turn():
    c = smooth_faces(2, 64)
    f = unit(torch.randn(2, 512, generator=torch.Generator().manual_seed(0)))
    sur = {"arcface_mbf": (CountingRecognizer(0), -1.0), "other": (CountingRecognizer(1), -1.0)}
    cfg = S.StrongConfig(max_steps=5, turns=True, grid=4, flow_grid=0, eot=(), targets=(("arcface_mbf", -1.0), ("other", -1.0)))
    res = S.optimise(c, c.clone(), f, sur, cfg)
    assert res.steps == [5, 5]
    assert sur["arcface_mbf"][0].calls == 1 + 3  # the original's features, then steps 0, 2 and 4
    assert sur["other"][0].calls == 1 + 2  # the original's, then steps 1 and 3


def test_the_near_term_comes_only_from_en():
    torch.manual_seed(0)
    x, c = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    f_fake = unit(torch.randn(2, 512))
    other = {"other": _surrogates()["other"]}
    f_orig = {"other": other["other"][0](c)}
    with torch.no_grad():
        args = (x, x, c, other, f_orig, f_fake)
        with_near = S.objective(*args, S.StrongConfig(lam_near=1.0), near="arcface_mbf")[0]
        without = S.objective(*args, S.StrongConfig(lam_near=0.0), near="arcface_mbf")[0]
        as_en = S.objective(*args, S.StrongConfig(lam_near=1.0))[0]  # default: the first surrogate is EN
    assert torch.allclose(with_near, without)  # a step without EN has no near term
    assert not torch.allclose(as_en, without)


def test_the_quantised_copy_adds_ens_hinge_on_it_and_the_larger_excess_decides_stopping():
    """quant_bits b: L gains relu(cos(EN(Q_b(x)), EN(C)) − t_q), and EN's cosine for stopping is
    max(cos_T, cos_Q − (t_q − t)); the other surrogates are untouched."""
    from dataclasses import replace

    from facecloak.train.eot import quantize_ste

    torch.manual_seed(0)
    x, tx, c = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    f_fake = unit(torch.randn(2, 512))
    sur = _surrogates(-1.0)
    f_orig = {n: m(c) for n, (m, _) in sur.items()}
    en = sur["arcface_mbf"][0]
    with torch.no_grad():
        cos_t, cos_q = (en(tx) * f_orig["arcface_mbf"]).sum(1), (en(quantize_ste(x, 3)) * f_orig["arcface_mbf"]).sum(1)
        cfg = S.StrongConfig(lam_pix=0.0, lam_edge=0.0)  # the identity terms alone, at float precision
        plain, cos_plain = S.objective(x, tx, c, sur, f_orig, f_fake, cfg)
        for tq in (None, -0.5):
            quant, cos = S.objective(x, tx, c, sur, f_orig, f_fake, replace(cfg, quant_bits=3, quant_target=tq))
            t_q = -1.0 if tq is None else tq
            assert torch.allclose(quant - plain, torch.relu(cos_q - t_q), atol=1e-5)
            assert torch.allclose(cos["arcface_mbf"], torch.maximum(cos_t, cos_q - (t_q + 1.0)), atol=1e-5)
            assert torch.equal(cos["other"], cos_plain["other"])
    assert not torch.allclose(cos_t, cos_q)  # the 3-bit copy is another image to EN


def test_a_face_does_not_stop_while_its_quantised_copy_is_above_target():
    c = smooth_faces(2)
    f = unit(torch.randn(2, 512, generator=torch.Generator().manual_seed(0)))
    base = dict(max_steps=4, patience=1, grid=4, flow_grid=4, eot=(), targets=(("arcface_mbf", 1.5), ("other", 1.5)))
    assert S.optimise(c, c.clone(), f, _surrogates(1.5), S.StrongConfig(**base)).steps == [1, 1]
    held = S.optimise(c, c.clone(), f, _surrogates(1.5), S.StrongConfig(quant_bits=3, quant_target=-1.0, **base))
    assert held.steps == [4, 4]  # cos of the 3-bit copy never gets below -1


def test_face_region_is_one_inside_the_ellipse_and_fades_to_zero():
    region = (128.0, 150.0, 70.0, 90.0, 0.15)
    m = S.face_region(256, region)[0, 0]
    assert m[150, 128] == 1 and m[150, 128 + 69] == 1 and m[150 - 89, 128] == 1  # inside
    assert m[150, int(128 + 70 * 1.15) + 1] == 0 and m[0, 0] == 0 and m[255, 255] == 0  # past the fade
    edge = float(m[150, 128 + round(70 * 1.075)])  # halfway through the fade
    assert 0.3 < edge < 0.7 and float(m.min()) == 0 and float(m.max()) == 1
    # The same region at the 128-px work size: pixel i is the 256-px crop's (2i + 0.5).
    half = S.face_region(128, region)[0, 0]
    assert half[75, 64] == 1 and half[0, 0] == 0 and abs(float(half.mean()) - float(m.mean())) < 0.01


def test_confine_keeps_the_cover_outside_the_region():
    c, x = torch.zeros(1, 3, 64, 64), torch.ones(1, 3, 64, 64)
    region = (128.0, 128.0, 64.0, 64.0, 0.2)
    y = S.confine(x, c, region)
    assert float(y[..., 32, 32].min()) == 1 and float(y[..., 0, 0].max()) == 0
    assert torch.equal(S.confine(x, c, ()), x)


def test_optimise_with_a_region_changes_only_the_face():
    c = smooth_faces(2, 64)
    f = unit(torch.randn(2, 512, generator=torch.Generator().manual_seed(0)))
    region = (128.0, 150.0, 60.0, 70.0, 0.1)
    cfg = S.StrongConfig(max_steps=4, grid=4, flow_grid=4, eot=(), region=region, targets=(("arcface_mbf", -1.0), ("other", -1.0)))
    res = S.optimise(c, c.clone(), f, _surrogates(-1.0), cfg)
    outside = S.face_region(64, region) == 0
    assert torch.equal(res.deid.masked_select(outside), c.masked_select(outside))
    assert not torch.allclose(res.deid, c, atol=1e-3)


def test_work_size_optimises_small_and_returns_full_size():
    c = smooth_faces(2, 64)
    f = unit(torch.randn(2, 512, generator=torch.Generator().manual_seed(0)))
    cfg = S.StrongConfig(max_steps=4, grid=4, flow_grid=4, work_size=32, colour_channels=1, eot=("blur", "jpeg"),
                         targets=(("arcface_mbf", -1.0), ("other", -1.0)))
    res = S.optimise(c, c.clone(), f, _surrogates(-1.0), cfg)
    assert res.deid.shape == c.shape and not torch.allclose(res.deid, c, atol=1e-3)
    with torch.no_grad():
        m = _surrogates()["arcface_mbf"][0]
        assert float((m(res.deid) * m(c)).sum(1).max()) < 0.999  # the full-size result moved away too


def test_choose_identities_picks_the_candidate_furthest_from_the_face():
    class ShiftNet(torch.nn.Module):  # "network" whose output depends on the fake feature
        def forward(self, x, f):
            return (x + 0.5 * f[:, :1, None, None]).clamp(0, 1)

    torch.manual_seed(0)
    c = torch.rand(2, 3, 32, 32) * 0.5
    cands = torch.zeros(2, 3, 4)
    cands[0, :, 0] = torch.tensor([0.0, 0.2, 1.0])
    cands[1, :, 0] = torch.tensor([0.9, 0.0, 0.1])
    sur = {"a": (FakeRecognizer(0), 0.0)}
    with torch.no_grad():
        scores = [[float((sur["a"][0](ShiftNet()(c[i : i + 1], cands[i, k : k + 1])) * sur["a"][0](c[i : i + 1])).sum()) for k in range(3)] for i in range(2)]
    picked = S.choose_identities(c, cands, ShiftNet(), sur)
    assert picked.tolist() == [int(np.argmin(s)) for s in scores]


def test_the_embedded_identity_moves_and_the_result_is_the_networks_output_for_it():
    """lr_embed: e leaves f_fake, stays a unit vector, the face ends further from its original than
    with e fixed, and with no warp or offsets the result is exactly D0(e) for the final e."""

    class EmbedNet(torch.nn.Module):  # a "network" whose smooth output depends on the identity it embeds
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(512, 3 * 8 * 8)
            torch.nn.init.normal_(self.proj.weight, std=0.5, generator=torch.Generator().manual_seed(3))

        def forward(self, x, e):
            return (x + 0.1 * torch.tanh(S.upsample(self.proj(e).view(-1, 3, 8, 8), x.shape[-1]))).clamp(0, 1)

    net = EmbedNet().requires_grad_(False)
    c = smooth_faces(2)
    f = unit(torch.randn(2, 512, generator=torch.Generator().manual_seed(0)))
    start_fn = lambda covers, e: covers + 0.8 * (net(covers, e) - covers)
    base = dict(max_steps=8, grid=4, flow_grid=0, max_colour=0.0, lam_pix=0.0, lam_edge=0.0, lam_near=0.0, eot=(),
                targets=(("arcface_mbf", -1.0), ("other", -1.0)))
    with torch.no_grad():
        d0 = start_fn(c, f)
    fixed = S.optimise(c, d0, f, _surrogates(-1.0), S.StrongConfig(**base), start_fn=start_fn)
    moved = S.optimise(c, d0, f, _surrogates(-1.0), S.StrongConfig(lr_embed=0.05, **base), start_fn=start_fn)
    assert torch.allclose(fixed.deid, d0, atol=1e-6)  # nothing to move without lr_embed
    for name in ("arcface_mbf", "other"):
        assert sum(moved.cos[name]) < sum(fixed.cos[name])
    # the result is the network's output for the final unit e, not a pixel edit on top of it
    assert torch.allclose(moved.embed.norm(dim=1), torch.ones(2)) and not torch.allclose(moved.embed, f, atol=1e-2)
    with torch.no_grad():
        assert torch.allclose(moved.deid, start_fn(c, moved.embed).clamp(0, 1), atol=1e-5)
    assert fixed.embed is None


def test_presets_order_strength():
    lo, mid, hi = (S.PRESETS[k] for k in ("low", "medium", "high"))
    assert len(lo.targets) <= len(mid.targets) == len(hi.targets)
    for (_, t_lo), (_, t_mid), (_, t_hi) in zip(lo.targets, mid.targets, hi.targets):
        assert t_lo >= t_mid >= t_hi
    assert lo.blend <= mid.blend < hi.blend and lo.max_steps <= mid.max_steps < hi.max_steps
    with pytest.raises(ValueError, match="unknown strength"):
        S.preset("extreme")
    assert S.preset("low", max_steps=3).max_steps == 3


def test_no_held_out_black_box_is_a_surrogate():
    for cfg in S.PRESETS.values():
        names = cfg.surrogate_names
        assert names[0] == "arcface_mbf" and len(names) <= 2
        assert not {"sface", "dlib_resnet"} & set(names)


# ------------------------------------------------------------------ Cloaker integration
def tiny_strong_cloaker(monkeypatch, detector=None, **cfg):
    """A tiny cloaker in strong mode whose surrogates are tiny random recognizers with targets of
    −1 (never reached, so every face takes its whole budget)."""
    from dataclasses import replace

    import facecloak.pretrained as P

    monkeypatch.setattr(P, "load_recognizer", lambda name, device: FakeRecognizer(1))
    monkeypatch.setitem(S.PRESETS, "medium", replace(S.PRESETS["medium"], targets=(("arcface_mbf", -1.0), ("facenet_casia", -1.0))))
    return tiny_cloaker(detector, mode="strong", **cfg)


def test_cloaker_strong_mode_records_steps_and_changes_less_than_unbounded(monkeypatch):
    det = FixedDetector(default=[landmarks_at(200, 200)])
    ck = tiny_strong_cloaker(monkeypatch, det, strong_steps=2)
    img = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    res = ck.protect(img)
    assert res.faces[0].status == "protected" and res.faces[0].strong_steps == 2
    fast = tiny_cloaker(det).protect(img)
    assert not np.array_equal(res.rgb, fast.rgb)


def test_cli_rejects_an_unknown_strength(tmp_path):
    from typer.testing import CliRunner

    from facecloak.cli import app

    (tmp_path / "a.jpg").write_bytes(b"x")
    r = CliRunner().invoke(app, ["protect", str(tmp_path / "a.jpg"), "--out", str(tmp_path / "o"), "--mode", "strong", "--strength", "extreme"])
    assert r.exit_code == 2 and "--strength must be low, medium or high" in r.output


def test_aligned_crops_record_their_strong_steps(monkeypatch):
    ck = tiny_strong_cloaker(monkeypatch, strong_steps=2)
    crops = [np.random.default_rng(s).integers(0, 255, (256, 256, 3), dtype=np.uint8) for s in range(2)]
    assert [r.faces[0].strong_steps for r in ck.protect_crops(crops)] == [2, 2]


def test_verify_retries_only_the_faces_a_black_box_still_matches(monkeypatch):
    """Strong mode + --verify: a face a verifier still matches is optimised again with
    strong.RETRY (its steps add up, ``retried`` is set, the verdict is re-taken and the output
    changes); the other faces keep their first result; fast mode and verify_retry=False never retry."""
    from dataclasses import replace

    monkeypatch.setattr(S, "RETRY", replace(S.PRESETS["high"], targets=(("arcface_mbf", -1.0), ("facenet_casia", -1.0)), max_steps=3, blend=1.0))
    # Three faces of distinct brightness (means about 0.16, 0.47, 0.78), which protection keeps.
    crops = [np.random.default_rng(s).integers(80 * s, 80 * s + 80, (256, 256, 3), dtype=np.uint8) for s in range(3)]
    covers = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255

    class MatchesFirst(FakeRecognizer):
        """The dark face and anything made of it embed alike (cos 1); any other original embeds as
        e2 and its protected copy as e3 (cos 0): only the first face is ever still matched."""

        def forward(self, x):
            dark = x.flatten(1).mean(1) < 0.3
            original = torch.stack([(x[i] - covers).abs().flatten(1).mean(1).min() < 1e-6 for i in range(len(x))])
            return torch.eye(3)[torch.where(dark, 0, torch.where(original, 1, 2))]

    def run(**cfg):
        ck = tiny_strong_cloaker(monkeypatch, strong_steps=2, **cfg)
        ck.verifiers = {"bb": (MatchesFirst(), 0.9)}
        return ck.protect_crops(crops)

    first = tiny_strong_cloaker(monkeypatch, strong_steps=2).protect_crops(crops)
    res = run()
    recs = [r.faces[0] for r in res]
    assert [r.retried for r in recs] == [True, False, False]
    assert [r.strong_steps for r in recs] == [2 + 3, 2, 2]
    assert recs[0].verify["bb"]["still_matches"]  # re-verified: this verifier matches it whatever we do
    assert not np.array_equal(res[0].rgb, first[0].rgb) and np.array_equal(res[1].rgb, first[1].rgb)
    assert not any(r.faces[0].retried for r in run(verify_retry=False))
    ck = tiny_cloaker(mode="fast")
    ck.verifiers = {"bb": (MatchesFirst(), 0.9)}
    assert not any(r.faces[0].retried for r in ck.protect_crops(crops))


def test_eval_runs_strong_mode_with_the_default_presets_budget():
    from facecloak.cloak import CloakConfig
    from facecloak.eval.runner import EvalConfig

    cfg = EvalConfig()
    assert cfg.strong_steps is None and cfg.strength == CloakConfig().strength  # None: the preset's own max_steps


def test_cloaker_feeds_the_second_surrogate_at_the_presets_size(monkeypatch):
    """A preset's ``slow_size`` builds FaceNet through ``at_size``; 0 (today's presets) keeps its own
    size; EN and recognizers without ``at_size`` are used as they are."""
    from dataclasses import replace

    import facecloak.pretrained as P

    class Sizable(FakeRecognizer):
        def at_size(self, size):
            out = Sizable(1)
            out.size = size
            return out

    monkeypatch.setattr(P, "load_recognizer", lambda name, device: Sizable(1) if name == "facenet_casia" else FakeRecognizer(2))
    monkeypatch.setitem(S.PRESETS, "small", replace(S.PRESETS["high"], slow_size=128))
    for strength, size in (("small", 128), ("high", None), ("medium", None)):
        ck = tiny_cloaker(mode="strong", strength=strength)
        sur = ck._surrogates()
        assert sur["arcface_mbf"][0] is ck.en and getattr(sur["facenet_casia"][0], "size", None) == size
    from facecloak.cloak import _resized

    plain = FakeRecognizer(0)
    assert _resized(plain, 128) is plain and _resized(Sizable(0), 0).__class__ is Sizable
