"""Export an hls4ml ModelGraph (after hls4ml's optimizer passes) to a `Manifest`.

Each hls4ml layer class has one registered exporter; a class without one is refused with an error naming the
layer, its class and what is missing. Weights are quantized from the decimal text hls4ml writes into the
firmware (its own formatter), exactly as the C-simulation reads them back.
"""

from __future__ import annotations

import numpy as np

from .arith import quantize
from .fixed_type import FixedType, UnsupportedType
from .manifest import Layer, Manifest, Tensor
from .tables import kl_exp_table

_EXPORTERS = {}


class UnsupportedLayer(ValueError):
    """An hls4ml layer, or an option of one, that the emulator does not implement."""


def register_exporter(*class_names):
    """Decorator: `fn(node) -> Layer` exports hls4ml layers of the given class names."""

    def wrap(fn):
        for name in class_names:
            _EXPORTERS[name] = fn
        return fn

    return wrap


def export_manifest(hls_model, name: str | None = None) -> Manifest:
    """Build the manifest of a converted (not necessarily compiled) hls4ml model."""
    _require_supported_config(hls_model)
    tensor_owner = {}
    inputs, layers = [], []
    for node in hls_model.get_layers():
        if node.class_name in ("Input", "InputLayer"):
            var = node.get_output_variable()
            inputs.append(Tensor(node.name, tuple(var.shape), _type(node, var.type.precision, "result")))
        else:
            exporter = _EXPORTERS.get(node.class_name)
            if exporter is None:
                raise UnsupportedLayer(
                    f"layer {node.name!r} of class {node.class_name} is not supported by the emulator "
                    f"(supported: {', '.join(sorted(_EXPORTERS))})"
                )
            layer = exporter(node)
            layer.inputs = [tensor_owner[t] for t in node.inputs]
            layers.append(layer)
        for out in node.outputs:
            tensor_owner[out] = node.name
    outputs = [tensor_owner[t] for t in hls_model.outputs]
    order = [tensor_owner[t] for t in hls_model.inputs]  # the top function's argument order
    inputs.sort(key=lambda tensor: order.index(tensor.name))
    manifest = Manifest(
        name=name or hls_model.config.get_project_name(),
        inputs=inputs,
        layers=layers,
        outputs=outputs,
        meta={"hls4ml_version": _hls4ml_version(), "backend": hls_model.config.backend.name},
    )
    manifest.validate()
    return manifest


# ---- helpers ---------------------------------------------------------------------------------
def _require_supported_config(hls_model):
    io_type = hls_model.config.get_config_value("IOType")
    if io_type != "io_parallel":
        raise UnsupportedLayer(f"IOType {io_type!r} is not supported; the emulator models io_parallel")
    for node in hls_model.get_layers():
        strategy = str(node.get_attr("strategy", "latency")).lower()
        if strategy != "latency":
            raise UnsupportedLayer(f"layer {node.name!r}: strategy {strategy!r} is not supported; use Latency")


def _hls4ml_version() -> str:
    import hls4ml

    return hls4ml.__version__


def _type(node, precision, role: str) -> FixedType:
    try:
        return FixedType.from_hls4ml(precision)
    except UnsupportedType as exc:
        raise UnsupportedLayer(f"layer {node.name!r} ({node.class_name}): {role} type: {exc}") from None


def _attr_type(node, attr: str) -> FixedType:
    return _type(node, node.get_attr(attr).precision, attr)


def _result_type(node) -> FixedType:
    return _type(node, node.get_output_variable().type.precision, "result")


def _weight_codes(node, key: str):
    """The weight `key` as hls4ml writes it (decimal text), parsed as double and quantized: (codes, type)."""
    var = node.weights[key]
    wtype = _type(node, var.type.precision, f"{key} weight")
    values = np.array([float(text) for text in var], dtype=np.float64).reshape(np.shape(var.data))
    return quantize(values, wtype), wtype


def _base(node, op: str, **params) -> Layer:
    return Layer(
        name=node.name,
        op=op,
        inputs=[],
        shape=tuple(node.get_output_variable().shape),
        result=_result_type(node),
        params=params,
    )


def _params(node, *names) -> dict:
    return {n: int(node.get_attr(n)) for n in names}


def _require_channels_last(node) -> None:
    data_format = node.get_attr("data_format", "channels_last")
    if data_format != "channels_last":
        raise UnsupportedLayer(f"layer {node.name!r} ({node.class_name}): data_format {data_format!r} is not "
                               f"supported; the emulator models channels_last")


def _with_weights(layer: Layer, node, keys) -> Layer:
    for key in keys:
        codes, wtype = _weight_codes(node, key)
        layer.tensors[key] = codes
        layer.types[key] = wtype
    return layer


# ---- exporters (Dense and BatchNormalization, whose product the quantizers pick: emulator.layers.quantizers) ----
@register_exporter("Reshape")
def _reshape(node) -> Layer:
    return _base(node, "reshape")


@register_exporter("ZeroPadding2D")
def _zeropad2d(node) -> Layer:
    return _base(node, "zeropad2d", **_params(node, "in_height", "in_width", "n_chan", "pad_top", "pad_bottom",
                                               "pad_left", "pad_right", "out_height", "out_width"))


@register_exporter("Resize", "UpSampling2D")
def _upsampling2d(node) -> Layer:
    if node.get_attr("algorithm", "nearest") != "nearest":
        raise UnsupportedLayer(f"layer {node.name!r} ({node.class_name}): interpolation "
                               f"{node.get_attr('algorithm')!r} is not supported")
    return _base(node, "upsampling2d", **_params(node, "in_height", "in_width", "n_chan", "height_factor",
                                                  "width_factor", "out_height", "out_width"))


@register_exporter("KLDivergence")
def _kl_divergence(node) -> Layer:
    table_size, exp_range = int(node.get_attr("table_size")), int(node.get_attr("exp_range"))
    layer = _base(node, "kl_divergence", n_in=int(node.get_input_variable(node.inputs[0]).shape[0]),
                  table_size=table_size, exp_range=exp_range)
    layer.types["accum"] = _attr_type(node, "accum_t")
    layer.types["exp_table"] = _attr_type(node, "exp_table_t")
    layer.tensors["exp_table"] = kl_exp_table(table_size, exp_range, layer.types["exp_table"])
    return layer


@register_exporter("MSEDistance")
def _mse(node) -> Layer:
    layer = _base(node, "mse", n_in=int(np.prod(node.get_input_variable(node.inputs[0]).shape)))
    for role in ("diff", "square", "accum"):
        layer.types[role] = _attr_type(node, f"{role}_t")
    return layer
