"""The hook tracers `linear` / `linear-signed` and the `ablation` tracer on known models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import xinc_bench.canvas.ablation  # noqa: F401  (registers the tracer)
import xinc_bench.canvas.hooks  # noqa: F401  (registers the tracers)
import xinc_bench.canvas.mlp  # noqa: F401
import xinc_bench.inrs.mlp  # noqa: F401
from xinc_bench.canvas.ablation import ablate_output
from xinc_bench.canvas.compute import compute_canvas
from xinc_bench.data.signal import Signal
from xinc_bench.errors import XincError
from xinc_bench.inrs.base import create_inr, image_coordinates

HEIGHT, WIDTH = 16, 32


def noise_signal(num_frames: int = 1, height: int = HEIGHT, width: int = WIDTH) -> Signal:
    frames = torch.rand(num_frames, height, width, 3, generator=torch.Generator().manual_seed(1))
    return Signal(frames=frames, name="noise")


@pytest.fixture(scope="module")
def ffn() -> nn.Module:
    torch.manual_seed(0)
    return create_inr("ffn-paper", height=HEIGHT, width=WIDTH).eval()


@pytest.fixture(scope="module")
def ffn_canvases(ffn: nn.Module) -> dict:
    signal = noise_signal()
    # chunks of 200 pixels (ablation: 2048 / 16 neurons = 128 pixels) exercise the chunk seams
    chunk_sizes = {"mlp": 200, "mlp-signed": 200, "linear": 200, "linear-signed": 200, "ablation": 2048}
    return {name: compute_canvas(ffn, signal, name, chunk_size=size) for name, size in chunk_sizes.items()}


def test_linear_tracer_names_layers_by_module_in_call_order(ffn_canvases: dict) -> None:
    canvas = ffn_canvases["linear"]
    assert canvas.layer_names == ["linears.0", "linears.1", "linears.2"]
    assert [canvas.layer(n).shape[0] for n in canvas.layer_names] == [208, 104, 104]
    checks = canvas.metadata["checks"]
    assert checks["output_sum_max_rel_error"] < 1e-5
    assert checks["layer_sum_max_rel_error"] < 1e-5
    assert checks["skipped_layers"] == [] and checks["upsampled_layers"] == [] and checks["untraced_modules"] == []


@pytest.mark.parametrize("variant", ["", "-signed"])
def test_linear_tracer_equals_dedicated_mlp_tracer_on_ffn(ffn_canvases: dict, variant: str) -> None:
    mlp, linear = ffn_canvases[f"mlp{variant}"], ffn_canvases[f"linear{variant}"]
    for index in range(3):
        difference = (mlp.layer(f"layer{index + 1}") - linear.layer(f"linears.{index}")).abs().max()
        assert difference <= 1e-5
    assert torch.equal(mlp.recon, linear.recon)


def test_ablation_of_last_layer_is_linear_canvas_minus_bias_share(ffn: nn.Module, ffn_canvases: dict) -> None:
    # The output is linear in a last-layer neuron: out(p) - out(p with a_n = 0) = a_n(p) W[:, n],
    # summed over RGB a_n(p) sum_c W[c, n]. The linear canvas adds the bias share sum(b) / N.
    last = ffn.linears[2]
    bias_share = last.bias.sum() / last.in_features
    ablation = ffn_canvases["ablation"].layer("linears.2")
    linear = ffn_canvases["linear"].layer("linears.2")
    assert (ablation - (linear - bias_share)).abs().max() <= 1e-5


def test_ablation_of_hidden_layer_matches_zeroing_each_neuron_by_hand(ffn: nn.Module, ffn_canvases: dict) -> None:
    coords = image_coordinates(HEIGHT, WIDTH)
    with torch.no_grad():
        hidden = torch.relu(ffn.linears[0](ffn.encoding(coords)))  # [P, 104], input of linears.1
        num_neurons = hidden.shape[1]
        zeroed = hidden[None] * (1 - torch.eye(num_neurons))[:, None, :]  # [N, P, N], neuron n zeroed
        ablated = ffn.linears[2](torch.relu(ffn.linears[1](zeroed)))  # [N, P, 3]
        output = ffn(coords)
    expected = (output[None] - ablated).sum(dim=-1).reshape(num_neurons, 1, HEIGHT, WIDTH)
    assert (ffn_canvases["ablation"].layer("linears.1") - expected).abs().max() <= 1e-5
    assert ffn_canvases["ablation"].metadata["checks"]["replica_max_rel_error"] < 1e-5


def test_ablate_output_zeroes_a_set_of_neurons(ffn: nn.Module) -> None:
    neurons = [3, 17, 50]
    recon = ablate_output(ffn, "linears.2", neurons, (1, HEIGHT, WIDTH), chunk_size=100)
    coords = image_coordinates(HEIGHT, WIDTH)
    with torch.no_grad():
        hidden = torch.relu(ffn.linears[1](torch.relu(ffn.linears[0](ffn.encoding(coords)))))
        hidden[:, neurons] = 0.0
        expected = ffn.linears[2](hidden).reshape(1, HEIGHT, WIDTH, 3)
    assert recon.shape == (1, HEIGHT, WIDTH, 3)
    assert (recon - expected).abs().max() <= 1e-6
    with pytest.raises(XincError, match="out of range for layer 'linears.2', which has 104 neurons"):
        ablate_output(ffn, "linears.2", [104], (1, HEIGHT, WIDTH))
    with pytest.raises(XincError, match="no ablatable layer 'layer3'; its layers are: linears.0, linears.1, linears.2"):
        ablate_output(ffn, "layer3", [0], (1, HEIGHT, WIDTH))


class TinyFrameINR(nn.Module):
    """Frame INR: per-frame embedding -> 4 x 8 maps -> strided-free conv at 8 x 16 -> upsample -> head conv."""

    input_kind = "frame"

    def __init__(self, num_frames: int = 3, padding_mode: str = "zeros", fixed_batch: bool = False) -> None:
        super().__init__()
        self.fixed_batch = fixed_batch
        self.embed = nn.Linear(4, 6 * 4 * 8)
        self.code = nn.Parameter(torch.randn(num_frames, 4))
        self.body = nn.Conv2d(6, 8, 3, padding=1, padding_mode=padding_mode, groups=2)
        self.head = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        x = self.embed(self.code[t]).reshape(len(t) if self.fixed_batch else -1, 6, 4, 8)
        x = torch.nn.functional.gelu(self.body(nn.functional.interpolate(x, scale_factor=2)))
        return self.head(nn.functional.interpolate(x, scale_factor=2))


def test_frame_inr_conv_canvases() -> None:
    torch.manual_seed(2)
    model = TinyFrameINR(padding_mode="reflect").eval()
    signal = noise_signal(num_frames=3)
    linear = compute_canvas(model, signal, "linear", chunk_size=1)
    ablation = compute_canvas(model, signal, "ablation", chunk_size=1)
    # the embedding Linear sees one vector per frame, not per pixel: only ablation can trace it
    assert linear.layer_names == ["body", "head"]
    assert ablation.layer_names == ["embed", "body", "head"]
    checks = linear.metadata["checks"]
    assert checks["skipped_layers"] == ["embed"] and checks["upsampled_layers"] == ["body"]
    assert checks["layer_sum_max_rel_error"] < 1e-5 and checks["output_sum_max_rel_error"] < 1e-5
    body = linear.layer("body")
    assert body.shape == (6, 3, HEIGHT, WIDTH)
    assert torch.equal(body[..., ::2, ::2], body[..., 1::2, 1::2])  # nearest upsampling by 2
    assert (body >= 0).all()  # earlier layer: ReLU of the summed contribution
    # the head conv is linear in each input channel: ablation = linear map minus the bias share
    bias_share = model.head.bias.sum() / model.head.in_channels
    assert (ablation.layer("head") - (linear.layer("head") - bias_share)).abs().max() <= 1e-5
    assert torch.equal(linear.recon, ablation.recon)


def test_conv_maps_sum_to_the_conv_output() -> None:
    from xinc_bench.canvas.hooks import TracedLayer, linear_contributions, output_unit_sum

    torch.manual_seed(3)
    strided = nn.Conv2d(6, 4, 3, stride=2, padding=2, dilation=2, groups=2)
    circular = nn.Conv2d(3, 5, 5, padding="same", padding_mode="circular")
    for conv in (strided, circular):
        layer = TracedLayer("conv", conv, conv.in_channels, 1, True, True)
        inputs = torch.randn(2, conv.in_channels, 12, 10)
        with torch.no_grad():
            maps = linear_contributions(layer, inputs)
            assert maps.shape[:2] == (2, conv.in_channels)
            assert (maps.sum(dim=1) - output_unit_sum(layer, conv(inputs))).abs().max() < 1e-5


class SharedActivationMLP(nn.Module):
    def __init__(self, inplace: bool) -> None:
        super().__init__()
        self.first, self.second, self.last = nn.Linear(2, 8), nn.Linear(8, 8), nn.Linear(8, 3)
        self.act = nn.ReLU(inplace=inplace)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.last(self.act(self.second(self.act(self.first(coords)))))


def test_shared_and_inplace_activations_trace_like_separate_ones() -> None:
    # Contributions are computed inside each Linear's forward hook from the tensors it consumed,
    # so a ReLU module used twice, or one overwriting a Linear's output in place, changes nothing.
    torch.manual_seed(4)
    plain = SharedActivationMLP(inplace=False).eval()
    inplace = SharedActivationMLP(inplace=True).eval()
    inplace.load_state_dict(plain.state_dict())
    signal = noise_signal(height=8, width=8)
    for tracer in ("linear", "ablation"):
        expected, got = compute_canvas(plain, signal, tracer), compute_canvas(inplace, signal, tracer)
        assert got.layer_names == ["first", "second", "last"]
        for name in got.layer_names:
            assert torch.equal(got.layer(name), expected.layer(name))


class ReusedLinearMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.hidden, self.last = nn.Linear(2, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.hidden(torch.relu(self.first(coords))))
        return self.last(torch.relu(self.hidden(h)))


class ReusedBlockMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.last = nn.Linear(2, 8), nn.Linear(8, 3)
        self.block = nn.Sequential(nn.Linear(8, 8), nn.ReLU())

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.last(self.block(self.block(self.first(coords))))


class ScaleInputInPlace(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.mul_(2.0))


class InPlaceInputMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.last = nn.Linear(2, 8), ScaleInputInPlace(8, 3)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.last(torch.relu(self.first(coords)))


class Gain(nn.Module):
    """A learned per-channel gain: a module with parameters that the hook tracers do not decompose."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.full((3,), 2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


class GainAfterLastLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.last, self.gain = nn.Linear(2, 8), nn.Linear(8, 3), Gain()

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.gain(self.last(torch.relu(self.first(coords))))


def test_module_with_parameters_after_the_last_linear() -> None:
    # The linear tracer cannot know that 'last' still produces the output; ablation is exact anyway.
    torch.manual_seed(6)
    model = GainAfterLastLinear().eval()
    signal = noise_signal(height=8, width=8)
    with pytest.raises(XincError, match=r"nn.Conv2d \(gain\) after its last traced layer 'last'.*--tracer ablation"):
        compute_canvas(model, signal, "linear")
    canvas = compute_canvas(model, signal, "ablation")
    assert canvas.layer_names == ["first", "last"] and canvas.metadata["checks"]["untraced_modules"] == ["gain"]
    with torch.no_grad():
        hidden = torch.relu(model.first(image_coordinates(8, 8)))  # [P, 8]
        expected = (hidden * (model.last.weight * model.gain.gain[:, None]).sum(dim=0)).T.reshape(8, 1, 8, 8)
    assert (canvas.layer("last") - expected).abs().max() <= 1e-5


class WrongShapeINR(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(2, 4)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.net(coords)


class NoLinearINR(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return coords[:, :1] * self.scale


class BatchCoupledINR(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.last = nn.Linear(2, 8), nn.Linear(8, 3)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        h = self.first(coords)
        return self.last(h / h.norm(dim=0))  # every row depends on the whole batch


class SkipFromInputINR(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.second, self.last = nn.Linear(2, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.first(coords))
        return self.last(torch.relu(self.second(h)) + h)


class RowTableINR(nn.Module):
    """Adds a learned offset per batch row: runs on batches of at most 64 coordinates (an 8 x 8 image)."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.last = nn.Linear(2, 8), nn.Linear(8, 3)
        self.offset = nn.Parameter(torch.zeros(64, 3))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.last(torch.relu(self.first(coords))) + self.offset[: len(coords)]


@pytest.mark.parametrize(
    ("model", "tracer", "message", "shape"),
    [
        (ReusedLinearMLP(), "linear", r"calls 'hidden' \(2 calls\); give every use its own module instance", (1, 8, 8)),
        (ReusedBlockMLP(), "ablation", r"calls 'block.0' \(2 calls\)", (1, 8, 8)),
        (InPlaceInputMLP(), "linear", "module 'last' .* modifies its input in place", (1, 8, 8)),
        (WrongShapeINR(), "linear",
            r"returned \(16, 4\) for 16 coordinates; the INR contract needs \[16, 3\]", (1, 8, 8)),
        (WrongShapeINR(), "ablation", r"the INR contract needs \[16, 3\]", (1, 8, 8)),
        (NoLinearINR(), "linear", "runs no nn.Linear or nn.Conv2d module", (1, 8, 8)),
        (TinyFrameINR(), "linear",
            r"returned \(2, 3, 16, 32\) for 2 frame indices; the INR contract needs \[2, 3, 8, 8\]", (3, 8, 8)),
        (BatchCoupledINR(), "ablation", "rows of a batch influence each other", (1, 8, 8)),
        (RowTableINR(), "ablation", r"runs RowTableINR on 2 copies of 64 coordinates .* any batch size", (1, 8, 8)),
    ],
)
def test_unsafe_models_are_refused_with_clear_errors(model: nn.Module, tracer: str, message: str, shape: tuple) -> None:
    with pytest.raises(XincError, match=message):
        compute_canvas(model, noise_signal(*shape), tracer)


def test_ablation_traces_skip_connections_and_reshapes_by_batch_size() -> None:
    # Every ablated copy runs the model's own forward, so a skip from before the layer and a
    # reshape by len(t) need nothing from the model; the output layer's ablation is its linear term.
    torch.manual_seed(5)
    model = SkipFromInputINR().eval()
    canvas = compute_canvas(model, noise_signal(height=8, width=8), "ablation")
    with torch.no_grad():
        h = torch.relu(model.first(image_coordinates(8, 8)))
        expected = (torch.relu(model.second(h)) + h) * model.last.weight.sum(dim=0)  # [P, 8]
    assert (canvas.layer("last") - expected.T.reshape(8, 1, 8, 8)).abs().max() <= 1e-5
    torch.manual_seed(2)
    fixed = TinyFrameINR(fixed_batch=True).eval()
    free = TinyFrameINR().eval()
    free.load_state_dict(fixed.state_dict())
    signal = noise_signal(3)
    got, expected_canvas = compute_canvas(fixed, signal, "ablation"), compute_canvas(free, signal, "ablation")
    for name in ("embed", "body", "head"):
        assert torch.equal(got.layer(name), expected_canvas.layer(name))


def test_skip_connections_trace_with_the_linear_tracer() -> None:
    torch.manual_seed(5)
    canvas = compute_canvas(SkipFromInputINR().eval(), noise_signal(height=8, width=8), "linear")
    assert canvas.layer_names == ["first", "second", "last"]
    assert canvas.metadata["checks"]["output_sum_max_rel_error"] < 1e-5
