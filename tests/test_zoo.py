"""The coordinate INR zoo: every registered coordinate INR trains and has an exact MLP canvas.

Torchbench style: the main tests are parametrised over the registry, so an INR is tested the day
it is registered. Family-specific tests check the hash grid encoding and the initialisations
against answers computed by hand.
"""

from __future__ import annotations

import math

import pytest
import torch

import xinc_bench.data.images  # noqa: F401  (registers the skimage sources)
import xinc_bench.inrs.hashgrid  # noqa: F401  (registers the hash grid presets)
import xinc_bench.inrs.mlp  # noqa: F401  (registers the MLP presets)
from xinc_bench.canvas.compute import compute_canvas
from xinc_bench.data.signal import Signal
from xinc_bench.inrs.base import count_parameters, create_inr, inr_info, signal_coordinates
from xinc_bench.inrs.hashgrid import HashGridEncoding
from xinc_bench.inrs.mlp import FinerMLP, SirenMLP
from xinc_bench.registry import DATA_SOURCES, INRS

HEIGHT, WIDTH, VIDEO_FRAMES = 16, 32, 2
FFN_PARAMETERS = 32_971
# the zoo proper: the known-answer reference INRs (family "known-answer") have their own tests
COORDINATE_INRS = [
    name for name in INRS.names() if inr_info(name).input_kind == "coords" and inr_info(name).family != "known-answer"
]
BUDGET_PRESETS = [name for name in COORDINATE_INRS if name.endswith("-33k")]

#: trainable parameters of each preset, as stated in its registered description
PRESET_PARAMETERS = {
    "ffn-paper": 32_971,
    "ffn-video": 97_555,
    "siren-paper": 198_915,
    "siren-33k": 32_757,
    "wire-paper": 133_403,
    "wire-33k": 32_847,
    "gauss-paper": 133_123,
    "gauss-33k": 33_277,
    "finer-paper": 198_915,
    "finer-33k": 32_757,
    "hashgrid-paper": 715_528,
    "hashgrid-33k": 32_966,
    "mfn-33k": 33_051,
}


@pytest.fixture(scope="module")
def image() -> Signal:
    return DATA_SOURCES.get("astronaut")((HEIGHT, WIDTH))


def _signal_for(name: str, image: Signal) -> Signal:
    if inr_info(name).signal_kind == "image":
        return image
    frames = torch.cat([image.frames, image.frames.flip(2)])[:VIDEO_FRAMES]
    return Signal(frames=frames, name="astronaut-video")


def _build(name: str, signal: Signal) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_inr(name, num_frames=signal.num_frames, height=signal.height, width=signal.width)


def test_the_zoo_is_registered() -> None:
    assert set(PRESET_PARAMETERS) <= set(COORDINATE_INRS)


@pytest.mark.parametrize("name", COORDINATE_INRS)
def test_adam_steps_reduce_the_loss(name: str, image: Signal) -> None:
    signal = _signal_for(name, image)
    model = _build(name, signal)
    coords = signal_coordinates(signal.num_frames, signal.height, signal.width)
    target = signal.frames.reshape(-1, 3)
    optimiser = torch.optim.Adam(model.parameters(), lr=getattr(model, "default_lr", 9e-4))
    losses = []
    for _ in range(10):
        optimiser.zero_grad()
        loss = torch.mean((model(coords) - target) ** 2)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert model(coords).shape == (signal.num_pixels, 3)
    assert losses[-1] < 0.9 * losses[0]


