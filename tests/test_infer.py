"""Upscaler: windows + tiles + stitch around a model, on tensors."""

import weakref

import pytest
import torch

from standins import NearestLinear, OOMAbove, Smooth
from theris_cli.devices import resolve_device, resolve_precision
from theris_cli.errors import DeviceError, UsageError
from theris_cli.engine.infer import MIN_TILE, Upscaler


def frames(n, h=6, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(1, h, w, generator=g) for _ in range(n)]


def upscale(x, **kw):
    return list(Upscaler(kw.pop("model", None) or NearestLinear(), **kw).process(iter(x)))


def expected_identity(x, factor):
    """What an identity interpolator must give: inputs at factor*i, linear between, last held."""
    out = []
    for i, a in enumerate(x):
        b = x[min(i + 1, len(x) - 1)]
        for j in range(factor):
            t = j / factor if i + 1 < len(x) else 0.0
            out.append(torch.nn.functional.interpolate(((1 - t) * a + t * b)[None], scale_factor=4, mode="nearest")[0])
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 10])
@pytest.mark.parametrize("window,factor", [(4, 2), (2, 2), (3, 3), (4, 1), (6, 2)])
def test_identity_through_windows_and_stitch_reproduces_the_input(n, window, factor):
    x = frames(n)
    y = upscale(x, window=window, temporal_factor=factor)
    exp = expected_identity(x, factor)
    assert len(y) == factor * n
    for i, (a, b) in enumerate(zip(y, exp)):
        assert a.shape == (1, 24, 32)
        assert torch.allclose(a, b, atol=1e-6), f"output frame {i}"
    for i in range(n):  # input-aligned frames are the inputs, exactly up to float rounding
        assert torch.allclose(y[factor * i][:, ::4, ::4], x[i], atol=1e-6)


def test_windows_overlap_costs_what_the_docs_say():
    m = NearestLinear()
    n = 21
    upscale(frames(n, 4, 4), model=m, window=4)
    assert len(m.calls) == 10  # (n - 1) / stride 2; stride 3 (no overlap) would be 7: 1.5x the work
    assert all(c[1] == 4 for c in m.calls)


def test_the_model_decodes_only_the_times_the_blend_uses():
    class Keeping(NearestLinear):
        """Takes ``keep`` as THERIS does: every time goes in, only the kept frames come out."""

        def forward(self, x, times=None, keep=None):
            self.kept.append(list(keep))
            return super().forward(x, times)[:, keep]

    m = Keeping()
    m.kept = []
    n = 21
    x = frames(n, 4, 4)
    y = upscale(x, model=m, window=4, temporal_factor=2)
    assert m.kept[0] == [0, 1, 2, 3, 4, 5]  # the first window: its start is the video's
    assert all(k == [1, 2, 3, 4, 5] for k in m.kept[1:-1])  # inner windows: no crossed edges
    assert m.kept[-1] == [1, 2, 3, 4, 5, 6]
    # 52 decoded frames for the 41 distinct output times (70 with every window's edges): 1.27x, not 1.7x
    assert sum(map(len, m.kept)) == 52
    exp = expected_identity(x, 2)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(y, exp))


def test_memory_is_bounded_while_streaming():
    seen = []

    def source():
        for i, f in enumerate(frames(40, 4, 4)):
            seen.append(i)
            yield f

    up = Upscaler(NearestLinear(), window=4)
    it = up.process(source())
    got = 0
    for _ in it:
        got += 1
        # outputs trail inputs by at most about a window plus a stride (frames in flight)
        assert len(seen) * 2 - got <= 2 * (4 + 2) + 2
    assert got == 80


@pytest.mark.parametrize("tile,overlap", [(16, 2), (16, 8), (24, 5)])
def test_tiled_equals_untiled_for_a_pointwise_model(tile, overlap):
    x = frames(5, 40, 56)
    a = upscale(x)
    up = Upscaler(NearestLinear(), tile=tile, tile_overlap=overlap)
    b = list(up.process(iter(x)))
    for u, v in zip(a, b):
        assert torch.allclose(u, v, atol=1e-6)


