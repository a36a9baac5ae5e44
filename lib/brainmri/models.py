"""Model builders: one function per model, each a flat functional graph.

Every model ends with a Dense layer named ``logits`` followed by a separate
``probabilities`` softmax, so that explainers can work on logits (softmax saturation
hides attributions). ``GRADCAM_LAYER`` names the convolutional layer Grad-CAM uses.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import CLASS_NAMES
from .errors import WeightsUnavailableError

N_CLASSES = len(CLASS_NAMES)

#: Layer whose activations Grad-CAM weighs, per model family.
GRADCAM_LAYER = {
    "inception_v3": "mixed10",
    "convnext_tiny": "last_stage",
    "relu_cnn": "last_conv",
    "relu_cnn_augmented": "last_conv",
    "sigmoid_cnn": "last_conv",
    "compact_cnn": "last_conv",
}

#: Keras' file names for the ImageNet weights (downloaded to $KERAS_HOME/models).
IMAGENET_FILES = {
    "inception_v3": "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "convnext_tiny": "convnext_tiny_notop.h5",
}


def _layers():
    import keras

    return keras, keras.layers


def _head(x, name: str):
    """The shared output: ``logits`` Dense, then a separate softmax."""
    keras, L = _layers()
    logits = L.Dense(N_CLASSES, name="logits")(x)
    return L.Softmax(name="probabilities")(logits)


def keras_home() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))


def resolve_weights(weights: str | None, family: str) -> str | None:
    """``imagenet`` / a local file / ``none`` -> what keras.applications expects.

    ``imagenet`` is passed through (Keras downloads the file on first use, into
    ``$KERAS_HOME/models``); a failing download is turned into WeightsUnavailableError
    by the builders, with the fix spelled out.
    """
    if weights is None or str(weights).lower() in ("none", "null", ""):
        return None
    if str(weights).lower() == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(
            f"weights file {path} does not exist. Pass weights='imagenet', weights='none', "
            f"or the path of a Keras weights file such as {IMAGENET_FILES[family]}.")
    return str(path)


def _unavailable(family: str, exc: Exception) -> WeightsUnavailableError:
    target = keras_home() / "models" / IMAGENET_FILES[family]
    return WeightsUnavailableError(
        f"skipped: ImageNet weights unavailable for {family} "
        f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}).\n"
        f"Fix: on a machine with internet access, run this notebook once (Keras downloads the "
        f"weights), or copy the file {IMAGENET_FILES[family]} to {target}, or set the "
        f"notebook's `weights` parameter to the path of that file. "
        f"`weights='none'` trains from scratch instead.")


def _backbone(constructor, family: str, weights: str | None, **kwargs):
    resolved = resolve_weights(weights, family)
    try:
        return constructor(include_top=False, weights=resolved, **kwargs)
    except WeightsUnavailableError:
        raise
    except Exception as exc:  # noqa: BLE001 - Keras raises bare Exception on fetch failure
        if resolved == "imagenet" and ("fetch" in str(exc).lower() or isinstance(
                exc, (OSError, ConnectionError))):
            raise _unavailable(family, exc) from None
        raise


def simple_cnn(input_shape=(256, 256, 1), activation: str = "relu",
               name: str = "relu_cnn"):
    """The report's CNN (section 6.2): four 3x3 convolutions (32, 64, 128, 128 filters)
    and two 2x2 max-pools, then Dense 64 and Dropout 0.2.

    The report does not say where its two pools go; we put them after the first and
    second convolutions. After the second and fourth would cost four times the compute
    (4.5 vs 1.1 GMAC per 256 px image; 15 vs 4 images/s training on 2 CPU cores) for the
    same depth. ``activation`` applies to the convolutions only (the Sigmoid model).
    """
    keras, L = _layers()
    inputs = keras.Input(input_shape, name="image")
    x = L.Conv2D(32, 3, activation=activation, name="conv1")(inputs)
    x = L.MaxPooling2D(2, name="pool1")(x)
    x = L.Conv2D(64, 3, activation=activation, name="conv2")(x)
    x = L.MaxPooling2D(2, name="pool2")(x)
    x = L.Conv2D(128, 3, activation=activation, name="conv3")(x)
    x = L.Conv2D(128, 3, activation=activation, name="last_conv")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(64, activation="relu", name="fc")(x)
    x = L.Dropout(0.2, name="dropout")(x)
    return keras.Model(inputs, _head(x, name), name=name)


def inception_v3(input_shape=(299, 299, 3), weights: str | None = "imagenet"):
    """InceptionV3 base (report section 6.1) with the report's head:
    GAP -> Dense 256 ReLU -> BatchNorm -> Dropout 0.5 -> Dense 128 ReLU -> logits."""
    keras, L = _layers()
    base = _backbone(keras.applications.InceptionV3, "inception_v3", weights,
                     input_shape=input_shape)
    x = L.GlobalAveragePooling2D(name="gap")(base.output)
    x = L.Dense(256, activation="relu", name="fc1")(x)
    x = L.BatchNormalization(name="fc1_bn")(x)
    x = L.Dropout(0.5, name="dropout")(x)
    x = L.Dense(128, activation="relu", name="fc2")(x)
    model = keras.Model(base.input, _head(x, "inception_v3"), name="inception_v3")
    model.backbone_layers = len(base.layers)
    return model


def convnext_tiny(input_shape=(224, 224, 3), weights: str | None = "imagenet"):
    """ConvNeXt-Tiny base (report 001) with LayerNorm -> Dropout 0.3 -> logits.

    Normalisation with ImageNet statistics happens in the input pipeline, so the Keras
    model's own preprocessing layer is turned off.
    """
    keras, L = _layers()
    base = _backbone(keras.applications.ConvNeXtTiny, "convnext_tiny", weights,
                     input_shape=input_shape, include_preprocessing=False)
    x = L.Identity(name="last_stage")(base.output)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.LayerNormalization(epsilon=1e-6, name="head_norm")(x)
    x = L.Dropout(0.3, name="dropout")(x)
    model = keras.Model(base.input, _head(x, "convnext_tiny"), name="convnext_tiny")
    model.backbone_layers = len(base.layers)
    return model


def _conv_bn(x, filters: int, stride: int, name: str):
    keras, L = _layers()
    x = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=name)(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    return L.Activation("relu", name=f"{name}_relu")(x)


def _residual_block(x, filters: int, stride: int, name: str):
    """Two 3x3 convolutions with batch norm and a (projected) shortcut, as in ResNet."""
    keras, L = _layers()
    shortcut = x
    y = _conv_bn(x, filters, stride, f"{name}_a")
    y = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_b")(y)
    y = L.BatchNormalization(name=f"{name}_b_bn")(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = L.Conv2D(filters, 1, strides=stride, use_bias=False,
                            name=f"{name}_proj")(shortcut)
        shortcut = L.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    return L.Activation("relu", name=f"{name}_out")(L.Add(name=f"{name}_add")([y, shortcut]))


def compact_cnn(input_shape=(128, 128, 3), widths=(16, 32, 64, 128), dropout: float = 0.3,
                name: str = "compact_cnn"):
    """Our CPU-sized model: a small ResNet (one residual block per stage, batch norm,
    global average pooling). Wide enough to learn tumour texture, small enough (about
    0.3 M parameters at the default widths, ~100 img/s at 128 px) to train on two CPU
    cores within the hour."""
    keras, L = _layers()
    inputs = keras.Input(input_shape, name="image")
    x = _conv_bn(inputs, widths[0], 2, "stem")
    for i, width in enumerate(widths):
        x = _residual_block(x, width, 1 if i == 0 else 2, f"stage{i}")
    x = L.Identity(name="last_conv")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, _head(x, name), name=name)


BUILDERS = {
    "relu_cnn": lambda shape, **kw: simple_cnn(shape, "relu", "relu_cnn"),
    "relu_cnn_augmented": lambda shape, **kw: simple_cnn(shape, "relu", "relu_cnn_augmented"),
    "sigmoid_cnn": lambda shape, **kw: simple_cnn(shape, "sigmoid", "sigmoid_cnn"),
    "inception_v3": lambda shape, weights=None, **kw: inception_v3(shape, weights),
    "convnext_tiny": lambda shape, weights=None, **kw: convnext_tiny(shape, weights),
    "compact_cnn": lambda shape, **kw: compact_cnn(shape, **kw),
}


def build(model_name: str, input_shape, **kwargs):
    """Build ``model_name`` under the active distribution strategy (several GPUs: mirrored)."""
    from .devices import strategy

    if model_name not in BUILDERS:
        raise ValueError(f"unknown model {model_name!r}; choose one of {sorted(BUILDERS)}")
    with strategy().scope():
        return BUILDERS[model_name](tuple(input_shape), **kwargs)


def logits_model(model):
    """The same graph, stopped at the ``logits`` layer (what the explainers need)."""
    import keras

    return keras.Model(model.input, model.get_layer("logits").output, name=f"{model.name}_logits")


def load_saved(folder_or_file):
    """(model, metadata) from a folder written by ``train.save`` (or its model.keras).

    Loaded with ``safe_mode=True``: no arbitrary code from the file runs. The training loss
    is not needed to predict, so the model is not compiled.
    """
    import json

    import keras

    path = Path(folder_or_file)
    model_file = path / "model.keras" if path.is_dir() else path
    meta_file = model_file.with_suffix(".json")  # brainmri_compact.keras -> .json
    if not meta_file.exists():
        meta_file = model_file.with_name("model.json")  # a run's model folder
    if not model_file.exists():
        raise FileNotFoundError(f"no saved model at {model_file}")
    metadata = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    return keras.models.load_model(model_file, compile=False, safe_mode=True), metadata


def saved_models(run_dir, names: list[str] | None = None) -> dict[str, Path]:
    """{tag: folder} of the models a run saved (optionally only the given model names)."""
    import json

    out = {}
    for meta in sorted(Path(run_dir).glob("models/*/model.json")):
        info = json.loads(meta.read_text())
        if names is None or info.get("model") in names:
            out[meta.parent.name] = meta.parent
    return out
