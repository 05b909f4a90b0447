"""Encoders: the original's DenseNet layout, checkpoint round trips, refusals."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from yaware.data.grid import SMALLEST_SIDE
from yaware.errors import CheckpointError, ConfigError
from yaware.models import ENCODERS, build_model, densenet121
from yaware.models.checkpoint import read_checkpoint, save_checkpoint
from yaware.models.densenet import DenseNet3D
from yaware.models.weights import encoder_name_of, load_encoder_weights, state_dict_of


def test_densenet121_has_the_original_keys():
    keys = list(densenet121("encoder").state_dict())
    assert len(keys) == 724
    assert keys[0] == "features.conv0.weight"
    assert "features.denseblock4.denselayer16.conv2.weight" in keys
    assert "features.transition3.conv.weight" in keys
    assert keys[-4:] == [
        "hidden_representation.weight",
        "hidden_representation.bias",
        "head_projection.weight",
        "head_projection.bias",
    ]
    classifier = densenet121("classifier", num_classes=3).state_dict()
    assert "features.norm5.weight" in classifier
    assert tuple(classifier["classifier.weight"].shape) == (3, 1024)


def _original_layout(model: torch.nn.Module) -> dict:
    """A checkpoint as the original wrote it: DataParallel prefixes, epoch/model/optimizer."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    return {
        "epoch": 99,
        "model": {f"module.{k}": v for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
    }


def test_original_checkpoint_loads_into_encoder_and_classifier(tmp_path):
    torch.manual_seed(0)
    source = densenet121("encoder").eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a skipped load would show
        for module in source.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "DenseNet121_BHB-10K_yAwareContrastive.pth"
    save_checkpoint(path, _original_layout(source))

    ckpt = read_checkpoint(path)
    assert encoder_name_of(ckpt) == "densenet121"  # the released file records no encoder
    state = state_dict_of(ckpt)
    x = torch.randn(2, 1, 32, 40, 32)
    with torch.no_grad():
        expected = source.representation(x)
        for mode in ("encoder", "classifier"):
            torch.manual_seed(1)
            target = densenet121(mode).eval()
            report = load_encoder_weights(target, state)
            assert len(report.loaded) == 720  # 724 minus the 4 head tensors
            assert torch.equal(target.representation(x), expected) is (mode == "encoder")
            # The classifier adds norm5 after the shared trunk: compare the trunk itself.
            trunk = [m for name, m in target.features.named_children() if name != "norm5"]
            out = x
            for module in trunk:
                out = module(out)
            pooled = torch.flatten(torch.nn.functional.adaptive_avg_pool3d(out.relu(), 1), 1)
            assert pooled.shape == (2, 1024)
            assert torch.equal(pooled, expected)
        head = densenet121("encoder").eval()
        load_encoder_weights(head, state, include_head=True)
        assert torch.equal(head(x), source(x))


def test_loading_nothing_fails_loudly(tmp_path):
    resnet_state = build_model("resnet18").state_dict()
    with pytest.raises(CheckpointError, match=r"tensors differ in shape|backbone tensors"):
        load_encoder_weights(densenet121(), resnet_state)
    # Another naming scheme (the encoder nested under a prefix is found: tests/test_train.py).
    renamed = {k.replace("features.", "body."): v for k, v in densenet121().state_dict().items()}
    with pytest.raises(CheckpointError, match="only 0 of the encoder's 720 backbone tensors"):
        load_encoder_weights(densenet121(), renamed)


def test_arbitrary_pickles_are_refused_unless_trusted(tmp_path, capsys):
    """Refused by name, and without running what the pickle carries; read when trusted."""
    path = tmp_path / "evil.pt"

    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"model": densenet121().state_dict(), "extra": Payload()}, path)
    with pytest.raises(CheckpointError, match="--trust-checkpoint") as refused:
        read_checkpoint(path)
    assert str(path) in str(refused.value) and "GLOBAL print" in str(refused.value)
    assert "code ran" not in capsys.readouterr().out
    assert "model" in read_checkpoint(path, trust=True)
    assert "code ran" in capsys.readouterr().out  # trusted: the pickle's code did run


