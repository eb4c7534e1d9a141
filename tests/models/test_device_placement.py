"""No registered model creates a tensor on the default device inside forward (the bug class of
DeepCTR-Torch #261 / #240: a ``torch.zeros(...)`` without ``device=`` that breaks on CUDA).

The check runs on CPU: the model and its batch live on the CPU while the *default* device is
"meta", so any factory call in forward that does not take its device from an input lands on meta
and the first op mixing it with a CPU tensor raises."""

import pytest
import torch

from recforge.models import MODELS, build_model, get_model_entry
from tests.models.test_registry import RICH, _batch, _single


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_and_backward_create_no_tensor_on_the_default_device(name):
    torch.manual_seed(0)
    model = build_model(name, RICH, get_model_entry(name).config_cls())
    batch = _batch()
    with torch.device("meta"):
        model.train()
        out = _single(model(batch))
        if out.requires_grad:  # ItemPop has no trainable parameters
            out.sum().backward()
        model.eval()
        with torch.no_grad():
            scores = _single(model(batch))
    assert out.device.type == "cpu" and scores.device.type == "cpu"
    assert torch.isfinite(scores).all()


def test_the_check_catches_a_tensor_made_without_a_device():
    class Careless(torch.nn.Module):
        def forward(self, x):
            return x + torch.zeros(x.shape[0])  # no device=: the default device

    x = torch.randn(3)  # on the CPU, like the batches above
    with torch.device("meta"), pytest.raises(RuntimeError, match="device"):
        Careless()(x)
