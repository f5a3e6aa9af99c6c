"""Split a manifest into stages: maximal runs of consecutive layers the fast path generates together, and single
layers it leaves to the reference kernels (an op without a generator, or a layer whose generator refuses it)."""

from __future__ import annotations

from dataclasses import dataclass

from emulator.manifest import Layer, Manifest
from emulator.plan import Step, plan_layer

from .codegen import LayerNotGenerated, Segment, generate


@dataclass(frozen=True)
class ReferenceStage:
    """One layer run by its reference kernel, and why the fast path does not generate it."""

    layer: Layer
    step: Step
    reason: str


def _segment(manifest: Manifest, layers: list, later: set) -> Segment:
    """The segment of `layers`: what they read from outside, and what they produce that is read by `later`
    layers or is a model output."""
    made = {layer.name for layer in layers}
    inputs = []
    for layer in layers:
        for name in layer.inputs:
            if name not in made and name not in inputs:
                inputs.append(name)
    sizes = {t.name: t.size for t in manifest.inputs} | {layer.name: layer.size for layer in manifest.layers}
    wanted = later | set(manifest.outputs)
    outputs = [layer.name for layer in layers if layer.name in wanted]
    return Segment(tuple(layers), tuple((name, manifest.producer_type(name), sizes[name]) for name in inputs),
                   tuple(outputs))


def _split(manifest: Manifest, reference: dict) -> list:
    """Stages for a given set of reference layers {name: reason}: Segments and ReferenceStages, in layer order."""
    stages, run = [], []
    layers = manifest.layers
    for i, layer in enumerate(layers):
        if layer.name in reference:
            if run:
                stages.append(run)
                run = []
            stages.append(ReferenceStage(layer, plan_layer(layer, manifest), reference[layer.name]))
        else:
            run.append(layer)
    if run:
        stages.append(run)
    result, position = [], 0
    for stage in stages:
        if isinstance(stage, ReferenceStage):
            result.append(stage)
            position += 1
            continue
        position += len(stage)
        later = {name for layer in layers[position:] for name in layer.inputs}
        result.append(_segment(manifest, stage, later))
    return result


def plan_stages(manifest: Manifest) -> tuple:
    """(stages, generated): the stages in order, and the int64 Generated module of each Segment (by position).
    Every layer the fast path cannot generate becomes a ReferenceStage, with the reason."""
    reference: dict = {}
    while True:
        stages = _split(manifest, reference)
        try:
            generated = {i: generate(manifest, stage) for i, stage in enumerate(stages) if isinstance(stage, Segment)}
        except LayerNotGenerated as refusal:
            reference[refusal.layer] = str(refusal)
            continue
        return stages, generated
