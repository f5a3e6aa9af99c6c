"""The paper's four autoencoders build with the shapes and parameter counts of section III."""

import numpy as np
import pytest

from models.architectures import (ARCHITECTURES, N_INPUTS, Preprocessing, Quantization, build, deployed_model,
                                  is_vae)
from models.data.generator import generate


@pytest.fixture(scope="module")
def preprocessing():
    return Preprocessing.fit(generate("background", 4096, 7))


def _dense(n_in, n_out, bias=True):
    return n_in * n_out + (n_out if bias else 0)


BN = 4  # gamma, beta, moving mean, moving variance per feature
DNN_ENCODER = BN * 57 + _dense(57, 32) + BN * 32 + _dense(32, 16) + BN * 16
DNN_DECODER = _dense(3, 16) + BN * 16 + _dense(16, 32) + BN * 32 + _dense(32, 57)
CNN_ENCODER = BN * 57 + 3 * 3 * 16 + 3 * 16 * 32
CNN_DECODER = _dense(8, 64) + (3 * 32 * 32 + 32) + (3 * 32 * 16 + 16) + (3 * 3 * 16 + 1)
PARAMETERS = {
    "dnn_ae": DNN_ENCODER + _dense(16, 3) + DNN_DECODER,
    "dnn_vae": DNN_ENCODER + 2 * _dense(16, 3) + DNN_DECODER,
    "cnn_ae": CNN_ENCODER + _dense(64, 8) + CNN_DECODER,
    "cnn_vae": CNN_ENCODER + 2 * _dense(64, 8) + CNN_DECODER,
}
DEPLOYED_PARAMETERS = {**PARAMETERS, "dnn_vae": DNN_ENCODER + 2 * _dense(16, 3),
                       "cnn_vae": CNN_ENCODER + 2 * _dense(64, 8)}


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("bits", [None, 6])
def test_shapes_and_parameter_counts(architecture, bits, preprocessing):
    model = build(architecture, preprocessing, Quantization(bits) if bits else None)
    assert model.count_params() == PARAMETERS[architecture]
    assert tuple(model.input.shape) == (None, N_INPUTS)
    outputs = model.outputs
    assert tuple(outputs[0].shape) == (None, N_INPUTS)
    if is_vae(architecture):
        latent = 3 if architecture.startswith("dnn") else 8
        assert tuple(model.get_layer("z_mean").output.shape) == (None, latent)
        assert tuple(outputs[1].shape) == (None, 1)
    deployed = deployed_model(model, architecture)
    assert deployed.count_params() == DEPLOYED_PARAMETERS[architecture]
    assert tuple(deployed.output.shape) == (None, 1)
    assert "input" not in {layer.name for layer in deployed.layers}  # hls4ml rejects a layer named `input`


def test_cnn_shapes_follow_the_paper(preprocessing):
    model = build("cnn_ae", preprocessing)
    shape = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert shape["enc_pad0"] == (20, 3, 1)
    assert shape["enc_conv1"] == (18, 1, 16)
    assert shape["enc_pool1"] == (6, 1, 16)
    assert shape["enc_pool2"] == (2, 1, 32)
    assert shape["enc_flatten"] == (64,)
    assert shape["dec_reshape"] == (2, 1, 32)
    assert shape["dec_up1"] == (6, 1, 32)
    assert shape["dec_up2"] == (18, 3, 16)
    assert shape["dec_conv3"] == (19, 3, 1)
    assert model.get_layer("enc_conv1").use_bias is False and model.get_layer("enc_conv2").use_bias is False


def test_input_batchnorm_is_the_preprocessing(preprocessing):
    from tensorflow import keras

    model = build("dnn_ae", preprocessing)
    events = generate("background", 256, 8).reshape(256, -1)
    standardised = keras.Model(model.input, model.get_layer("input_bn").output).predict(events, verbose=0)
    np.testing.assert_allclose(standardised, preprocessing.apply(events), rtol=1e-4, atol=1e-4)
    assert not model.get_layer("input_bn").trainable


def test_unknown_architecture_is_refused(preprocessing):
    with pytest.raises(ValueError, match="unknown architecture 'mlp'"):
        build("mlp", preprocessing)
