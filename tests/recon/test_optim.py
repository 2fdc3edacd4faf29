"""The construction's Adam: fused on CUDA, and checkpoints that move between devices."""
import pytest
import torch

from orster4d.recon.gaussians import GaussianModel
from orster4d.recon.optim import adam, match_device
from orster4d.recon.strategy import remove


def _params(device, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(17, 3, generator=g).to(device)),
            torch.nn.Parameter(torch.randn(5, generator=g).to(device))]


def _run(opt, params, steps, g):
    """``steps`` Adam steps on a loss whose random linear part is drawn from ``g``."""
    for _ in range(steps):
        opt.zero_grad()
        loss = sum((p * torch.randn(p.shape, generator=g).to(p.device)).sum() + p.pow(2).sum() for p in params)
        loss.backward()
        opt.step()


def test_cpu_parameters_get_the_default_adam():
    params = _params("cpu")
    opt = adam([{"params": [params[0]], "lr": 1e-2}, {"params": [params[1]], "lr": 1e-3}], eps=1e-15)
    assert not any(group["fused"] for group in opt.param_groups)
    _run(opt, params, 2, torch.Generator().manual_seed(1))
    assert all(opt.state[p]["step"].device.type == "cpu" for p in params)


def test_a_state_saved_as_fused_resumes_on_the_cpu_on_the_same_trajectory():
    # a GPU run's state dict as the CPU sees it after torch.load(map_location="cpu"): fused=True
    # in every group, step counters as tensors; match_device must make it steppable here and
    # give the same parameters as a run that never stopped
    ref = _params("cpu")
    ref_opt = adam([{"params": ref, "lr": 1e-2}], eps=1e-15)
    _run(ref_opt, ref, 6, torch.Generator().manual_seed(1))

    first = _params("cpu")
    opt = adam([{"params": first, "lr": 1e-2}], eps=1e-15)
    g = torch.Generator().manual_seed(1)
    _run(opt, first, 3, g)
    saved = opt.state_dict()
    for group in saved["param_groups"]:
        group["fused"] = True
    resumed = [torch.nn.Parameter(p.detach().clone()) for p in first]
    opt2 = adam([{"params": resumed, "lr": 1e-2}], eps=1e-15)
    opt2.load_state_dict(saved)
    assert all(group["fused"] for group in opt2.param_groups)  # what load_state_dict brings back
    match_device(opt2)
    assert not any(group["fused"] for group in opt2.param_groups)
    _run(opt2, resumed, 3, g)  # steps 4-6, with the generator where the first 3 steps left it
    for a, b in zip(resumed, ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.cuda
def test_cuda_parameters_get_the_fused_adam_on_the_foreach_trajectory():
    fused = _params("cuda")
    ref = [torch.nn.Parameter(p.detach().clone()) for p in fused]
    opt = adam([{"params": fused, "lr": 1e-2}], eps=1e-15)
    assert all(group["fused"] for group in opt.param_groups)
    ref_opt = torch.optim.Adam([{"params": ref, "lr": 1e-2}], eps=1e-15, foreach=True)
    _run(opt, fused, 5, torch.Generator().manual_seed(1))
    _run(ref_opt, ref, 5, torch.Generator().manual_seed(1))
    for a, b in zip(fused, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert all(opt.state[p]["step"].device.type == "cuda" for p in fused)


@pytest.mark.cuda
def test_cpu_state_resumes_fused_on_cuda_and_survives_pruning():
    g = torch.Generator().manual_seed(0)
    cpu = GaussianModel.from_points(torch.randn(64, 3, generator=g), torch.rand(64, 3, generator=g), max_sh_degree=1)
    opt = cpu.make_optimizer()
    assert not any(group["fused"] for group in opt.param_groups)
    loss = sum(p.pow(2).sum() for p in cpu.parameters())
    loss.backward()
    opt.step()
    gpu = GaussianModel.from_state(cpu.state(), "cuda")
    gopt = gpu.make_optimizer()
    gopt.load_state_dict(opt.state_dict())
    match_device(gopt)
    assert all(group["fused"] for group in gopt.param_groups)
    remove(gpu, gopt, torch.arange(64, device="cuda") % 3 == 0)
    loss = sum(p.pow(2).sum() for p in gpu.parameters())
    loss.backward()
    gopt.step()
    assert all(torch.isfinite(p).all() for p in gpu.parameters())
