from __future__ import annotations

import pytest
import torch

from featurefields.train.losses import feature_loss, linear_cosine_loss


@pytest.mark.parametrize("bias", [True, False])
def test_linear_cosine_loss_equals_decoding_first(bias):
    """The latent-space form gives the cosine loss of the decoded features, value and gradients."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(300, 16, generator=g, dtype=torch.float64, requires_grad=True)
    head = torch.nn.Linear(16, 384, bias=bias).double()
    target = torch.randn(300, 384, generator=g, dtype=torch.float64) * 3
    params = [z, head.weight] + ([head.bias] if bias else [])
    ours = linear_cosine_loss(z, head.weight, head.bias, target)
    ref = feature_loss(head(z), target, torch.ones(300, dtype=torch.bool), "cosine")
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(ours, params), torch.autograd.grad(ref, params)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert 0.5 < float(ours) < 1.5  # random directions: cosine near 0
