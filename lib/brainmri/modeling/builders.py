"""Model builders: one function per model, each a flat functional graph.

Every model ends with a Dense layer named ``logits`` followed by a separate
``probabilities`` softmax, so that explainers can work on logits (softmax saturation
hides attributions). ``GRADCAM_LAYER`` names the convolutional layer Grad-CAM uses.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path

import pandas as pd

from brainmri import CLASS_NAMES
from brainmri.core.errors import WeightsUnavailableError

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


def _head(x):
    """The shared output: ``logits`` Dense, then a separate softmax."""
    keras, L = _layers()
    logits = L.Dense(N_CLASSES, name="logits")(x)
    return L.Softmax(name="probabilities")(logits)


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
    # Named by its variable, not expanded: the message lands in executed notebooks.
    target = ("$KERAS_HOME/models/" if "KERAS_HOME" in os.environ else "~/.keras/models/") \
        + IMAGENET_FILES[family]
    return WeightsUnavailableError(
        f"skipped: ImageNet weights unavailable for {family} "
        f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}).\n"
        f"Fix: on a machine with internet access, run this notebook once (Keras downloads the "
        f"weights), or copy the file {IMAGENET_FILES[family]} to {target}, or set the "
        f"notebook's `weights` parameter to the path of that file. "
        f"`weights='none'` trains from scratch instead.")


def _backbone(constructor, family: str, weights: str | None, **kwargs):
    import keras

    resolved = resolve_weights(weights, family)
    # Keras announces a download on stdout, which a chapter would keep as output; with
    # interactive logging off it goes to the log instead (restored afterwards)
    interactive = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        return constructor(include_top=False, weights=resolved, **kwargs)
    except WeightsUnavailableError:
        raise
    except Exception as exc:  # noqa: BLE001 - Keras raises bare Exception on fetch failure
        if resolved == "imagenet" and ("fetch" in str(exc).lower() or isinstance(
                exc, (OSError, ConnectionError))):
            raise _unavailable(family, exc) from None
        raise
    finally:
        if interactive:
            keras.config.enable_interactive_logging()


def simple_cnn(input_shape, activation: str, name: str, pool_after=(1, 2)):
    """The report's CNN (section 6.2): four 3x3 convolutions (32, 64, 128, 128 filters)
    and two 2x2 max-pools, then Dense 64 and Dropout 0.2.

    The report does not say where its two pools go; we put them after the first and
    second convolutions. After the second and fourth costs about four times the compute
    for the same depth (``pool_placement_cost`` measures it). ``activation`` applies to the
    convolutions only (the Sigmoid model); ``pool_after`` lists the convolutions (1 to 4)
    followed by a pool.
    """
    keras, L = _layers()
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for k, (filters, layer_name) in enumerate(zip((32, 64, 128, 128),
                                                  ("conv1", "conv2", "conv3", "last_conv")), 1):
        x = L.Conv2D(filters, 3, activation=activation, name=layer_name)(x)
        if k in pool_after:
            x = L.MaxPooling2D(2, name=f"pool{k}")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(64, activation="relu", name="fc")(x)
    x = L.Dropout(0.2, name="dropout")(x)
    return keras.Model(inputs, _head(x), name=name)


def inception_v3(input_shape, weights: str | None):
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
    model = keras.Model(base.input, _head(x), name="inception_v3")
    model.backbone_layers = len(base.layers)
    return model


def convnext_tiny(input_shape, weights: str | None):
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
    model = keras.Model(base.input, _head(x), name="convnext_tiny")
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


def compact_cnn(input_shape, widths, dropout: float, name: str = "compact_cnn"):
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
    return keras.Model(inputs, _head(x), name=name)


BUILDERS = {
    "relu_cnn": lambda shape: simple_cnn(shape, "relu", "relu_cnn"),
    "relu_cnn_augmented": lambda shape: simple_cnn(shape, "relu", "relu_cnn_augmented"),
    "sigmoid_cnn": lambda shape: simple_cnn(shape, "sigmoid", "sigmoid_cnn"),
    "inception_v3": inception_v3,
    "convnext_tiny": convnext_tiny,
    "compact_cnn": compact_cnn,
}
#: Each model's name as a reader sees it (tables, figures, prose).
DISPLAY = {"relu_cnn": "ReLU CNN", "relu_cnn_augmented": "augmented ReLU CNN",
           "sigmoid_cnn": "sigmoid CNN", "inception_v3": "InceptionV3",
           "convnext_tiny": "ConvNeXt-Tiny", "compact_cnn": "compact CNN"}


def options(model_name: str) -> list[str]:
    """The keyword arguments ``build`` takes for ``model_name`` (besides the input shape)."""
    import inspect

    names = list(inspect.signature(BUILDERS[model_name]).parameters)[1:]
    return [n for n in names if n != "name"]


def build(model_name: str, input_shape, **kwargs):
    """Build ``model_name`` under the active distribution strategy (several GPUs: mirrored).

    An option the builder does not take is an error, not silently dropped.
    """
    from brainmri.modeling.devices import strategy

    if model_name not in BUILDERS:
        raise ValueError(f"unknown model {model_name!r}; choose one of {sorted(BUILDERS)}")
    unknown = set(kwargs) - set(options(model_name))
    if unknown:
        raise TypeError(f"{model_name} takes no option(s) {sorted(unknown)}; it takes "
                        f"{options(model_name) or 'none'}")
    with strategy().scope():
        return BUILDERS[model_name](tuple(input_shape), **kwargs)


#: One logits model per model: each new keras.Model traces its predict function anew,
#: which costs seconds per call for a large backbone on a CPU (a chapter predicts its
#: validation, test and external sets with the same model).
_LOGITS_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def logits_model(model):
    """The same graph, stopped at the ``logits`` layer (what the explainers need)."""
    import keras

    cached = _LOGITS_MODELS.get(model)
    if cached is None:
        cached = keras.Model(model.input, model.get_layer("logits").output,
                             name=f"{model.name}_logits")
        _LOGITS_MODELS[model] = cached
    return cached


def flip_averaged(model):
    """Test-time augmentation: the model's logits averaged with those of the left-right
    mirrored image (axial slices are close to symmetric; the training flips too). Built
    for scoring only: its flip is a Lambda layer, which ``safe_mode`` would not load."""
    import keras

    logits = logits_model(model)
    x = keras.Input(model.input.shape[1:], name="image")
    mirrored = keras.layers.Lambda(lambda t: keras.ops.flip(t, axis=2), name="mirror")(x)
    out = keras.layers.Average(name="logits")([logits(x), logits(mirrored)])
    return keras.Model(x, out, name=f"{model.name}_tta")


def multiply_accumulates(model) -> int:
    """Multiply-accumulate operations of one forward pass (convolutions and dense layers,
    which dominate; normalisation and activations are ignored)."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            total += h * w * cout * kh * kw * cin // (layer.groups or 1)
        elif isinstance(layer, keras.layers.Dense):
            total += layer.kernel.shape[0] * layer.kernel.shape[1]
    return int(total)


