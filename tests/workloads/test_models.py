import pytest
import torch
import torch.nn.functional as F
import torchvision

from sassha.models import cifar_resnet, wide_resnet
from sassha.models.gpt import GPT, gpt1_mini
from sassha.models.vit import ViT, vit_s32
from sassha.workloads import get_workload

from .writers import hvp_check


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture
def meta():
    # Parameters on the meta device: shapes without memory or initialisation cost.
    with torch.device("meta"):
        yield


def test_parameter_counts_of_the_real_sizes(meta):
    # The published sizes: ResNet-20 0.27M, ResNet-32 0.46M (option-A shortcuts),
    # WRN-28-10 36.5M, ResNet-50 25.6M, ViT-S/32 22.9M.
    assert n_params(cifar_resnet(20, 10)) == 269_722
    assert n_params(cifar_resnet(32, 10)) == 464_154
    assert n_params(cifar_resnet(32, 100)) == 470_004
    assert n_params(wide_resnet(28, 10, 100)) == 36_536_884
    assert n_params(wide_resnet(28, 10, 10)) == 36_479_194
    assert n_params(vit_s32(1000)) == 22_878_952
    assert n_params(get_workload("imagenet_resnet50").build_model({})) == 25_557_032
    # Same as torchvision's own constructor: the workload builds the standard ResNet-50.
    assert n_params(torchvision.models.resnet50()) == 25_557_032
    gpt = get_workload("synthetic_lm").build_model({})
    assert n_params(gpt) == 54_107_136  # 33,278 x 768 tied embedding + 4 blocks


def test_option_a_shortcut_has_no_parameters_and_zero_pads():
    model = cifar_resnet(8, 10, width=4)
    block = model.layers[1]  # first block of stage 2: 4 -> 8 channels, stride 2
    assert sum(p.numel() for p in block.shortcut.parameters()) == 0
    x = torch.randn(2, 4, 8, 8)
    out = block.shortcut(x)
    assert out.shape == (2, 8, 4, 4)
    assert torch.equal(out[:, 2:6], x[:, :, ::2, ::2])
    assert out[:, :2].abs().sum() == 0 and out[:, 6:].abs().sum() == 0


def test_bad_depths_are_clear_errors():
    with pytest.raises(ValueError, match="6n\\+2"):
        cifar_resnet(21, 10)
    with pytest.raises(ValueError, match="6n\\+4"):
        wide_resnet(27, 2, 10)


def _image_case(model, size=32, classes=10, batch=4):
    x = torch.randn(batch, 3, size, size)
    y = torch.arange(batch) % classes
    return lambda: F.cross_entropy(model(x), y)


CASES = {
    "cifar_resnet": lambda: (cifar_resnet(8, 10, width=4), 32),
    "wide_resnet": lambda: (wide_resnet(10, 1, 10), 32),
    "vit": lambda: (
        ViT(image_size=32, patch_size=8, num_classes=10, dim=16, depth=2, heads=2, mlp_dim=32),
        32,
    ),
    "digits_cnn": lambda: (get_workload("digits_cnn").build_model({"model": {"width": 4}}), 8),
}


@pytest.mark.parametrize("family", sorted(CASES))
def test_forward_backward_and_double_backward(family):
    torch.manual_seed(0)
    model, size = CASES[family]()
    model.train()
    if family == "digits_cnn":
        gen = torch.Generator().manual_seed(1)
        xs = torch.randn(4, 1, 8, 8, generator=gen)
        loss_fn = lambda: F.cross_entropy(model(xs), torch.arange(4))  # noqa: E731
    else:
        loss_fn = _image_case(model, size)
    loss = loss_fn()
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    model.zero_grad()
    v, hv = hvp_check(loss_fn, list(model.parameters()))
    assert torch.isfinite(hv).all()
    assert hv.abs().sum() > 0
    # Symmetry of the Hessian: u^T (H v) == v^T (H u) for two probes.
    params = list(model.parameters())
    loss = loss_fn()
    g = torch.autograd.grad(loss, params, create_graph=True)
    gen = torch.Generator().manual_seed(7)
    u = [torch.randn(p.shape, generator=gen) for p in params]
    w = [torch.randn(p.shape, generator=gen) for p in params]
    hu = torch.autograd.grad(g, params, grad_outputs=u, retain_graph=True, allow_unused=True)
    hw = torch.autograd.grad(g, params, grad_outputs=w, allow_unused=True)

    def dot(a, b):
        return sum(float((x * y).sum()) for x, y in zip(a, b) if x is not None and y is not None)

    a, b = dot(w, hu), dot(u, hw)
    assert abs(a - b) <= 1e-3 * max(1.0, abs(a))


def test_gpt_is_causal_and_has_double_backward():
    torch.manual_seed(0)
    model = GPT(50, block_size=8, n_layer=2, n_head=2, n_embd=16)
    idx = torch.randint(0, 50, (2, 8))
    out = model(idx)
    assert out.shape == (2, 8, 50)
    changed = idx.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 50
    out2 = model(changed)
    assert torch.allclose(out[:, :5], out2[:, :5], atol=1e-6)  # no look-ahead
    assert not torch.allclose(out[:, 5:], out2[:, 5:])
    assert model.head.weight is model.tok.weight  # tied embeddings
    y = torch.randint(0, 50, (2, 8))
    v, hv = hvp_check(
        lambda: F.cross_entropy(model(idx).flatten(0, 1), y.flatten()), model.parameters()
    )
    assert torch.isfinite(hv).all() and hv.abs().sum() > 0
    with pytest.raises(ValueError, match="exceeds block_size 8"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_gpt1_mini_shape():
    model = gpt1_mini(100, n_embd=24, n_head=12)
    assert len(model.blocks) == 4 and model.block_size == 256


def test_resnet50_family_small_variant_trains():
    # Same bottleneck code as the real ResNet-50; double backward through its ops (conv,
    # BatchNorm, ReLU, add) is covered by the CIFAR ResNets above.
    torch.manual_seed(0)
    wl = get_workload("imagenet_resnet50")
    model = wl.build_model({"model": {"layers": [1, 1, 1, 1], "num_classes": 5}})
    assert n_params(model) < 10_000_000
    loss = _image_case(model, size=32, classes=5, batch=2)()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
