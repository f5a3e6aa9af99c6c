"""hls4ml extension layers for the anomaly-score heads (models.heads), registered through hls4ml's extension API.

`register()` teaches hls4ml's Keras converter, its IR and the Vivado and Vitis backends the IR layers
`KLDivergence` (types accum_t, exp_table_t) and `MSEDistance` (types diff_t, square_t, accum_t), whose HLS
code is firmware/hls/kl_divergence.h and mse_distance.h. Precisions come from the hls4ml configuration,
`LayerName -> <layer> -> Precision -> {result, accum, exp_table, diff, square}`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import hls4ml
from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.converters.keras_v2_to_hls import parse_default_keras_layer
from hls4ml.model.attributes import ConfigurableAttribute, TypeAttribute
from hls4ml.model.types import FixedPrecisionType, RoundingMode, SaturationMode

HLS_DIR = Path(__file__).resolve().parent / "hls"
BACKENDS = ("Vivado", "Vitis")

#: Keras class name of each head -> the hls4ml IR class it becomes.
KERAS_TO_IR = {"KLDivergenceHead": "KLDivergence", "MSEHead": "MSEDistance"}


class ExtensionError(ValueError):
    """A head layer hls4ml cannot turn into firmware (bad shapes or table parameters); the message names the layer."""


def _precision_from_config(layer, role: str) -> bool:
    """Whether the hls4ml configuration names a precision for `role` of this layer (else the attribute default
    holds)."""
    precision = layer.model.config.get_layer_config(layer).get("Precision")
    return isinstance(precision, dict) and role in precision


# ---- IR layers -----------------------------------------------------------------------------------
class KLDivergence(hls4ml.model.layers.Layer):
    """KL divergence head: inputs [mean, log_var] of n elements, output one value."""

    _expected_attributes = [
        ConfigurableAttribute("table_size", default=1024),
        ConfigurableAttribute("exp_range", default=8),
        TypeAttribute("accum"),
        TypeAttribute(
            "exp_table",
            default=FixedPrecisionType(18, 8, rounding_mode=RoundingMode.RND, saturation_mode=SaturationMode.SAT),
        ),
    ]

    def initialize(self):
        if _precision_from_config(self, "exp_table"):
            self._set_type_t("exp_table")
        table_size, exp_range = int(self.get_attr("table_size", 1024)), int(self.get_attr("exp_range", 8))
        if exp_range < 1 or table_size < 2 or table_size % (2 * exp_range):
            raise ExtensionError(
                f"layer {self.name!r}: table_size ({table_size}) must be a positive multiple of 2 * exp_range "
                f"({2 * exp_range}), so that the table index is log_var * table_size / (2 * exp_range) + table_size / 2"
            )
        self.add_output_variable(shape=[1])


class MSEDistance(hls4ml.model.layers.Layer):
    """MSE head: inputs [reference, reconstruction] of the same size, output one value."""

    _expected_attributes = [TypeAttribute("diff"), TypeAttribute("square"), TypeAttribute("accum")]

    def initialize(self):
        self._set_type_t("diff")
        self._set_type_t("square")
        self.add_output_variable(shape=[1])


# ---- templates -------------------------------------------------------------------------------------
_KL_CONFIG = """struct config{index} : nnet::kl_divergence_config {{
    static const unsigned n_in = {n_in};
    static const unsigned n_out = 1;
    static const unsigned table_size = {table_size};
    static const unsigned exp_range = {exp_range};
    typedef {accum_t.name} accum_t;
    typedef {exp_table_t.name} exp_table_t;
}};\n"""

_MSE_CONFIG = """struct config{index} : nnet::mse_distance_config {{
    static const unsigned n_in = {n_in};
    static const unsigned n_out = 1;
    typedef {diff_t.name} diff_t;
    typedef {square_t.name} square_t;
    typedef {accum_t.name} accum_t;
}};\n"""

_CALL = "nnet::{function}<{input1_t}, {input2_t}, {output_t}, {config}>({input1}, {input2}, {output});"


def _n_in(node) -> int:
    return int(np.prod(node.get_input_variable(node.inputs[0]).shape))


class _HeadConfigTemplate(LayerConfigTemplate):
    layer_class = None
    template = None

    def __init__(self):
        super().__init__(self.layer_class)

    def format(self, node):
        params = self._default_config_params(node)
        params["n_in"] = _n_in(node)
        return self.template.format(**params)


class _HeadFunctionTemplate(FunctionCallTemplate):
    layer_class = None
    function = None

    def __init__(self):
        super().__init__(self.layer_class, include_header=[f"nnet_utils/{self.function}.h"])

    def format(self, node):
        first, second = (node.get_input_variable(name) for name in node.inputs)
        output = node.get_output_variable()
        return _CALL.format(
            function=self.function, config=f"config{node.index}",
            input1_t=first.type.name, input2_t=second.type.name, output_t=output.type.name,
            input1=first.name, input2=second.name, output=output.name,
        )


class KLDivergenceConfigTemplate(_HeadConfigTemplate):
    layer_class, template = KLDivergence, _KL_CONFIG


class KLDivergenceFunctionTemplate(_HeadFunctionTemplate):
    layer_class, function = KLDivergence, "kl_divergence"


class MSEDistanceConfigTemplate(_HeadConfigTemplate):
    layer_class, template = MSEDistance, _MSE_CONFIG


class MSEDistanceFunctionTemplate(_HeadFunctionTemplate):
    layer_class, function = MSEDistance, "mse_distance"


# ---- Keras parsers -----------------------------------------------------------------------------------
def _parse_head(keras_layer, input_names, input_shapes, data_reader):
    """hls4ml layer dict and output shape of a KLDivergenceHead or MSEHead."""
    keras_class = keras_layer["class_name"]
    name = keras_layer["config"]["name"]
    if input_names is None or len(input_names) != 2 or len(input_shapes) != 2:
        raise ExtensionError(f"{keras_class} {name!r} must have exactly two inputs, got {input_names}")
    first, second = (list(shape[1:]) for shape in input_shapes)
    if first != second:
        raise ExtensionError(f"{keras_class} {name!r}: its two inputs have different shapes {first} and {second}")
    if keras_class == "KLDivergenceHead" and len(first) != 1:
        raise ExtensionError(f"{keras_class} {name!r}: z_mean and z_log_var must be flat (n,), got shape {first}")
    layer = parse_default_keras_layer(keras_layer, input_names)
    layer["class_name"] = KERAS_TO_IR[keras_class]
    return layer, [input_shapes[0][0], 1]


# ---- registration ---------------------------------------------------------------------------------------
_IR_CLASSES = {"KLDivergence": KLDivergence, "MSEDistance": MSEDistance}
_TEMPLATES = (KLDivergenceConfigTemplate, KLDivergenceFunctionTemplate, MSEDistanceConfigTemplate,
              MSEDistanceFunctionTemplate)
_SOURCES = (HLS_DIR / "kl_divergence.h", HLS_DIR / "mse_distance.h")
_registered = False


def register() -> None:
    """Register the heads with hls4ml (Keras handlers, IR layers, Vivado and Vitis templates and sources);
    idempotent."""
    global _registered
    if _registered:
        return
    supported = set(hls4ml.converters.get_supported_keras_layers())
    for keras_class in KERAS_TO_IR:
        if keras_class not in supported:
            hls4ml.converters.register_keras_v2_layer_handler(keras_class, _parse_head)
    for ir_name, ir_class in _IR_CLASSES.items():
        hls4ml.model.layers.register_layer(ir_name, ir_class)
    for backend_name in BACKENDS:
        backend = hls4ml.backends.get_backend(backend_name)
        for template in _TEMPLATES:
            if not _template_registered(backend, template):
                backend.register_template(template)
        registered_sources = set(backend.get_custom_source().values())
        for source in _SOURCES:
            if source not in registered_sources:
                backend.register_source(source)
    _registered = True


def _template_registered(backend, template) -> bool:
    return f"{backend.name.lower()}:{template().get_name()}" in hls4ml.model.optimizer.get_available_passes()