def test_tiled_is_close_to_untiled_for_a_model_with_context():
    x = frames(4, 24, 32)
    a = torch.stack(upscale(x, model=Smooth()))
    up = Upscaler(Smooth(), tile=16, tile_overlap=4)
    b = torch.stack(list(up.process(iter(x))))
    err = (a - b).abs()
    assert err.mean() < 1e-3 and err.max() < 0.05


def test_out_of_memory_halves_the_tile_and_finishes():
    x = frames(4, 32, 32)
    up = Upscaler(OOMAbove(max_pixels=16 * 16), window=4, tile_overlap=2)
    y = list(up.process(iter(x)))
    assert len(y) == 8 and up.tile == 16 and up.oom_retries == 1
    ref = upscale(x)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(y, ref))


def test_out_of_memory_below_the_minimum_tile_is_a_device_error():
    up = Upscaler(OOMAbove(max_pixels=4), window=4)
    with pytest.raises(DeviceError, match="out of GPU memory"):
        list(up.process(iter(frames(3, 32, 32))))


class RaisesAbove(NearestLinear):
    """Raises ``error`` for tiles of more than ``max_pixels`` LR pixels, after allocating as a
    real model would; keeps weak references to what each failed attempt allocated."""

    def __init__(self, max_pixels: int, error: Exception):
        super().__init__()
        self.max_pixels, self.error, self.failed = max_pixels, error, []

    def forward(self, x, times=None):
        if x.shape[-1] * x.shape[-2] > self.max_pixels:
            activations = torch.empty(64, *x.shape[-2:])  # what the attempt holds when it fails
            self.failed.append(weakref.ref(activations))
            raise self.error
        return super().forward(x, times)


@pytest.mark.parametrize("error", [
    RuntimeError("Triton Error [CUDA]: invalid argument"),                  # grid y past 65,535
    RuntimeError("CUDA error: invalid configuration argument"),             # PyTorch's own launch
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    RuntimeError("cuDNN error: CUDNN_STATUS_NOT_ENOUGH_WORKSPACE"),
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
], ids=["triton-grid", "cuda-config", "cublas-alloc", "cudnn-workspace", "oom"])
def test_what_a_gpu_raises_for_a_too_large_tile_halves_it_after_freeing_the_attempt(monkeypatch, error):
    x = frames(4, 32, 32)
    model = RaisesAbove(16 * 16, error)
    up = Upscaler(model, window=4, tile_overlap=2)
    alive_at_release = []
    monkeypatch.setattr(up, "_release", lambda: alive_at_release.append(sum(r() is not None for r in model.failed)))
    y = list(up.process(iter(x)))
    assert len(y) == 8 and up.tile == 16 and up.oom_retries == 1
    assert alive_at_release == [0]  # the failed attempt's tensors were gone before empty_cache()
    ref = upscale(x)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(y, ref))


def test_an_error_that_is_not_about_the_tile_is_not_retried():
    up = Upscaler(RaisesAbove(16 * 16, RuntimeError("invalid argument: times must be sorted")), window=4)
    with pytest.raises(RuntimeError, match="times must be sorted"):
        list(up.process(iter(frames(3, 32, 32))))
    assert up.oom_retries == 0


def test_a_launch_error_at_the_minimum_tile_is_a_device_error_that_says_what_the_gpu_said():
    up = Upscaler(RaisesAbove(4, RuntimeError("Triton Error [CUDA]: invalid argument")), window=4)
    with pytest.raises(DeviceError, match=r"out of GPU memory.*Triton Error \[CUDA\]: invalid argument"):
        list(up.process(iter(frames(3, 32, 32))))


