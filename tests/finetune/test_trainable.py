"""Choosing the trainable weights."""

import pytest
import torch

from pirf.errors import PirfError
from pirf.finetune import select_trainable, trainable_parameters
from tests.finetune.tiny import tiny_model


def test_top_selects_the_finest_decoder_blocks_and_the_output_layers():
    model = tiny_model()
    chosen = [name for name, _ in select_trainable(model, "top", blocks=1)]
    finest = [n for n in model.backbone.decoder if n.startswith("level0_")][-1]
    prefixes = (f"backbone.decoder.{finest}.", "backbone.out_norm.", "backbone.out_conv.")
    assert chosen and all(name.startswith(prefixes) for name in chosen)
    assert [name for name, _ in trainable_parameters(model)] == chosen
    everything = select_trainable(model, "all")
    assert len(everything) == len(list(model.parameters()))
    assert all(p.requires_grad for p in model.parameters())


def test_explicit_prefixes_and_errors():
    model = tiny_model()
    chosen = select_trainable(model, "top", prefixes=["backbone.out_conv"])
    assert [name for name, _ in chosen] == ["backbone.out_conv.weight", "backbone.out_conv.bias"]
    with pytest.raises(PirfError, match="no module"):
        select_trainable(model, "top", prefixes=["backbone.nothing"])
    with pytest.raises(PirfError, match="top layers"):
        select_trainable(torch.nn.Linear(2, 2), "top")
    with pytest.raises(PirfError, match="trainable set"):
        select_trainable(model, "lora")
