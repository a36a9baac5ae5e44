"""Which devices train the models, and determinism."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def strategy():
    """MirroredStrategy when several GPUs are visible, else TensorFlow's default strategy."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def gpus() -> list[str]:
    """The GPUs TensorFlow sees, by name."""
    import tensorflow as tf

    return [g.name for g in tf.config.list_physical_devices("GPU")]


def describe() -> dict:
    return {"gpus": gpus(), "replicas": strategy().num_replicas_in_sync,
            "strategy": type(strategy()).__name__}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and ask TF for deterministic kernels, so that two
    runs with the same seed on the same CPU give identical numbers."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
