"""Compression for the FPGA: fixed-point precisions of every layer (PTQ and QAT), hls4ml configuration, and the
bit-width scan of the paper's Figures IV and V.

    python -m models.compress --model dnn_ae [--bits 2 4 6 8 10 12 14 16] [--events 200000] [--epochs 20] [--out DIR]

Precision rules (`hls_config`), every type explicit:
- input: ap_fixed<18,12,AP_RND_CONV,AP_SAT> (raw pT up to +-2048 GeV, LSB 1/64); `input_bn` (the standardised
  input, the AE's reconstruction target) 20 bits wide.
- weights and biases: QAT from the QKeras quantizers; PTQ `bits` wide with the integer bits of the largest |value|.
  BatchNormalization scale/bias and the LeakyReLU slope: 18 bits, integer bits from the largest |value|.
- layer results (AP_RND_CONV, AP_SAT): QActivation from its quantizer; others 16 bits (PTQ quantizes the weights
  and biases), integer bits from 16 x the largest |value| on (background) calibration events, as anomalies reach
  further; SAT clips beyond.
- accumulators (TRN, WRAP): integer bits of the worst case |bias| + sum |w| * max|input| over the whole input type
  range, so they never overflow; exact products (input + weight fractional bits) where that fits in 32 bits.
- heads: MSE diff/square/accum/result from calibration with 4x headroom, saturating, <= 31 bits (the emulator's
  int64 path multiplies two of them); KL accum/result from the worst case, exp table
  ap_fixed<26,13,AP_RND_CONV,AP_SAT> with 8192 entries over log_var in [-8, 8) (the 1024 of hls4ml's default are
  too coarse for near-prior latents).
Calibration events are clipped to the input type's range first, as the firmware's input saturates.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emulator.fixed_type import FixedType

INPUT_TYPE = FixedType(18, 12, True, "RND_CONV", "SAT")
INPUT_BN_WIDTH = 20
PARAM_WIDTH = 18
WIDE_RESULT = 16
ACCUM_MAX_WIDTH = 32
HEAD_MAX_WIDTH = 31  # the heads multiply their sum by a constant of the accumulator type: 2 x 31 bits fit int64
PRODUCT_MAX_WIDTH = 62
MIN_INTEGER = -4
HEAD_HEADROOM = 4.0
RESULT_HEADROOM = 16.0  # calibration sees background only; anomalies reach further (4 more integer bits)
EXP_TABLE_TYPE = FixedType(26, 13, True, "RND_CONV", "SAT")
KL_TABLE = {"TableSize": 8192, "ExpRange": 8}  # exp(log_var) every 1/512 in log_var (hls4ml's default: 1/64)
KL_EXP_MAX = math.exp(KL_TABLE["ExpRange"])


class PrecisionError(ValueError):
    """A precision plan that breaks the limits (accumulator over 32 bits, product over 62 bits); the message says
    where."""


@dataclass(frozen=True)
class Scheme:
    """`qat`: the model is QKeras-quantized at `bits`; otherwise PTQ of a float model: weights and biases at `bits`."""

    bits: int
    qat: bool

    @property
    def label(self) -> str:
        return f"{'QAT' if self.qat else 'PTQ'} {self.bits} bits"


# ---- fixed-point helpers ----------------------------------------------------------------------------------
def integer_bits(max_abs: float, signed: bool = True) -> int:
    """Integer bits (sign included when signed) that hold +-max_abs (or [0, max_abs]) without overflow."""
    if not np.isfinite(max_abs):
        raise PrecisionError(f"cannot size a type for a non-finite range {max_abs}")
    if max_abs <= 0:
        return 1 if signed else 0
    return max(int(math.floor(math.log2(max_abs))) + (2 if signed else 1), MIN_INTEGER)


def sized(max_abs: float, width: int, signed=True, rounding="RND_CONV", overflow="SAT") -> FixedType:
    return FixedType(width, integer_bits(max_abs, signed), signed, rounding, overflow)


def max_abs(t: FixedType) -> float:
    return max(abs(t.min), abs(t.max))


def _accum(bound: float, frac: int, max_width: int = ACCUM_MAX_WIDTH) -> FixedType:
    integer = integer_bits(bound)
    if integer > max_width - 4:
        raise PrecisionError(f"an accumulator needs {integer} integer bits for a worst case of {bound:g}")
    frac = min(frac, max_width - integer)
    return FixedType(integer + frac, integer, True, "TRN", "WRAP")


def quantizer_type(quantizer, rounding="RND_CONV", overflow="SAT") -> FixedType:
    """The type hls4ml gives a QKeras quantized_bits(b, i) (ap_fixed<b, i+1>) or quantized_relu(b, i)
    (ap_ufixed<b, i>)."""
    kind = type(quantizer).__name__
    config = quantizer.get_config()
    bits, integer = int(config["bits"]), int(config["integer"])
    if kind == "quantized_bits":
        return FixedType(bits, integer + 1, True, rounding, overflow)
    if kind == "quantized_relu" and not config.get("negative_slope"):
        return FixedType(bits, integer, False, rounding, overflow)
    raise PrecisionError(f"QKeras quantizer {kind} {config} has no precision rule")


# ---- calibration ---------------------------------------------------------------------------------------------
def layer_ranges(deployed, events, batch_size: int = 65536) -> dict:
    """{layer name: largest |output|} on float events, and for an MSE head `<head>.diff`, `.square` and `.sum`."""
    from tensorflow import keras

    layers = deployed.layers[1:]
    probe = keras.Model(deployed.input, [layer.output for layer in layers])
    events = np.clip(np.asarray(events, np.float64), INPUT_TYPE.min, INPUT_TYPE.max)  # as the input type saturates
    outputs = probe.predict(events.astype(np.float32), batch_size=batch_size, verbose=0)
    ranges = {layer.name: float(np.max(np.abs(out))) for layer, out in zip(layers, outputs)}
    by_name = {layer.name: out for layer, out in zip(layers, outputs)}
    for layer in layers:
        if type(layer).__name__ == "MSEHead":
            ref, rec = (by_name[node.name].reshape(len(events), -1) for node in _inbound(layer))
            diff = rec.astype(np.float64) - ref
            ranges[f"{layer.name}.diff"] = float(np.max(np.abs(diff)))
            ranges[f"{layer.name}.square"] = float(np.max(diff * diff))
            ranges[f"{layer.name}.sum"] = float(np.max(np.sum(diff * diff, axis=1)))
    return ranges


def _inbound(layer) -> list:
    node = layer.inbound_nodes[0]
    inbound = node.inbound_layers
    return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]


# ---- per-layer planning ---------------------------------------------------------------------------------------------
def plan_precisions(deployed, ranges: dict, scheme: Scheme) -> dict:
    """{layer name: {role: FixedType}} for every layer of a deployed Keras model (roles as hls4ml names them)."""
    plan, result = {}, {}
    for layer in deployed.layers:
        name, kind = layer.name, type(layer).__name__
        inputs = [result[src.name] for src in _inbound(layer)] if kind != "InputLayer" else []
        planner = _PLANNERS.get(kind)
        if planner is None:
            raise PrecisionError(f"layer {name!r}: no precision rule for Keras class {kind}")
        types = planner(layer, inputs, ranges, scheme)
        plan[name] = types
        result[name] = types["result"]
    return plan


def _plan_input(layer, inputs, ranges, scheme):
    return {"result": INPUT_TYPE}


def _bn_params(layer):
    gamma, beta, mean, var = layer.get_weights()
    scale = gamma / np.sqrt(var + layer.epsilon)
    return scale.astype(np.float64), (beta - mean * scale).astype(np.float64)


def _plan_batchnorm(layer, inputs, ranges, scheme):
    scale, bias = _bn_params(layer)
    types = {"scale": sized(np.max(np.abs(scale)), PARAM_WIDTH), "bias": sized(np.max(np.abs(bias)), PARAM_WIDTH)}
    if layer.name == "input_bn":
        types["result"] = sized(ranges[layer.name], INPUT_BN_WIDTH)
    else:
        types["result"] = sized(RESULT_HEADROOM * ranges[layer.name], WIDE_RESULT)
    return types


def _kernel(layer):
    weights = layer.get_weights()
    kernel = np.asarray(weights[0], np.float64)
    bias = np.asarray(weights[1], np.float64) if len(weights) > 1 else np.zeros(kernel.shape[-1])
    return kernel.reshape(-1, kernel.shape[-1]), bias


def _weight_types(layer, kernel, bias, scheme):
    if scheme.qat:  # hls4ml takes the quantizer's type (TRN, WRAP), whatever the configuration says
        weight = quantizer_type(layer.kernel_quantizer_internal, "TRN", "WRAP")
        return weight, weight
    return (sized(np.max(np.abs(kernel)), scheme.bits), sized(np.max(np.abs(bias)), scheme.bits))


def _plan_dense(layer, inputs, ranges, scheme):
    kernel, bias = _kernel(layer)
    weight, bias_t = _weight_types(layer, kernel, bias, scheme)
    x = inputs[0]
    if x.width + weight.width > PRODUCT_MAX_WIDTH:
        raise PrecisionError(f"layer {layer.name!r}: input {x} times weight {weight} exceeds {PRODUCT_MAX_WIDTH} bits")
    worst = float(np.max(np.abs(bias) + np.abs(kernel).sum(axis=0) * max_abs(x)))
    accum = _accum(worst, max(x.fractional + weight.fractional, bias_t.fractional))
    return {"weight": weight, "bias": bias_t, "accum": accum,
            "result": sized(RESULT_HEADROOM * ranges[layer.name], WIDE_RESULT)}


def _plan_leaky(layer, inputs, ranges, scheme):
    alpha = float(layer.get_config()["alpha"])
    return {"param": sized(alpha, PARAM_WIDTH), "result": sized(RESULT_HEADROOM * ranges[layer.name], WIDE_RESULT)}


def _plan_activation(layer, inputs, ranges, scheme):
    activation = layer.get_config()["activation"]
    if activation != "relu":
        raise PrecisionError(f"layer {layer.name!r}: activation {activation!r} has no precision rule")
    return {"result": sized(RESULT_HEADROOM * ranges[layer.name], WIDE_RESULT, signed=False)}


def _plan_qactivation(layer, inputs, ranges, scheme):
    return {"result": quantizer_type(layer.quantizer)}


def _plan_passthrough(layer, inputs, ranges, scheme):
    return {"result": inputs[0]}


def _plan_pool(layer, inputs, ranges, scheme):
    x = inputs[0]
    n = int(np.prod(layer.get_config()["pool_size"]))
    integer = (x.integer + (0 if x.signed else 1)) + int(math.ceil(math.log2(n)))
    return {"accum": FixedType(integer + x.fractional, integer, True, "TRN", "WRAP"), "result": x}


def _plan_mse(layer, inputs, ranges, scheme):
    ref, rec = inputs
    diff_int = integer_bits(HEAD_HEADROOM * ranges[f"{layer.name}.diff"])
    diff_frac = min(max(ref.fractional, rec.fractional), PRODUCT_MAX_WIDTH // 2 - diff_int)
    diff = FixedType(diff_int + diff_frac, diff_int, True, "RND_CONV", "SAT")
    square = sized(HEAD_HEADROOM * ranges[f"{layer.name}.square"], HEAD_MAX_WIDTH)
    accum = sized(HEAD_HEADROOM * ranges[f"{layer.name}.sum"], HEAD_MAX_WIDTH)
    return {"diff": diff, "square": square, "accum": accum,
            "result": sized(HEAD_HEADROOM * ranges[layer.name], HEAD_MAX_WIDTH)}


def _plan_kl(layer, inputs, ranges, scheme):
    mean, log_var = inputs
    n = int(layer.input_shape[0][-1])
    term = 1.0 + max_abs(log_var) + KL_EXP_MAX + max_abs(mean) ** 2
    accum = _accum(n * term, HEAD_MAX_WIDTH, HEAD_MAX_WIDTH)
    return {"accum": accum, "exp_table": EXP_TABLE_TYPE, "result": sized(0.5 * term, HEAD_MAX_WIDTH)}


_PLANNERS = {
    "InputLayer": _plan_input, "BatchNormalization": _plan_batchnorm, "Dense": _plan_dense, "QDense": _plan_dense,
    "Conv2D": _plan_dense, "QConv2D": _plan_dense, "LeakyReLU": _plan_leaky, "Activation": _plan_activation,
    "QActivation": _plan_qactivation, "Reshape": _plan_passthrough, "Flatten": _plan_passthrough,
    "ZeroPadding2D": _plan_passthrough, "UpSampling2D": _plan_passthrough, "AveragePooling2D": _plan_pool,
    "MSEHead": _plan_mse, "KLDivergenceHead": _plan_kl,
}


# ---- hls4ml configuration and conversion -----------------------------------------------------------------------------
def hls_config(deployed, plan: dict) -> dict:
    """The hls4ml configuration (granularity 'name') of a deployed model with every precision of `plan`, none 'auto'."""
    import hls4ml

    from firmware.hls4ml_extensions import register

    register()
    config = hls4ml.utils.config_from_keras_model(deployed, granularity="name", backend="Vivado")
    config["Model"]["Strategy"] = "Latency"
    for name, layer_config in config["LayerName"].items():
        owner = name if name in plan else name.removesuffix("_linear")  # hls4ml's linear activation of a Dense/Conv
        if owner not in plan:
            raise PrecisionError(f"hls4ml layer {name!r} has no planned precisions")
        types = plan[owner] if owner == name else {"result": plan[owner]["result"]}
        precision = layer_config.setdefault("Precision", {})
        for role, fixed in types.items():
            precision[role] = str(fixed)
        if type(deployed.get_layer(owner)).__name__ == "KLDivergenceHead":
            layer_config.update(KL_TABLE)
    auto = sorted(_auto_entries(config))
    if auto:
        raise PrecisionError(f"precisions left 'auto': {', '.join(auto)}")
    return config


def _auto_entries(tree, path=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _auto_entries(value, f"{path}/{key}")
    elif isinstance(tree, str) and "auto" in tree.lower():
        yield path


def check_manifest_limits(manifest) -> None:
    """Every accumulator <= 32 bits and every input * weight product <= 62 bits, else PrecisionError."""
    for layer in manifest.layers:
        accum = layer.types.get("accum")
        if accum is not None and accum.width > ACCUM_MAX_WIDTH:
            raise PrecisionError(f"layer {layer.name!r}: accumulator {accum} is wider than {ACCUM_MAX_WIDTH} bits")
        if "weight" in layer.types:
            bits = manifest.producer_type(layer.inputs[0]).width + layer.types["weight"].width
            if bits > PRODUCT_MAX_WIDTH:
                raise PrecisionError(f"layer {layer.name!r}: input * weight needs {bits} bits (> {PRODUCT_MAX_WIDTH})")


@dataclass
class Quantized:
    """A deployed model made firmware: its hls4ml configuration, hls4ml graph and manifest."""

    config: dict
    hls_model: object
    manifest: object


def quantize(deployed, calibration_events, scheme: Scheme, build_dir, name: str) -> Quantized:
    """Plan precisions on calibration events, convert with hls4ml (firmware.hls_project.convert), export the
    manifest."""
    from emulator.hls4ml_export import export_manifest
    from firmware.hls_project import convert

    plan = plan_precisions(deployed, layer_ranges(deployed, calibration_events), scheme)
    config = hls_config(deployed, plan)
    hls_model = convert(deployed, copy.deepcopy(config), build_dir)
    manifest = export_manifest(hls_model, name)
    check_manifest_limits(manifest)
    return Quantized(config, hls_model, manifest)


def emulator_scores(manifest, events: dict) -> dict:
    """{process: anomaly-score codes (N,)} of the emulator (bit-exact firmware arithmetic)."""
    from emulator import Emulator

    emulator = Emulator(manifest)
    return {name: emulator.predict(x).code.ravel() for name, x in events.items()}


# ---- the bit-width scan (Figures IV and V) ---------------------------------------------------------------------------
SCAN_BITS = (2, 4, 6, 8, 10, 12, 14, 16)


def scan(architecture: str, bits: list, x_train, x_val, test: dict, config, build_dir, calibration: int = 50_000,
         qat: bool = True) -> dict:
    """TPR at FPR 1e-5 and AUC of the pruned float model (BP), its PTQ at each width, and QAT models fine-tuned from
    it at each width: {"float": figures, "ptq": {bits: figures}, "qat": {bits: figures}} (emulator scores for PTQ
    and QAT)."""
    from dataclasses import replace

    from tqdm.auto import tqdm

    from models.architectures import deployed_model
    from models.train import float_scores, score_figures, train

    build_dir = Path(build_dir)
    float_model = train(architecture, x_train, x_val, replace(config, bits=None)).model
    baseline = deployed_model(float_model, architecture)
    results = {"float": score_figures(float_scores(baseline, test)), "ptq": {}, "qat": {}}
    calib = x_train[:calibration]
    for width in tqdm(bits, desc=f"{architecture} bit-width scan", unit="width"):
        ptq = quantize(baseline, calib, Scheme(width, False), build_dir / f"ptq{width}", f"{architecture}_ptq{width}")
        results["ptq"][width] = score_figures(emulator_scores(ptq.manifest, test))
        if qat:
            model = train(architecture, x_train, x_val, replace(config, bits=width), progress=False,
                          init_from=float_model).model
            q = quantize(deployed_model(model, architecture), calib, Scheme(width, True), build_dir / f"qat{width}",
                         f"{architecture}_qat{width}")
            results["qat"][width] = score_figures(emulator_scores(q.manifest, test))
    return results


def relative_tpr(results: dict, method: str) -> dict:
    """{signal: [TPR(bits) / TPR(float) for each scanned width]} (NaN where the float TPR is 0)."""
    from models.metrics import SIGNALS

    reference = results["float"]
    widths = sorted(results[method])
    return {signal: [results[method][w][signal]["tpr_at_fpr"] / reference[signal]["tpr_at_fpr"]
                     if reference[signal]["tpr_at_fpr"] > 0 else float("nan") for w in widths]
            for signal in SIGNALS}


def plot_scan(results: dict, path, title: str) -> Path:
    """PNG of TPR at FPR 1e-5 relative to the pruned float model versus bit width, PTQ solid, QAT dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from models.metrics import SIGNALS

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for method, style in (("ptq", "-o"), ("qat", "--s")):
        if not results[method]:
            continue
        widths = sorted(results[method])
        for (signal, ratios), color in zip(relative_tpr(results, method).items(), plt.cm.tab10.colors):
            ax.plot(widths, ratios, style, color=color, label=f"{method.upper()} {SIGNALS[signal]}")
    ax.axhline(1.0, color="grey", linewidth=1)
    ax.set_xlabel("bit width")
    ax.set_ylabel("TPR at FPR 1e-5 / TPR of the pruned float model")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv=None):
    from models import metrics
    from models.architectures import ARCHITECTURES
    from models.train import TrainConfig, test_events, training_events

    parser = argparse.ArgumentParser(prog="python -m models.compress", description="PTQ and QAT bit-width scan")
    parser.add_argument("--model", required=True, choices=ARCHITECTURES)
    parser.add_argument("--bits", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--events", type=int, default=100_000, help="training events")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--test-background", type=int, default=200_000)
    parser.add_argument("--test-signal", type=int, default=20_000)
    parser.add_argument("--no-qat", action="store_true", help="PTQ only")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default build/scan/<model>)")
    args = parser.parse_args(argv)

    out = args.out or Path("build") / "scan" / args.model
    x_train, x_val = training_events(args.events, max(args.events // 5, 1))
    config = TrainConfig(epochs=args.epochs, prune_start_epoch=min(5, args.epochs - 1),
                         prune_epochs=min(5, max(args.epochs - 5, 1)))
    results = scan(args.model, args.bits, x_train, x_val, test_events(args.test_background, args.test_signal),
                   config, out / "hls", qat=not args.no_qat)
    rows = [(f"{args.model} pruned float", "", results["float"])]
    rows += [(f"{args.model} {m.upper()} {w} bits", "", f) for m in ("ptq", "qat") for w, f in results[m].items()]
    print(metrics.table(rows))
    out.mkdir(parents=True, exist_ok=True)
    (out / "scan.json").write_text(json.dumps(results, indent=1) + "\n")
    plot_scan(results, out / "scan.png", f"{args.model}: bit-width scan (synthetic data)")
    print(f"wrote {out}/scan.json, scan.png")


if __name__ == "__main__":
    main()