def pool_placement_cost(input_shape) -> pd.Series:
    """GMAC per image of the report's CNN with its two pools after convolutions 1 and 2
    (ours) or 2 and 4 (the other reading of the report)."""
    return pd.Series({f"pools after conv {a} and {b}": multiply_accumulates(
        simple_cnn(tuple(input_shape), "relu", "probe", (a, b))) / 1e9
        for a, b in ((1, 2), (2, 4))}, name="GMAC per image")


def layer_table(model, max_rows: int = 30):
    """Layer table (name, type, output shape, parameters); long backbones are elided."""
    rows = []
    for layer in model.layers:
        try:
            shape = tuple(layer.output.shape[1:])
        except (AttributeError, ValueError):
            shape = ""
        rows.append({"layer": layer.name, "type": type(layer).__name__, "output": str(shape),
                     "parameters": layer.count_params(), "trainable": layer.trainable})
    table = pd.DataFrame(rows)
    if len(table) > max_rows:
        head, tail = table.iloc[:5], table.iloc[-(max_rows - 6):]
        middle = table.iloc[5:-(max_rows - 6)]
        gap = pd.DataFrame([{"layer": f"... {len(middle)} more layers ...", "type": "",
                             "output": "", "parameters": int(middle["parameters"].sum()),
                             "trainable": ""}])
        table = pd.concat([head, gap, tail], ignore_index=True)
    total = pd.DataFrame([{"layer": "total", "type": "", "output": "",
                           "parameters": model.count_params(), "trainable": ""}])
    return pd.concat([table, total], ignore_index=True)
