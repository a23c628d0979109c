"""Every trajectory mode and option of ``PIRFTrainer`` takes a finite, effective step, and
gradient checkpointing changes the memory, not the numbers."""

from __future__ import annotations

import pytest
import torch

from tests.finetune.test_trainer import energy, snapshot, trainer
from tests.finetune.tiny import tiny_model


@pytest.mark.parametrize(
    "changes",
    [
        {"mode": "draft", "truncation": 1},
        {"mode": "full"},
        {"mode": "refl"},
        {"mode": "draft-lv", "copies": 3},
        {"trainable": "all", "distill_reg": 1.0},
        {"random_steps": (3, 4)},
        {"norm": "mae"},
    ],
)
def test_each_mode_takes_a_finite_step_that_moves_the_trainable_weights(changes):
    t = trainer(**changes)
    before = snapshot(t.model)
    stats = t.step(0)
    assert all(torch.isfinite(v).all() for v in t.model.state_dict().values())
    assert stats.nonfinite_gradients == 0 and not stats.skipped
    moved = [n for n, v in t.model.state_dict().items() if not torch.equal(v, before[n])]
    assert moved  # the step changed something
    assert set(moved) <= {name for name, _ in t.named_trainable}


def test_checkpointing_gives_the_same_step_in_float64():
    def run(checkpointing: bool) -> dict[str, torch.Tensor]:
        model = tiny_model(dtype=torch.float64)
        t = trainer(model=model, trainable="all", checkpointing=checkpointing)
        t.step(0)
        return snapshot(t.model)

    plain, checkpointed = run(False), run(True)
    for name, value in plain.items():
        # recomputation repeats the same float64 operations: equal to rounding
        torch.testing.assert_close(checkpointed[name], value, rtol=1e-12, atol=1e-14)


def test_distillation_penalty_is_zero_at_the_start_and_grows_as_weights_move():
    t = trainer(trainable="all", distill_reg=1.0, weight_reg=0.0, loss_fn=energy)
    first = t.step(0)
    assert first.regulariser == 0.0  # fine-tuned == pretrained before the first update
    second = t.step(1)
    assert second.regulariser > 0.0


def test_distilling_the_inputs_pulls_on_the_input_channel_only():
    import pirf.pdes
    from pirf.errors import PirfError
    from pirf.finetune import PIRFTrainer
    from tests.finetune.test_trainer import SHAPE, settings

    pde = pirf.pdes.get("poisson")  # channels (a, u); a is the input
    config = settings(trainable="all", distill_reg=1.0, distill_on="inputs", weight_reg=0.0)
    t = PIRFTrainer(tiny_model(), config, shape=SHAPE, pde=pde, loss_fn=energy)
    assert t.distill_mask is not None and t.distill_mask[0].all() and not t.distill_mask[1].any()
    assert t.step(0).regulariser == 0.0
    assert t.step(1).regulariser > 0.0
    with pytest.raises(PirfError, match="distill_on inputs needs a PDE that marks inputs"):
        PIRFTrainer(tiny_model(), config, shape=SHAPE, loss_fn=energy)


def test_a_held_reward_holds_the_inputs_in_the_window_and_still_trains():
    import pirf.pdes
    from pirf.finetune import PIRFTrainer
    from pirf.pdes.normalisation import Normalisation
    from tests.finetune.test_trainer import SHAPE, settings

    pde = pirf.pdes.get("poisson")
    norm = Normalisation((0.0, 0.0), (1.0, 0.05))
    t = PIRFTrainer(
        tiny_model(), settings(reward_inputs="held"), shape=SHAPE, pde=pde, normalisation=norm
    )
    assert t.hold is not None and t.hold[0].all() and not t.hold[1].any()
    before = snapshot(t.model)
    stats = t.step(0)
    assert stats.nonfinite_gradients == 0 and not stats.skipped
    assert any(not torch.equal(v, before[n]) for n, v in t.model.state_dict().items())
    free = PIRFTrainer(tiny_model(), settings(), shape=SHAPE, pde=pde, normalisation=norm)
    assert free.hold is None