def test_device_and_precision_choices(monkeypatch):
    from theris_cli import devices

    assert resolve_device("cpu").type == "cpu"
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", torch.device("cpu")) == torch.float32
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)  # bfloat16 dot products: bf16 is the fast one
    assert resolve_precision("auto", torch.device("cpu")) == torch.bfloat16
    assert resolve_precision("fp32", torch.device("cpu")) == torch.float32
    assert resolve_precision("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(DeviceError, match="fp16 needs a CUDA"):
        resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(UsageError):
        resolve_precision("fp8", torch.device("cpu"))
    with pytest.raises(UsageError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(DeviceError, match="no CUDA device"):
            resolve_device("cuda:0")


def test_bad_options_are_usage_errors():
    for kw in [dict(window=1), dict(temporal_factor=0), dict(tile=4)]:
        with pytest.raises(UsageError):
            Upscaler(NearestLinear(), **kw)


def test_bf16_on_cpu_runs():
    y = upscale(frames(3), precision="bf16", model=Smooth())
    assert len(y) == 6 and y[0].dtype == torch.float32


def test_tiled_is_close_to_untiled_for_tiny_random():
    from theris_cli.weights import load_model

    model = load_model("tiny-random")
    x = frames(4, 40, 48)
    a = torch.stack(upscale(x, model=model))
    b = torch.stack(list(Upscaler(model, tile=24, tile_overlap=8).process(iter(x))))
    err = (a - b).abs()
    psnr = 10 * torch.log10(1 / (err**2).mean())
    assert psnr > 40 and err.max() < 0.1  # the SSM scans and FFT see the whole frame: close, not equal


def test_tile_is_chosen_from_free_memory_when_frames_do_not_fit(monkeypatch):
    x = frames(4, 96, 128)
    up = Upscaler(NearestLinear(), tile_overlap=4)
    # pretend one window needs 1 KiB per LR pixel and 6 MiB are free: about 40x40 px fit
    monkeypatch.setattr(up, "_measure_cpu", lambda crop, times: (1024.0 * crop.shape[-1] * crop.shape[-2], 6 * 2**20))
    y = list(up.process(iter(x)))
    assert up.tile is not None and MIN_TILE <= up.tile < 96
    ref = upscale(x)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(y, ref))


def test_small_frames_are_never_tiled():
    up = Upscaler(NearestLinear())
    list(up.process(iter(frames(3, 32, 32))))
    assert up.tile is None


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16", "auto"])
def test_cuda_matches_cpu_with_the_tile_chosen_from_free_memory(precision):
    import copy

    from theris_cli.weights import load_model

    model = load_model("tiny-random")
    x = frames(4, 96, 128)
    ref = torch.stack(upscale(x, model=copy.deepcopy(model)))
    up = Upscaler(copy.deepcopy(model), device="cuda", precision=precision)
    y = torch.stack(list(up.process(iter(x))))
    assert y.device.type == "cpu" and y.dtype == torch.float32
    tol = 1e-4 if precision == "fp32" else 2e-2
    assert (y - ref).abs().mean() < tol


def test_theris_on_cpu_takes_whole_frames_without_a_probe_when_they_surely_fit(monkeypatch):
    from theris_cli.engine import infer
    from theris_cli.weights.load import load_model

    up = Upscaler(load_model("tiny-random"))
    monkeypatch.setattr(up, "_measure_cpu", lambda crop, times: pytest.fail("probe window run"))
    list(up.process(iter(frames(4, 72, 80))))
    assert up.tile is None  # and no probe ran
    # where the estimate does not fit, the probe decides
    monkeypatch.setattr(infer, "available_memory", lambda: 2**20)
    up = Upscaler(load_model("tiny-random"))
    monkeypatch.setattr(up, "_measure_cpu", lambda crop, times: (1024.0 * crop.shape[-1] * crop.shape[-2], 6 * 2**20))
    list(up.process(iter(frames(4, 72, 80))))
    assert up.tile is not None


@pytest.mark.parametrize("has_bf16, shown", [(True, "bf16 (the CPU has bfloat16"), (False, "fp32 (the CPU has no bfloat16")])
def test_info_says_which_precision_auto_picks(monkeypatch, has_bf16, shown):
    from typer.testing import CliRunner

    from theris_cli import devices
    from theris_cli.cli import app

    if torch.cuda.is_available():
        pytest.skip("on a GPU machine auto picks by the GPU")
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: has_bf16)
    result = CliRunner().invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    assert f"auto precision   {shown}" in result.output


