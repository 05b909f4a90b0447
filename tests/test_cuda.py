"""The CUDA path: run wherever a GPU is visible, skipped elsewhere (CI has none)."""

import pandas as pd
import pytest
import torch

from benchmarks.blur_matmul import by_matrix_products
from tests.conftest import finetune_keys, pretrain_keys
from yaware.augment import POLICIES, AugmentationPolicy, GaussianBlur, build_policy
from yaware.data.toy import write_toy_cohort
from yaware.losses import NTXentLoss, ThresholdInfoNCE, YAwareInfoNCE
from yaware.models import build_model
from yaware.models.checkpoint import read_checkpoint
from yaware.models.densenet import DenseNet3D
from yaware.models.stem import StemConv3d
from yaware.train import pretrain as pretrain_module
from yaware.train.config import FinetuneConfig, PretrainConfig, build_config
from yaware.train.finetune import finetune
from yaware.train.pretrain import pretrain
from yaware.train.staging import staged

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_loss_under_autocast_matches_float32_on_the_host(dtype):
    gen = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(64, 128, generator=gen), torch.randn(64, 128, generator=gen)
    y = torch.rand(64, generator=gen) * 60 + 20
    loss_fn = YAwareInfoNCE(sigma=5.0)
    reference = loss_fn(z1, z2, y)
    with torch.autocast("cuda", dtype=dtype):
        on_gpu = loss_fn(z1.cuda().to(dtype), z2.cuda().to(dtype), y.cuda())
    assert on_gpu.dtype == torch.float32
    assert torch.isfinite(on_gpu)
    # Inputs rounded to dtype, arithmetic in float32: agreement to the inputs' precision.
    assert on_gpu.item() == pytest.approx(reference.item(), rel=2e-2)


@pytest.mark.parametrize(
    "loss_fn",
    [
        YAwareInfoNCE(sigma=[5.0, 1.0]),
        YAwareInfoNCE(sigma=5.0, kernel="cauchy", normalisation="column"),
        ThresholdInfoNCE(sigma=5.0),
        NTXentLoss(),
    ],
)
def test_losses_do_not_synchronise_with_the_host(loss_fn):
    z1 = torch.randn(32, 128, device="cuda", requires_grad=True)
    z2 = torch.randn(32, 128, device="cuda")
    y = torch.rand(32, 2, device="cuda") * 60
    labels = y if isinstance(loss_fn, YAwareInfoNCE) and len(loss_fn.sigma) == 2 else y[:, 0]
    torch.cuda.set_sync_debug_mode("error")  # any device-to-host wait raises
    try:
        loss = loss_fn(z1, z2, labels) if isinstance(loss_fn, YAwareInfoNCE) else loss_fn(z1, z2)
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(z1.grad).all()


