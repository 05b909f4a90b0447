"""Encoders trained by other tools, read through ``yaware extract``: MONAI's DenseNets,
MedicalNet's ResNets (built here from MONAI's ResNet classes, which load MedicalNet's
files), and the encoder recognised from the layer names when a checkpoint records none."""

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from tests.conftest import run_cli, with_trained_looking_norms
from yaware.errors import CheckpointError
from yaware.models import ENCODERS, build_model
from yaware.models.recognise import recognise_encoder
from yaware.models.resnet import MEDICALNET, ResNet3D
from yaware.models.weights import encoder_name_of, load_encoder_weights

monai_nets = pytest.importorskip("monai.networks.nets")
monai_resnet = pytest.importorskip("monai.networks.nets.resnet")
SCHEMA = Path(__file__).parents[1] / "config" / "schema.yaml"


def _zscored(scans: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(scans)
    return (x - x.mean(dim=(1, 2, 3, 4), keepdim=True)) / x.std(dim=(1, 2, 3, 4), keepdim=True)


def _extract(checkpoint: Path, scans: np.ndarray, tmp_path: Path, *extra: str):
    np.save(tmp_path / "x.npy", scans)
    return run_cli(
        "-v",
        "extract",
        *("--checkpoint", str(checkpoint)),
        *("--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "f.npy")),
        *extra,
    )


@pytest.mark.parametrize("depth", [121, 169, 201])
def test_extract_reads_monai_densenets(tmp_path, depth):
    """MONAI's DenseNets (the 3D DenseNets much neuroimaging code trains) have the
    original's layers under other names (``denselayerN.layers.norm1``) and always end with
    ``norm5``: extract recognises the depth and gives the representation MONAI's own network
    computes before its classifier (before: 121 was read; 169 and 201, read as a 121,
    were refused by shape)."""
    torch.manual_seed(0)
    source = getattr(monai_nets, f"DenseNet{depth}")(spatial_dims=3, in_channels=1, out_channels=2)
    source = with_trained_looking_norms(source, seed=6)
    torch.save(source.state_dict(), tmp_path / f"monai_densenet{depth}.pt")
    scans = np.random.default_rng(6).random((3, 1, 32, 36, 32), dtype=np.float32)
    done = _extract(tmp_path / f"monai_densenet{depth}.pt", scans, tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"its layers are those of densenet{depth}" in done.stderr
    assert "dense layers named as MONAI's DenseNet" in done.stderr
    assert "0 missing" in done.stderr and "['class_layers.out.weight'" in done.stderr
    with torch.no_grad():
        layers = source.class_layers
        expected = layers.flatten(layers.pool(layers.relu(source.features(_zscored(scans)))))
    assert expected.shape == (3, {121: 1024, 169: 1664, 201: 1920}[depth])
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), expected, rtol=1e-4, atol=1e-5)


def _monai_resnet(depth: int, seed: int, **options) -> nn.Module:
    """MONAI's ResNet of ``depth`` with a stride-2 stem and MedicalNet's shortcut for that
    depth (MONAI's own table), as MONAI builds it to load MedicalNet's weights, unless
    ``options`` say otherwise; batch norms away from their initial values."""
    _, shortcut = monai_resnet.get_medicalnet_pretrained_resnet_args(depth)
    settings = {"shortcut_type": shortcut, "bias_downsample": False} | options
    torch.manual_seed(seed)
    net = getattr(monai_resnet, f"resnet{depth}")(
        spatial_dims=3, n_input_channels=1, feed_forward=False, conv1_t_stride=2, **settings
    )
    return with_trained_looking_norms(net, seed)


def _dilated_as_medicalnet(net: nn.Module) -> nn.Module:
    """MONAI's ResNet made MedicalNet's network (Med3D's resnet.py): the third and fourth
    stages keep the grid (stride 1, in the shortcut too) and dilate their 3x3x3
    convolutions by 2 and 4, padding them as much."""
    for stage, dilation in ((net.layer3, 2), (net.layer4, 4)):
        for block in stage:
            for conv in block.modules():
                if isinstance(conv, nn.Conv3d):
                    conv.stride = (1, 1, 1)
                    if conv.kernel_size == (3, 3, 3):
                        conv.dilation = conv.padding = (dilation,) * 3
            if isinstance(block.downsample, partial):  # shortcut A: a function
                keywords = block.downsample.keywords | {"stride": 1}
                block.downsample = partial(block.downsample.func, **keywords)
    return net


def _as_medicalnet_file(net: nn.Module, path: Path) -> Path:
    """What MedicalNet's pretrain/resnet_*.pth hold: the state dict under 'state_dict',
    with DataParallel's prefix, the layers named conv1, bn1, layer1-4."""
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    return path


@pytest.mark.parametrize("depth", [10, 18, 50])
def test_medicalnet_s_resnets_are_monai_s_blocks_with_the_last_stages_dilated(depth):
    """Built with MONAI's strides instead of MedicalNet's dilations, our network of each
    MedicalNet depth loads MONAI's weights whole and computes what MONAI's network does:
    the same blocks, shortcuts (A for 18, B for 10 and 50) and bottlenecks."""
    source = _monai_resnet(depth, seed=depth)
    block, layers, shortcut = MEDICALNET[f"medicalnet_resnet{depth}"]
    strided = ResNet3D(layers, block, shortcut=shortcut).eval()
    medicalnet = build_model(f"medicalnet_resnet{depth}").eval()
    state = source.state_dict()
    for model in (strided, medicalnet):
        report = load_encoder_weights(model, state, source="monai")
        assert len(report.loaded) == len(state) and not report.missing
    x = torch.randn(2, 1, 32, 36, 32)
    with torch.no_grad():
        expected = source(x)
        scale = float(expected.abs().max())  # the sums' rounding grows with the features
        torch.testing.assert_close(strided.representation(x), expected, rtol=0, atol=1e-5 * scale)
        # MedicalNet keeps the grid after its second stage: output stride 8, not 32.
        assert strided.feature_map(x).shape[2:] == (1, 2, 1)
        assert medicalnet.feature_map(x).shape[2:] == (4, 5, 4)


@pytest.mark.parametrize("depth", [18, 50])
def test_extract_reads_a_medicalnet_file_as_med3d_computes_it(tmp_path, depth):
    """A MedicalNet file records no encoder and names its trunk without ``features.``:
    extract recognises the depth from the layer names and gives the pooled output of
    MedicalNet's network, its last two stages dilated (before: refused, 'only 0 of the
    encoder's 720 backbone tensors')."""
    source = _monai_resnet(depth, seed=depth)
    path = _as_medicalnet_file(source, tmp_path / f"resnet_{depth}_23dataset.pth")
    scans = np.random.default_rng(depth).random((3, 1, 32, 36, 32), dtype=np.float32)
    done = _extract(path, scans, tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"its layers are those of medicalnet_resnet{depth}" in done.stderr
    assert "a ResNet trunk named as MedicalNet's" in done.stderr
    assert "0 missing" in done.stderr and "0 unused" in done.stderr
    with torch.no_grad():
        expected = _dilated_as_medicalnet(source)(_zscored(scans)).numpy()
    assert expected.shape == (3, 512 if depth == 18 else 2048)
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), expected, rtol=1e-4, atol=1e-5)


