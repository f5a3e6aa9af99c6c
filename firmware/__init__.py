"""The firmware side: hls4ml projects of the encoders and their C-simulation, and the RTL generator.

- `firmware.hls4ml_extensions`: the KL and MSE anomaly-score heads as hls4ml extension layers (`register()`).
- `firmware.hls_project`: `convert` a Keras model into a written hls4ml project; cached g++ builds; `CSimError`.
- `firmware.csim`: `CSim`, the batched C-simulation on raw fixed-point codes, with per-layer traces.

Nothing is imported here, so that the RTL side does not pull in hls4ml or TensorFlow.
"""
