"""The training driver behind ``insightgluon train`` / ``train_softmax.py``.

``train(cfg)`` runs a resolved :class:`insightgluon.config.TrainConfig`; see
``docs/TRAINING.md`` for flags, schedule, checkpoints, resume and multi-device use.
"""
from insightgluon.train.loop import TrainResult, train

__all__ = ["TrainResult", "train"]