@pytest.mark.parametrize("name", ["cutout", "crop"])
def test_augmentation_gives_the_same_views_on_gpu_and_cpu(name):
    scans = torch.rand(6, 1, 24, 28, 24, generator=torch.Generator().manual_seed(0))
    on_cpu = build_policy(name, scans.shape[2:], seed=3)(scans.clone())
    on_gpu = build_policy(name, scans.shape[2:], seed=3)(scans.cuda())
    assert on_gpu.device.type == "cuda"
    # The parameters come from the policy's CPU generator, whatever the batch's device.
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("form", [GaussianBlur.apply, by_matrix_products])
def test_blur_on_the_gpu_matches_the_cpu(form):
    """Each form of the blur on the GPU gives the CPU's blur, scan by scan: the one yaware
    uses and the matrix products the GPU benchmark times against it."""
    scans = torch.rand(6, 1, 24, 28, 24, generator=torch.Generator().manual_seed(0))
    blur = GaussianBlur(p=0.5)
    params = blur.sample_params(6, torch.Generator().manual_seed(1))
    assert 0 < int(params["keep"].sum()) < 6
    on_gpu = form(blur, scans.cuda(), params).cpu()
    torch.testing.assert_close(on_gpu, blur.apply(scans.clone(), params), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", POLICIES)
def test_augmentation_does_not_synchronise_with_the_host(name):
    """The parameters live on the host, so no policy waits for the device: the host keeps
    queueing work while the previous step runs."""
    scans = torch.rand(8, 1, 24, 28, 24, device="cuda")
    policy = build_policy(name, scans.shape[2:], seed=0)
    policy(scans.clone())
    torch.cuda.set_sync_debug_mode("error")  # any device-to-host wait raises
    try:
        views = policy(scans.clone())
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert views.shape == scans.shape and torch.isfinite(views).all()


def test_all_tf_on_the_gpu_is_seedable():
    scans = torch.rand(6, 1, 24, 28, 24, device="cuda")
    first = build_policy("all_tf", scans.shape[2:], seed=3)(scans.clone())
    again = build_policy("all_tf", scans.shape[2:], seed=3)(scans.clone())
    other = build_policy("all_tf", scans.shape[2:], seed=4)(scans.clone())
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_staged_views_are_the_unstaged_views_and_never_wait_for_the_device():
    """Copy and augmentation on the side stream: the same numbers as on the default stream,
    each still intact after the step that reads it has queued more work on the GPU."""
    scans = [
        torch.rand(4, 1, 24, 28, 24, generator=torch.Generator().manual_seed(i)) for i in range(5)
    ]
    batches = [(x.pin_memory(), torch.rand(4).pin_memory()) for x in scans]
    weight = torch.randn(2048, 2048, device="cuda")
    results = {}
    for side_stream in (False, True):
        policy = build_policy("all_tf", scans[0].shape[2:], seed=3)

        def prepare(batch, policy=policy):
            x, y = batch
            return policy(x.cuda(non_blocking=True)), y.cuda(non_blocking=True)

        kept = []
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")  # any device-to-host wait raises
        try:
            for views, y in staged(batches, prepare, torch.device("cuda"), side_stream):
                for _ in range(20):  # a slow step on the default stream
                    weight = (weight @ weight).tanh_()
                kept.append(torch.cat([views.flatten(), y]) + 0)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        results[side_stream] = torch.stack(kept).cpu()
    assert torch.equal(results[True], results[False])


def test_pretraining_with_the_side_stream_matches_one_stream(tmp_path, monkeypatch):
    write_toy_cohort(tmp_path, n=24, shape=(40, 48, 40), seed=0)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    losses = {}
    for side_stream in (False, True):
        monkeypatch.setattr(pretrain_module, "SIDE_STREAM", side_stream)
        keys = pretrain_keys(
            tmp_path, tmp_path / f"run{side_stream}", device="cuda", precision="fp32", epochs=2
        )
        history = read_checkpoint(pretrain(build_config(PretrainConfig, keys)))["history"]
        losses[side_stream] = [row[key] for row in history for key in ("train_loss", "val_loss")]
    assert losses[True] == pytest.approx(losses[False], rel=1e-3)


def test_pretraining_on_the_gpu_writes_a_checkpoint_the_cpu_reads(tmp_path):
    write_toy_cohort(tmp_path, n=24, shape=(40, 48, 40), seed=0)  # DenseNet121 needs >= 32 mm
    keys = pretrain_keys(tmp_path, tmp_path / "run", encoder="densenet121", device="cuda")
    last = pretrain(build_config(PretrainConfig, keys))
    saved = read_checkpoint(last)
    assert saved["epoch"] == 2
    assert all(torch.isfinite(v.float()).all() for v in saved["model"].values())
    losses = [row["train_loss"] for row in saved["history"]]
    assert all(loss == loss for loss in losses)  # no NaN under bf16 autocast


def test_compiled_pretraining_on_the_gpu_matches_eager(tmp_path):
    write_toy_cohort(tmp_path, n=24, shape=(40, 48, 40), seed=0)
    histories = {}
    for compiled in (False, True):
        keys = pretrain_keys(
            tmp_path, tmp_path / f"run{compiled}", device="cuda", compile=compiled, epochs=2
        )
        histories[compiled] = read_checkpoint(pretrain(build_config(PretrainConfig, keys)))[
            "history"
        ]
    eager = [row["train_loss"] for row in histories[False]]
    compiled = [row["train_loss"] for row in histories[True]]
    assert compiled == pytest.approx(eager, rel=2e-2)  # bf16 autocast on both


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
def test_space_to_depth_stem_matches_the_direct_convolution(layout, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # exact float32 sums
    stem = StemConv3d(1, 64, 7, padding=3).cuda()
    x = torch.randn(4, 1, 61, 73, 61, device="cuda").contiguous(memory_format=layout)
    results = {}
    for fast in (False, True):
        stem.space_to_depth = fast
        stem.weight.grad = None
        out = stem(x)
        out.square().sum().backward()
        results[fast] = (out.detach(), stem.weight.grad.clone())
    torch.testing.assert_close(results[True][0], results[False][0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(results[True][1], results[False][1], rtol=1e-4, atol=1e-2)


def _densenet_run(model, forward, x, bf16: bool) -> list[torch.Tensor]:
    """The output and every parameter's gradient of one forward and backward pass."""
    model.zero_grad()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        out = forward(x)
    out.float().square().sum().backward()
    return [out.detach().float()] + [p.grad.clone() for p in model.parameters()]


def _relative_errors(got: list[torch.Tensor], want: list[torch.Tensor]) -> torch.Tensor:
    """||a - b|| / ||b|| per tensor; a tensor near zero (the stem's norm gets gradients of
    1e-5 where others get 1) is scaled by 1 % of the largest norm instead."""
    norms = torch.stack([b.norm() for b in want])
    scales = norms.clamp(min=1e-2 * norms.max())
    return torch.stack([(a - b).norm() for a, b in zip(got, want, strict=True)]) / scales


def test_compiled_densenet_with_its_eager_stem_pool_matches_eager(monkeypatch):
    """Inductor on the GPU, the stem's norm, ReLU and max-pool left out of the graph
    (channels-last, as pretraining runs it). In float32 (no TF32) the compiled network's
    output and gradients are eager's to summation order. Under bf16 autocast both round,
    differently (inductor keeps float32 inside fused kernels), so each is compared with
    the float32 result: the compiled error must stay within twice eager's own."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    torch.manual_seed(0)
    model = DenseNet3D(8, (2, 2), 16).cuda().to(memory_format=torch.channels_last_3d)
    x = torch.randn(4, 1, 40, 48, 40, device="cuda")
    x = x.contiguous(memory_format=torch.channels_last_3d)
    model.before_compile()
    torch._dynamo.reset()
    compiled = torch.compile(model)
    reference = _densenet_run(model, model, x, bf16=False)
    compiled_fp32 = _relative_errors(_densenet_run(model, compiled, x, bf16=False), reference)
    eager_bf16 = _relative_errors(_densenet_run(model, model, x, bf16=True), reference)
    compiled_bf16 = _relative_errors(_densenet_run(model, compiled, x, bf16=True), reference)
    torch._dynamo.reset()
    assert compiled_fp32.max() < 1e-3, compiled_fp32
    assert eager_bf16.max() < 0.5, eager_bf16  # the comparison below needs a finite scale
    worst = (compiled_bf16 - 2 * eager_bf16).argmax()
    assert compiled_bf16[worst] <= 2 * eager_bf16[worst] + 1e-2, (
        f"tensor {worst}: compiled bf16 {compiled_bf16[worst]:.4f} from float32, "
        f"eager bf16 {eager_bf16[worst]:.4f}"
    )


@pytest.mark.parametrize("compiled", [False, True])
def test_memory_efficient_densenet_on_the_gpu_counts_each_batch_once(compiled):
    """Gradient checkpointing recomputes norm1 in backward; its running statistics must be
    updated once per step, as without checkpointing (eager: restored; compiled: one graph)."""
    torch.manual_seed(0)
    plain = DenseNet3D(8, (2, 2), 16, bn_size=2).cuda()
    efficient = DenseNet3D(8, (2, 2), 16, bn_size=2, memory_efficient=True).cuda()
    efficient.load_state_dict(plain.state_dict())
    run = efficient
    if compiled:
        efficient.before_compile()
        run = torch.compile(efficient)
    x = torch.randn(2, 1, 24, 24, 24, device="cuda")
    for _ in range(2):
        plain(x).sum().backward()
        run(x).sum().backward()
    for (name, a), b in zip(plain.named_buffers(), efficient.buffers(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4, msg=name)


def test_finetuning_on_the_gpu_from_a_gpu_pretraining(tmp_path):
    """Fine-tuning on CUDA (channels-last, cudnn autotuning) from a GPU pretraining: finite
    losses, predictions for every test scan, and contiguous weights a CPU model loads."""
    write_toy_cohort(tmp_path, n=24, shape=(40, 48, 40), seed=0)
    keys = pretrain_keys(tmp_path, tmp_path / "pre", device="cuda", epochs=1)
    pretrained = pretrain(build_config(PretrainConfig, keys))
    keys = finetune_keys(tmp_path, tmp_path / "ft", device="cuda", pretrained=str(pretrained))
    best = finetune(build_config(FinetuneConfig, keys))
    saved = read_checkpoint(best)
    metrics = pd.read_csv(tmp_path / "ft" / "metrics.csv")
    assert len(metrics) == 2 and metrics["train_loss"].notna().all()
    assert all(value.is_contiguous() for value in saved["model"].values())
    model = build_model("tinycnn", "classifier")
    model.load_state_dict(saved["model"])
    predictions = pd.read_csv(tmp_path / "ft" / "predictions.csv")
    assert len(predictions) == len(pd.read_csv(tmp_path / "val.tsv", sep="\t"))
    assert predictions["prob_positive"].between(0, 1).all()


def test_finetuning_augments_outside_autocast(tmp_path, monkeypatch):
    """Under bf16 autocast a policy's matrix products or convolutions would run in bf16:
    fine-tuning draws its views before autocast, as pretraining does, and they stay float32."""
    write_toy_cohort(tmp_path, n=24, shape=(40, 48, 40), seed=0)
    seen = []
    original_call = AugmentationPolicy.__call__

    def watched(self, x):
        views = original_call(self, x)
        seen.append((torch.is_autocast_enabled("cuda"), views.dtype))
        return views

    monkeypatch.setattr(AugmentationPolicy, "__call__", watched)
    keys = finetune_keys(
        tmp_path, tmp_path / "ft", device="cuda", precision="bf16", augmentation="all_tf"
    )
    finetune(build_config(FinetuneConfig, keys))
    assert seen and set(seen) == {(False, torch.float32)}