# ------------------------------------------------------------------------------ windows side by side (CPU)


@pytest.mark.parametrize("n", [1, 3, 4, 5, 9])
@pytest.mark.parametrize("window,factor,tile", [(4, 2, None), (2, 2, None), (3, 3, None), (4, 2, 16)])
def test_windows_on_several_workers_give_the_same_frames_in_the_same_order(n, window, factor, tile):
    x = frames(n, 20, 24, seed=n)
    up = Upscaler(Smooth(), window=window, temporal_factor=factor, tile=tile)
    one = list(up.process(iter(x)))
    up2 = Upscaler(Smooth(), window=window, temporal_factor=factor, tile=tile)
    up2.workers = 3
    several = list(up2.process(iter(x)))
    assert len(several) == len(one) == factor * n
    assert up2.windows_run == up.windows_run
    for a, b in zip(one, several):
        assert torch.equal(a, b)


def test_a_failing_window_on_a_worker_is_raised_by_process():
    class FailsLater(NearestLinear):
        def forward(self, x, times=None):
            if len(self.calls) >= 2:
                raise RuntimeError("window failed")
            return super().forward(x, times)

    up = Upscaler(FailsLater(), window=4)
    up.workers = 2
    with pytest.raises(RuntimeError, match="window failed"):
        list(up.process(iter(frames(12))))


def test_the_cpu_runs_one_window_per_thread():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert Upscaler(NearestLinear()).workers == 2
    finally:
        torch.set_num_threads(threads)


def test_the_cpu_upscaler_has_malloc_keep_freed_memory_where_glibc_allows():
    import platform
    import sys

    from theris_cli.engine import hugepages

    Upscaler(NearestLinear())
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert hugepages.keep_freed_memory() is glibc


def test_the_heap_grows_with_the_window_it_runs():
    """malloc's mmap threshold follows the window's (or tile's) size: a fixed one sends a large
    frame's bands and output frames back to mmap, a page fault at every touch."""
    import platform
    import sys

    from theris_cli.engine import hugepages

    small = hugepages.map_threshold(160 * 128)
    assert small == hugepages.map_threshold(640 * 512) == 32 * 2**20  # the floor
    assert hugepages.map_threshold(1280 * 1024) == 4 * small  # four times the pixels
    assert hugepages.map_threshold(10**9) == 2**31 - 1  # what mallopt takes at most
    if not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"):
        return
    up = Upscaler(NearestLinear(), tile=16)
    up.run_window(torch.rand(3, 1, 24, 40))
    assert hugepages._threshold == hugepages.map_threshold(16 * 16)  # a tile's pixels, not the frame's
    try:
        hugepages.keep_freed_memory(1280 * 1024)
        assert hugepages._threshold == 128 * 2**20
    finally:
        hugepages.keep_freed_memory()  # as the suite's other windows expect


def test_released_pages_are_the_whole_pages_inside_a_slice_only():
    """hugepages.release_pages hands back the pages wholly inside a tensor's bytes (the decoder's
    finished rows, model/units.py) and leaves every byte outside them as it was."""
    import mmap
    import sys

    from theris_cli.engine import hugepages

    t = torch.ones(64, 3000)  # rows of 12000 bytes: slices start and end inside pages
    rows = t[5:40]
    if not hugepages.release_pages(rows):
        assert not sys.platform.startswith("linux")
        return
    start, end = rows.data_ptr(), rows.data_ptr() + rows.numel() * 4
    first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
    last = end // mmap.PAGESIZE * mmap.PAGESIZE
    flat = t.view(-1)
    at = (torch.arange(flat.numel()) * 4 + t.data_ptr())
    inside = (at >= first) & (at < last)
    assert inside.sum() * 4 == last - first > 0
    assert bool((flat[inside] == 0).all())  # released: read back as zeros
    assert bool((flat[~inside] == 1).all())  # the rest, the slice's partial pages too, untouched
    assert hugepages.release_pages(t[0, :10])  # less than a page: nothing to release
    assert float(t[0, :10].sum()) == 10
