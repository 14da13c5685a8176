"""The hiding network's warp head (v0.4): D = clamp(warp(C, flow) + residual, 0, 1)."""
import pytest
import torch

from facecloak.models.hiding import HidingNet, HidingNetConfig, init_from, load_hiding_net, save_hiding_net
from facecloak.models.warp import smooth_flow, warp


def cfg(**kw):
    return HidingNetConfig(**{"width": 4, "size": 64, "max_delta": 0.1, "smooth_sigma": 0.5, "work_size": 32, **kw})


def inputs(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.nn.functional.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=64, mode="bilinear").clamp(0, 1)
    return c, torch.nn.functional.normalize(torch.randn(n, 512, generator=g), dim=1)


def test_smooth_flow_keeps_its_bound_and_is_smooth():
    raw = torch.randn(2, 2, 32, 32, generator=torch.Generator().manual_seed(1)) * 10  # tanh saturates: ±max_px
    f = smooth_flow(raw, max_px=2.0, grid=8, size=64)
    assert f.shape == (2, 2, 64, 64)
    assert f.abs().max() <= 2.0 * 1.15  # bicubic overshoot only
    # 8 x 8 lattice upsampled to 64: neighbouring pixels differ far less than the field itself
    assert (f[..., 1:] - f[..., :-1]).abs().max() < 0.5 * f.abs().max()


def test_a_warp_head_added_to_trained_weights_starts_at_their_output(tmp_path):
    torch.manual_seed(0)
    old = HidingNet(cfg())
    torch.nn.init.normal_(old.head.weight, std=0.5)
    save_hiding_net(old, tmp_path / "old.safetensors")
    new = init_from(HidingNet(cfg(warp_px=2.0, warp_grid=8)), tmp_path / "old.safetensors")
    c, f = inputs()
    assert torch.allclose(new(c, f), old(c, f), atol=1e-5)
    # ... and once the head has learnt a displacement, the output moves, within the residual + warp bound
    torch.nn.init.normal_(new.flow_head.weight, std=0.5)
    d = new(c, f)
    assert (d - old(c, f)).abs().max() > 1e-3


def test_init_from_refuses_weights_of_another_shape(tmp_path):
    save_hiding_net(HidingNet(HidingNetConfig(width=8, size=64)), tmp_path / "w8.safetensors")
    with pytest.raises(ValueError, match="do not fit"):
        init_from(HidingNet(cfg(warp_px=2.0)), tmp_path / "w8.safetensors")


def test_the_warp_head_learns_a_shift():
    """Gradients reach the flow head: a few steps towards C shifted by one pixel move D there."""
    torch.manual_seed(0)
    m = HidingNet(cfg(warp_px=2.0, warp_grid=4, max_delta=1e-4))  # the residual can hardly help
    c, f = inputs(seed=3)
    target = warp(c, torch.stack([torch.ones(2, 64, 64), torch.zeros(2, 64, 64)], 1))  # x + 1
    opt = torch.optim.Adam(m.flow_head.parameters(), lr=0.05)
    first = None
    for _ in range(30):
        loss = (m(c, f) - target).pow(2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first


def test_warp_config_survives_a_round_trip(tmp_path):
    torch.manual_seed(0)
    m = HidingNet(cfg(warp_px=1.5, warp_grid=8))
    torch.nn.init.normal_(m.flow_head.weight, std=0.3)
    save_hiding_net(m, tmp_path / "w.safetensors")
    back = load_hiding_net(tmp_path / "w.safetensors")
    assert back.config.warp_px == 1.5 and back.config.warp_grid == 8
    c, f = inputs()
    assert torch.allclose(back(c, f), m(c, f), atol=1e-6)


def test_components_are_the_residual_and_the_flow_that_forward_composes():
    """forward(C, E) == clamp(warp(C, flow) + residual); without a warp head the flow is None."""
    torch.manual_seed(0)
    m = HidingNet(cfg(warp_px=2.0, warp_grid=8))
    torch.nn.init.normal_(m.head.weight, std=0.5)
    torch.nn.init.normal_(m.flow_head.weight, std=0.5)
    c, f = inputs()
    r, flow = m.components(c, f)
    assert r.shape == c.shape and flow.shape == (2, 2, 64, 64)
    assert r.abs().max() <= 0.1 + 1e-6 and flow.abs().max() > 1e-3  # both parts do something, within bounds
    assert torch.allclose(m(c, f), (warp(c, flow) + r).clamp(0, 1), atol=1e-6)
    plain = HidingNet(cfg())
    r0, none = plain.components(c, f)
    assert none is None and torch.allclose(plain(c, f), (c + r0).clamp(0, 1))