# Files that are no checkpoint, as users meet them: a Git LFS pointer cloned without LFS,
# a login page saved under the checkpoint's name, random or text bytes, torch.save's old
# format cut short. Each is named as unreadable, trusted or not: no --trust-checkpoint hint,
# which would only tell the user to trust a file that cannot load either way.
NOT_CHECKPOINTS = {
    "lfs_pointer": (
        b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a21\nsize 47000000\n",
        "git lfs pull",
    ),
    "login_page": (b"<!DOCTYPE html>\n<html><body>Sign in</body></html>", "web page"),
    "random_bytes": (
        bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8)),
        "corrupted",
    ),
    "text": (b"hello world, not weights", "corrupted"),
    "text_n": (b"not a checkpoint at all", "corrupted"),
}


@pytest.mark.parametrize("kind", sorted(NOT_CHECKPOINTS))
@pytest.mark.parametrize("trust", [False, True])
def test_files_that_are_no_checkpoint_are_named_as_such(tmp_path, kind, trust):
    content, says = NOT_CHECKPOINTS[kind]
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="cannot be read") as refused:
        read_checkpoint(path, trust=trust)
    assert str(path) in str(refused.value) and says in str(refused.value)
    assert "--trust-checkpoint" not in str(refused.value)


@pytest.mark.parametrize("content", [b"", None, "legacy:30", "legacy:200", "legacy:3000"])
def test_unreadable_checkpoints(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content is None:  # truncated
        save_checkpoint(path, {"model": build_model("tinycnn").state_dict()})
        path.write_bytes(path.read_bytes()[:1000])
    elif isinstance(content, str):  # torch.save's format before zip, cut short
        torch.save(build_model("tinycnn").state_dict(), path, _use_new_zipfile_serialization=False)
        path.write_bytes(path.read_bytes()[: int(content.split(":")[1])])
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(path)) as refused:
        read_checkpoint(path)
    # Cut at 200 bytes, the safe reader meets a broken class name ('GLOBAL .'): still a
    # damaged file, not one to trust.
    assert "--trust-checkpoint" not in str(refused.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pt")


def test_an_old_protocol_pickle_is_refused_as_untrusted_and_read_when_trusted(tmp_path):
    """torch.save(..., pickle_protocol=1), old format: the safe reader lacks its opcodes."""
    path = tmp_path / "old.pt"
    weights = build_model("tinycnn").state_dict()
    torch.save(weights, path, _use_new_zipfile_serialization=False, pickle_protocol=1)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        read_checkpoint(path)
    loaded = read_checkpoint(path, trust=True)
    assert all(torch.equal(loaded[key], value) for key, value in weights.items())


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_every_encoder_shares_the_interface(name):
    model = build_model(name).eval()
    x = torch.randn(2, 1, 32, 36, 32)
    with torch.no_grad():
        h = model.representation(x)
        assert h.shape == (2, model.num_features)
        assert model(x).shape == (2, 128)
        assert build_model(name, "classifier", num_classes=3).eval()(x).shape == (2, 3)


def _takes(model: torch.nn.Module, shape: tuple[int, int, int]) -> bool:
    """Whether a shape-only pass (meta tensors, no arithmetic) of ``shape`` gets through."""
    try:
        model.feature_map(torch.empty(2, 1, *shape, device="meta"))
    except RuntimeError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_the_smallest_side_table_is_what_each_encoder_takes(name):
    """yaware.data.grid.SMALLEST_SIDE (read by the workflow, which does not import torch)
    against the encoders themselves, along each axis alone and on cubes."""
    with torch.device("meta"):
        model = build_model(name).eval()
    smallest = SMALLEST_SIDE[name]
    roomy = 64
    for axis in range(3):
        shape = [roomy] * 3
        shape[axis] = smallest
        assert _takes(model, tuple(shape)), (name, shape)
        if smallest > 1:
            shape[axis] = smallest - 1
            assert not _takes(model, tuple(shape)), (name, shape)
    assert _takes(model, (smallest,) * 3)


def test_memory_efficient_densenet_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = densenet121()
    efficient = densenet121(memory_efficient=True)
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 32, 32, 32)
    plain(x).sum().backward()
    efficient(x).sum().backward()
    for (name, a), b in zip(plain.named_parameters(), efficient.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name
    # The recomputation in backward must not update the batch norms' running statistics
    # a second time: the eval-mode encoder would differ.
    for (name, a), b in zip(plain.named_buffers(), efficient.buffers(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def test_memory_efficient_densenet_compiles_and_counts_each_batch_once():
    """Under torch.compile the checkpoint takes no context_fn (dynamo refuses it); the
    compiled graph must still update the running statistics once per step."""
    torch.manual_seed(0)
    plain = DenseNet3D(8, (2, 2), 16, bn_size=2)
    efficient = DenseNet3D(8, (2, 2), 16, bn_size=2, memory_efficient=True)
    efficient.load_state_dict(plain.state_dict())
    efficient.before_compile()
    compiled = torch.compile(efficient)
    x = torch.randn(2, 1, 24, 24, 24)
    for _ in range(2):
        plain(x).sum().backward()
        compiled(x).sum().backward()
    for (name, a), b in zip(plain.named_buffers(), efficient.buffers(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name
    for (name, a), b in zip(plain.named_parameters(), efficient.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-4), name


def test_unknown_encoder_names_the_choices():
    with pytest.raises(
        ConfigError, match="densenet121, densenet169, densenet201, resnet18, tinycnn"
    ):
        build_model("densenet")


def _compiled_calls(model: torch.nn.Module, x: torch.Tensor) -> tuple[list[str], torch.Tensor]:
    """The functions torch.compile captured in its graphs for ``model``, and its output."""
    calls: list[str] = []

    def record(graph_module, example_inputs):
        for node in graph_module.graph.nodes:
            if node.op in ("call_function", "call_method"):
                calls.append(getattr(node.target, "__name__", str(node.target)))
        return graph_module.forward

    torch._dynamo.reset()
    out = torch.compile(model, backend=record)(x)
    torch._dynamo.reset()
    return calls, out


def test_densenet_stem_tail_leaves_the_compiled_graphs_on_the_chosen_devices():
    """On CUDA the stem's norm, ReLU and max-pool run eager under torch.compile (inductor
    fused the pool with the first block's concatenation into a slow kernel); every other
    layer is compiled, and outputs and gradients stay eager's. Elsewhere all is compiled."""
    torch.manual_seed(0)
    model = DenseNet3D(4, (2, 2), 8, mode="encoder")
    assert model.eager_stem_devices == ("cuda",)
    x = torch.randn(2, 1, 20, 24, 20)
    layers = [type(m) for m in model.modules()]
    calls, _ = _compiled_calls(model, x)  # on the CPU: one graph
    assert calls.count("max_pool3d") == 1
    assert calls.count("batch_norm") == layers.count(torch.nn.BatchNorm3d)

    model.eager_stem_devices = ("cpu",)  # as on CUDA
    model.before_compile()  # what pretraining calls before torch.compile
    calls, compiled = _compiled_calls(model, x)
    assert "max_pool3d" not in calls
    assert calls.count("batch_norm") == layers.count(torch.nn.BatchNorm3d) - 1  # norm0
    assert calls.count("conv3d") == layers.count(torch.nn.Conv3d) + 1  # + the stem's
    assert calls.count("avg_pool3d") == 1 and calls.count("linear") == 2
    expected = model(x)
    torch.testing.assert_close(compiled, expected)
    compiled.square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    expected.square().sum().backward()
    for got, want in zip(grads, (p.grad for p in model.parameters()), strict=True):
        torch.testing.assert_close(got, want)


def test_building_encoders_does_not_import_the_compiler():
    """torch._dynamo costs about 1 s to import: jobs that only build a model (features,
    probes of external checkpoints) must not pay it; only before_compile does."""
    code = (
        "import sys\n"
        "from yaware.models import ENCODERS, build_model\n"
        "models = {name: build_model(name) for name in ENCODERS}\n"
        "assert 'torch._dynamo' not in sys.modules, 'imported by building models'\n"
        "models['densenet121'].before_compile()\n"
        "assert 'torch._dynamo' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