# Weights whose names match MedicalNet's but whose layers differ: what each one's refusal
# names. 24 tensors are missing from the ResNet-50, 20 named: batch counters may be
# missing (torch before 0.4.1 saved none).
VARIANTS = {
    "resnet50_with_shortcut_a": (
        50,
        {"shortcut_type": "A"},
        ["lacks 20 of the encoder's backbone tensors", "features.layer1.0.downsample.0.weight"],
    ),
    "monai_s_default_resnet18": (
        18,
        {"shortcut_type": "B", "bias_downsample": True},
        ["holds 21 backbone tensors the encoder has not", "bias_downsample=True"],
    ),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_resnet_of_another_variant_is_refused_with_what_differs(tmp_path, variant):
    """Weights whose names all match but whose layers differ from the encoder's must not
    load: missing layers would stay random, extra ones would be dropped from the network
    that was trained. A ResNet-50 with shortcut A lacks 24 of MedicalNet's 318 backbone
    tensors (92 %: before, above the 90 % that loading asked for, it loaded with random
    shortcuts); MONAI's default ResNet-18 (shortcut B with a bias) has tensors that
    MedicalNet's ResNet-18 (shortcut A) lacks."""
    depth, options, says = VARIANTS[variant]
    path = _as_medicalnet_file(_monai_resnet(depth, seed=1, **options), tmp_path / "v.pth")
    scans = np.random.default_rng(9).random((2, 1, 32, 36, 32), dtype=np.float32)
    done = _extract(path, scans, tmp_path)
    assert done.returncode == 2, done.stderr
    for phrase in [*says, f"(medicalnet_resnet{depth}): it was saved from a variant"]:
        assert phrase in done.stderr, phrase
    assert "Nothing was loaded" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "f.npy").exists()


