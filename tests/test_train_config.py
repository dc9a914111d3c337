"""The training defaults have one source: unet.config.TrainConfig (and LOSS_DEFAULTS)."""

import json
from dataclasses import fields

from jobs.train import parse_args
from unet.config import LOSS_DEFAULTS, TrainConfig

OPTIONS = {"epochs", "batch_size", "val_fraction", "normalization", "base_width", "depth",
           "dropout", "lr", "pos_weight", "bce_weight", "jaccard_weight", "seed", "precision"}


def test_command_line_defaults_are_the_config_defaults():
    args = vars(parse_args(["--data", "d", "--out", "o"]))
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    assert OPTIONS <= set(args)
    assert {k: args[k] for k in OPTIONS} == {k: defaults[k] for k in OPTIONS}
    assert args["no_batch_norm"] is (not defaults["batch_norm"])
    assert args["no_augment"] is (not defaults["augment"])


def test_loss_defaults_are_the_training_defaults():
    from unet.loss import LandslideLoss

    defaults = {f.name: f.default for f in fields(TrainConfig)}
    assert LandslideLoss().loss_config() == {k: defaults[k] for k in LOSS_DEFAULTS}


def test_a_strategy_that_cannot_gain_here_says_so():
    from jobs.train import gain_note

    assert "2 CPU replicas" in gain_note("mirrored", cpu_replicas=2)
    assert gain_note("mirrored", cpu_replicas=1) is None
    assert gain_note("default") is None

    def tf_config(*workers):
        return {"TF_CONFIG": json.dumps({"cluster": {"worker": list(workers)},
                                         "task": {"type": "worker", "index": 0}})}

    assert "2 workers" in gain_note("multiworker",
                                    environ=tf_config("localhost:1", "127.0.0.1:2"))
    assert gain_note("multiworker", environ=tf_config("localhost:1", "node7.example.org:2")) is None