@pytest.mark.parametrize("name", COORDINATE_INRS)
def test_mlp_canvas_is_exact(name: str, image: Signal) -> None:
    signal = _signal_for(name, image)
    model = _build(name, signal)
    canvas = compute_canvas(model, signal, "mlp")
    assert canvas.metadata["checks"]["output_sum_max_rel_error"] < 1e-5
    assert canvas.layer_names == list(model.canvas_layers)
    last = canvas.layer(canvas.layer_names[-1])
    assert last.shape[1:] == (signal.num_frames, signal.height, signal.width)
    torch.testing.assert_close(last.sum(dim=0), canvas.recon.sum(dim=-1), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", sorted(PRESET_PARAMETERS))
def test_preset_parameter_counts(name: str, image: Signal) -> None:
    assert count_parameters(_build(name, _signal_for(name, image))) == PRESET_PARAMETERS[name]


@pytest.mark.parametrize("name", BUDGET_PRESETS)
def test_budget_presets_match_the_ffn(name: str, image: Signal) -> None:
    count = count_parameters(_build(name, image))
    assert abs(count - FFN_PARAMETERS) <= 0.1 * FFN_PARAMETERS


def test_raw_coordinates_are_not_a_canvas_layer(image: Signal) -> None:
    assert _build("siren-33k", image).canvas_layers == ["layer2", "layer3", "layer4", "layer5"]
    assert _build("ffn-paper", image).canvas_layers == ["layer1", "layer2", "layer3"]


def test_hashgrid_first_canvas_layer_is_the_encoding(image: Signal) -> None:
    canvas = compute_canvas(_build("hashgrid-33k", image), image, "mlp")
    assert canvas.layer_names == ["layer1", "layer2", "layer3"]
    assert canvas.layer("layer1").shape[0] == 8 * 2


def _unit_to_coords(unit: torch.Tensor) -> torch.Tensor:
    return 2.0 * unit - 1.0


def test_hashgrid_dense_level_reads_the_vertex_entry() -> None:
    encoding = HashGridEncoding(levels=1, features_per_level=1, log2_table_size=6, base_resolution=4)
    with torch.no_grad():
        encoding.table.copy_(torch.arange(25.0)[:, None])
    # vertex (y=1, x=2) of the 5 x 5 dense grid is row 1 + 2 * 5
    features = encoding(_unit_to_coords(torch.tensor([[0.25, 0.5]])))
    assert features.item() == pytest.approx(11.0)


def test_hashgrid_interpolation_reproduces_an_affine_table() -> None:
    encoding = HashGridEncoding(levels=1, features_per_level=1, log2_table_size=6, base_resolution=4)
    vy, vx = torch.arange(25) % 5, torch.arange(25) // 5
    with torch.no_grad():
        encoding.table.copy_((3.0 * vy + 7.0 * vx + 1.0)[:, None])
    unit = torch.tensor([[0.1, 0.9], [0.33, 0.47], [0.625, 0.125]])
    expected = 3.0 * 4 * unit[:, 0] + 7.0 * 4 * unit[:, 1] + 1.0
    torch.testing.assert_close(encoding(_unit_to_coords(unit))[:, 0], expected)


def test_hashgrid_fine_levels_are_hashed() -> None:
    encoding = HashGridEncoding(levels=1, features_per_level=1, log2_table_size=4, base_resolution=8)
    assert encoding.table.shape == (16, 1)
    with torch.no_grad():
        encoding.table.copy_(torch.arange(16.0)[:, None])
    expected_row = ((3 * 1) ^ (5 * 2654435761 & 0xFFFFFFFF)) % 16
    features = encoding(_unit_to_coords(torch.tensor([[3 / 8, 5 / 8]])))
    assert features.item() == pytest.approx(float(expected_row))


def test_hashgrid_paper_table_sizes() -> None:
    encoding = create_inr("hashgrid-paper").encoding
    dense = [(n + 1) ** 2 for n in (16, 24, 36, 54, 81, 121)]
    assert encoding.sizes.tolist() == dense + [2**15] * 10
    assert encoding.dense.tolist() == [True] * 6 + [False] * 10


@pytest.mark.parametrize("family", [SirenMLP, FinerMLP])
def test_sine_initialisation_bounds(family: type) -> None:
    torch.manual_seed(0)
    model = family(hidden_width=64, hidden_layers=2, omega=30.0)
    first, *later = model.linears
    assert first.weight.abs().max() <= 1.0 / 2
    for linear in later:
        bound = math.sqrt(6.0 / linear.in_features) / 30.0
        assert 0.9 * bound < linear.weight.abs().max() <= bound


def test_finer_first_bias_spans_its_scale() -> None:
    torch.manual_seed(0)
    bias = FinerMLP(hidden_width=256, first_bias_scale=5.0).linears[0].bias
    assert 4.5 < bias.abs().max() <= 5.0
