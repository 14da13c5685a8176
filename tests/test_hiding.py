import torch

from facecloak.models.hiding import HidingNet, HidingNetConfig, load_hiding_net, save_hiding_net, tile_feature


def test_tile_feature_matches_paper_layout():
    # Hand-written expectation of section 3.1: 1x512 -> 2x256 -> 128 copies in height -> 3 channels.
    f = torch.randn(2, 512)
    expected = torch.stack([torch.cat([fi.view(2, 256)] * 128, 0) for fi in f])  # (2, 256, 256)
    expected = expected[:, None].expand(2, 3, 256, 256)
    got = tile_feature(f)
    assert got.shape == (2, 3, 256, 256)
    assert torch.equal(got, expected)
    assert torch.equal(got[0, 1, 0], f[0, :256]) and torch.equal(got[0, 2, 255], f[0, 256:])


def test_tile_feature_generalises_to_128d():
    f = torch.arange(128.0)[None]
    got = tile_feature(f, size=16)
    # row-major cyclic fill: T[i, j] = f[(16 i + j) mod 128]
    i, j = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    assert torch.equal(got[0, 0], ((16 * i + j) % 128).float())


def tiny():
    return HidingNet(HidingNetConfig(width=4, size=64, max_delta=0.1))


def test_shapes_identity_at_init_and_bound():
    torch.manual_seed(0)
    m = tiny()
    c = torch.rand(3, 3, 64, 64)
    f = torch.nn.functional.normalize(torch.randn(3, 512), dim=1)
    d = m(c, f)
    assert d.shape == c.shape
    assert torch.equal(d, c)  # zero-initialised head: D = C at step 0
    torch.nn.init.normal_(m.head.weight, std=1.0)
    d = m(c, f)
    assert (d - c).abs().max() <= 0.1 + 1e-6 and (d - c).abs().max() > 0.01
    assert d.min() >= 0 and d.max() <= 1


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    m = tiny()
    torch.nn.init.normal_(m.head.weight, std=0.1)  # the zero head would block gradients upstream
    c = torch.rand(2, 3, 64, 64) * 0.5 + 0.25
    f = torch.nn.functional.normalize(torch.randn(2, 512), dim=1)
    m(c, f).square().sum().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


def test_feature_changes_output():
    torch.manual_seed(0)
    m = tiny()
    torch.nn.init.normal_(m.head.weight, std=0.1)
    c = torch.rand(1, 3, 64, 64)
    f1, f2 = torch.nn.functional.normalize(torch.randn(2, 512), dim=1)
    assert not torch.allclose(m(c, f1[None]), m(c, f2[None]))


def test_safetensors_round_trip_strict(tmp_path):
    torch.manual_seed(0)
    m = tiny()
    torch.nn.init.normal_(m.head.weight, std=0.1)
    p = tmp_path / "hn.safetensors"
    save_hiding_net(m, p)
    m2 = load_hiding_net(p)
    assert m2.config == m.config
    c, f = torch.rand(1, 3, 64, 64), torch.nn.functional.normalize(torch.randn(1, 512), dim=1)
    assert torch.equal(m.eval()(c, f), m2(c, f))
    # strict: a file with an extra tensor is refused
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    sd = load_file(str(p))
    sd["bogus"] = torch.zeros(1)
    with safe_open(str(p), framework="pt") as fh:
        meta = fh.metadata()
    save_file(sd, str(tmp_path / "bad.safetensors"), metadata=meta)
    import pytest

    with pytest.raises(ValueError, match="bogus"):
        load_hiding_net(tmp_path / "bad.safetensors")


def test_lowpass_removes_pixel_stripes_and_keeps_bound():
    from facecloak.models.hiding import gaussian_lowpass

    stripes = torch.ones(1, 3, 32, 32)
    stripes[..., 1::2] = -1  # the 1-pixel column pattern the tiled feature can leak
    assert gaussian_lowpass(stripes, 1.0).abs().max() < 0.2
    smooth = torch.linspace(-1, 1, 32).view(1, 1, 1, 32).expand(1, 3, 32, 32)
    assert torch.allclose(gaussian_lowpass(smooth, 1.0)[..., 4:-4], smooth[..., 4:-4], atol=1e-4)  # keeps low frequencies
    torch.manual_seed(0)
    m = HidingNet(HidingNetConfig(width=4, size=64, max_delta=0.1, head_init_std=5.0))
    c = torch.rand(2, 3, 64, 64)
    d = m(c, torch.nn.functional.normalize(torch.randn(2, 512), dim=1))
    assert (d - c).abs().max() <= 0.1 + 1e-6