def test_a_strided_resnet18_with_shortcut_b_loads_when_asked_for(tmp_path):
    """MONAI's ResNet-18 with shortcut B and no bias (a MedicalNet ResNet-18 re-trained in
    MONAI): recognised as MedicalNet's (shortcut A) it is refused with the fix, and with
    ``--encoder resnet18`` (strided, shortcut B) it gives MONAI's own output."""
    source = _monai_resnet(18, seed=3, shortcut_type="B")
    path = _as_medicalnet_file(source, tmp_path / "monai18.pth")
    scans = np.random.default_rng(3).random((2, 1, 32, 36, 32), dtype=np.float32)
    refused = _extract(path, scans, tmp_path)
    assert refused.returncode == 2
    assert "holds 18 backbone tensors the encoder has not" in refused.stderr
    assert "Choose the encoder it was trained as (--encoder" in refused.stderr
    done = _extract(path, scans, tmp_path, "--encoder", "resnet18")
    assert done.returncode == 0, done.stderr
    with torch.no_grad():
        expected = source(_zscored(scans)).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_every_encoder_is_recognised_from_its_layer_names(name):
    """A checkpoint of any encoder that records none (a bare state dict, the original's
    layout, one nested in a larger module) is read as that encoder (before: densenet121
    was assumed, and any other was refused)."""
    with torch.device("meta"):
        state = build_model(name).state_dict()
    assert recognise_encoder(state) == name
    wrapped = {"epoch": 3, "model": {f"module.encoder.{k}": v for k, v in state.items()}}
    assert encoder_name_of(wrapped) == name
    if name in MEDICALNET:  # as MedicalNet names its layers
        plain = {k.removeprefix("features."): v for k, v in state.items()}
        assert encoder_name_of({"state_dict": plain}) == name


def test_a_depth_of_no_registered_encoder_is_not_guessed():
    """One dense layer or block more than any registered depth is recognised as none, so
    the loader's errors name what does not fit instead of a wrong guess loading."""
    with torch.device("meta"):
        dense = build_model("densenet121").state_dict()
        resnet = build_model("resnet18").state_dict()
    extra_layer = {**dense, "features.denseblock3.denselayer25.conv1.weight": torch.empty(1)}
    assert recognise_encoder(dense) == "densenet121"
    assert recognise_encoder(extra_layer) is None
    extra_block = {**resnet, "features.layer4.2.conv1.weight": torch.empty(1)}
    assert recognise_encoder(resnet) == "resnet18"
    assert recognise_encoder(extra_block) is None


def test_the_config_schema_offers_every_encoder():
    """pretraining.encoder and external_models.<name>.encoder list the registered encoders."""
    schema = yaml.safe_load(SCHEMA.read_text())["properties"]
    pretraining = schema["pretraining"]["properties"]["encoder"]["enum"]
    external = schema["external_models"]["additionalProperties"]["properties"]["encoder"]["enum"]
    assert pretraining == list(ENCODERS)
    assert external == [*ENCODERS, None]


def test_a_state_dict_of_no_known_layout_is_named_as_such():
    """Unrecognised weights fall back on densenet121 and are refused by name."""
    tiny = build_model("tinycnn").state_dict()
    state = {k.replace("features.", "body."): v for k, v in tiny.items()}
    assert recognise_encoder(state) is None
    assert encoder_name_of({"model": state}) == "densenet121"
    with pytest.raises(CheckpointError, match="only 0 of the encoder's 720 backbone tensors"):
        load_encoder_weights(build_model("densenet121"), state)
