"""Input-pipeline benchmark: ``python -m brainmri.bench`` (``make bench``).

Trains the ReLU CNN for a fixed number of steps twice in one process: once on the real
cached dataset through the project's tf.data pipeline, once on synthetic tensors that
already sit in memory (the fastest possible input). The ratio of the two throughputs
says whether training is compute-bound (ratio near 1) or waits on input.
This is a benchmark, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def _throughput(model, dataset, steps: int, warmup: int, batch_size: int) -> float:
    it = iter(dataset)
    for _ in range(warmup):  # tracing and first-call costs are not throughput
        model.train_on_batch(*next(it))
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(*next(it))
    return steps * batch_size / (time.perf_counter() - start)


def run(dataset: str = "sartaj", steps: int = 30, warmup: int = 3, image_size: int = 256,
        batch_size: int = 32, augment: str = "none", data_dir: str | None = None) -> dict:
    import tensorflow as tf

    from . import data, devices, models, train
    from .preprocess import PixelSpec
    from .tfdata import ModelInputs

    devices.seed_everything(0)
    ds = data.load(dataset, data_dir)
    inputs = ModelInputs(ds, PixelSpec(image_size, "grayscale"), "standardize", batch_size,
                         augment=augment, splits=("train",))
    real = inputs.train().repeat()
    x = tf.random.normal((batch_size, image_size, image_size, 1))
    y = tf.random.uniform((batch_size,), 0, 4, dtype=tf.int32)
    synthetic = tf.data.Dataset.from_tensors((x, y)).repeat().prefetch(2)
    results = {}
    for name, source in (("synthetic", synthetic), ("real", real)):
        model = models.build("relu_cnn", inputs.spec.shape)
        train.compile_model(model, train.FitConfig(), steps)
        results[name] = _throughput(model, source, steps, warmup, batch_size)
    return {"dataset": dataset, "image_size": image_size, "batch_size": batch_size,
            "augment": augment, "steps": steps, "cpu_count": os.cpu_count(),
            "synthetic_img_per_s": round(results["synthetic"], 2),
            "real_img_per_s": round(results["real"], 2),
            "ratio_real_over_synthetic": round(results["real"] / results["synthetic"], 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m brainmri.bench", description=__doc__)
    parser.add_argument("--dataset", default="sartaj")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--augment", default="none", help="none or basic (the 06 pipeline)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = run(args.dataset, args.steps, image_size=args.image_size,
                 batch_size=args.batch_size, augment=args.augment, data_dir=args.data_dir)
    print(json.dumps(result, indent=2))
    print(f"real data: {result['real_img_per_s']} img/s, synthetic: "
          f"{result['synthetic_img_per_s']} img/s, ratio {result['ratio_real_over_synthetic']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
