"""The train → evaluate hand-over: what a train stage saves, an evaluate stage rebuilds."""

import json

import torch
from torch import nn

from stages.common.trained import final_loss, load_trained, save_trained


def test_final_loss_is_the_mean_of_the_last_tenth_of_steps():
    history = [{"loss": float(i)} for i in range(20)]  # last 10%: steps 18 and 19
    assert final_loss(history) == 18.5
    assert final_loss([{"loss": 3.0}, {"loss": 1.0}]) == 1.0  # short runs: the last step


def test_saved_weights_and_config_rebuild_the_same_model(tmp_path):
    torch.manual_seed(0)
    config = {"n_in": 3, "n_out": 2}
    model = nn.Linear(config["n_in"], config["n_out"])
    save_trained(tmp_path, model, config, [{"step": 0, "loss": 1.0}])

    rebuilt, loaded = load_trained(tmp_path, lambda c: nn.Linear(c["n_in"], c["n_out"]))

    assert loaded == config
    assert json.loads((tmp_path / "history.json").read_text()) == [{"step": 0, "loss": 1.0}]
    x = torch.randn(4, 3)
    assert torch.equal(rebuilt(x), model(x))
    assert rebuilt.weight.device.type == "cpu"
