"""Input-pipeline benchmark: ``brainmri throughput`` (``make bench``).

Trains the ReLU CNN for a fixed number of steps twice in one process: once on the real
cached dataset through the project's tf.data pipeline, once on synthetic tensors that
already sit in memory (the fastest possible input). The ratio of the two throughputs
says whether training is compute-bound (ratio near 1) or waits on input.
This is a benchmark, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import os
import time

CHAPTER = "05_relu_cnn"  # whose settings the benchmark trains with


def _throughput(model, dataset, steps: int, warmup: int, batch_size: int) -> float:
    it = iter(dataset)
    for _ in range(warmup):  # tracing and first-call costs are not throughput
        model.train_on_batch(*next(it))
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(*next(it))
    return steps * batch_size / (time.perf_counter() - start)


def run(settings: dict, steps: int, warmup: int) -> dict:
    """Images per second of the ReLU CNN on real and on synthetic batches.

    ``settings`` are a chapter's parameters (the CLI passes the ReLU CNN chapter's); the
    real batches come through the model chapters' own input path (``recipes.inputs_for``).
    """
    from types import SimpleNamespace

    import tensorflow as tf

    from brainmri.data.recipes import inputs_for
    from brainmri.modeling import builders, devices, training

    s = settings
    devices.seed_everything(s["seed"])
    inputs = inputs_for(SimpleNamespace(**s), splits=("train",))
    real = inputs.train().repeat()
    x = tf.random.normal((s["batch_size"], *inputs.spec.shape))
    y = tf.random.uniform((s["batch_size"],), 0, 4, dtype=tf.int32)
    synthetic = tf.data.Dataset.from_tensors((x, y)).repeat().prefetch(2)
    results = {}
    for name, source in (("synthetic", synthetic), ("real", real)):
        model = builders.build("relu_cnn", inputs.spec.shape)
        training.compile_model(model, training.FitConfig.for_phase(s, 1, s["learning_rate"]),
                               steps)
        results[name] = _throughput(model, source, steps, warmup, s["batch_size"])
    return {**{k: s[k] for k in ("dataset", "image_size", "color_mode", "batch_size",
                                 "augment")},
            "steps": steps, "cpu_count": os.cpu_count(),
            "synthetic_img_per_s": round(results["synthetic"], 2),
            "real_img_per_s": round(results["real"], 2),
            "ratio_real_over_synthetic": round(results["real"] / results["synthetic"], 3)}
