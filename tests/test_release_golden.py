"""The paper's released FFN checkpoint: safe import, golden canvas, rendered image."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from xinc_bench.canvas import compute_canvas
from xinc_bench.canvas.mlp import rgb_contributions
from xinc_bench.checkpoints import load_checkpoint
from xinc_bench.data import Signal
from xinc_bench.errors import XincError
from xinc_bench.inrs import image_coordinates


@pytest.fixture(scope="module")
def release(reference_dir: Path):
    model, config = load_checkpoint(reference_dir / "best_model.ckpt", 128, 256)
    golden = np.load(reference_dir / "golden_contributions.npz")
    canvas = compute_canvas(model, Signal(torch.zeros(1, 128, 256, 3), "street"), "mlp")
    return model, config, golden, canvas


def test_release_config_read_from_shapes(release) -> None:
    model, config, _, _ = release
    assert config["model"] == "ffn-paper"
    assert config["model_args"] == {"mapping_size": 104, "hidden_width": 104}
    assert sum(p.numel() for p in model.parameters()) == 32_971


def test_coordinates_match_reference(release) -> None:
    _, _, golden, _ = release
    assert np.abs(image_coordinates(128, 256).numpy() - golden["coords"]).max() < 1e-7


@pytest.mark.parametrize("layer", ["layer1", "layer2", "layer3"])
def test_canvas_equals_golden(release, layer: str) -> None:
    _, _, golden, canvas = release
    ours = canvas.layer(layer)[:, 0].numpy()
    assert ours.shape == golden[layer].shape
    assert np.abs(ours - golden[layer]).max() <= 1e-5


def test_per_rgb_canvas_equals_golden(release) -> None:
    model, _, golden, _ = release
    trace = model.trace(image_coordinates(128, 256))
    with torch.no_grad():
        rgb = rgb_contributions(trace.inputs[-1], trace.targets[-1]).reshape(104, 3, 128, 256)
    assert np.abs(rgb.numpy() - golden["layer3_rgb"]).max() <= 1e-5


def test_output_and_exactness(release) -> None:
    _, _, golden, canvas = release
    assert np.abs(canvas.recon[0].numpy() - golden["output"]).max() <= 1e-5
    assert canvas.metadata["checks"]["output_sum_max_rel_error"] < 1e-5


def test_reference_relu_rule_zeroes_47_layer2_maps(release) -> None:
    """SPEC 8.7: the reference rule gives 47 all-zero layer-2 maps on this checkpoint."""
    _, _, _, canvas = release
    assert int((canvas.layer("layer2").abs().amax(dim=(1, 2, 3)) == 0).sum()) == 47


def test_rendering_reproduces_released_png(release, reference_dir: Path) -> None:
    _, _, _, canvas = release
    png = iio.imread(reference_dir / "rendered_128x256.png")[..., :3]
    ours = (canvas.recon[0].clamp(0, 1).numpy() * 255).astype(np.uint8)  # the reference truncates
    assert np.array_equal(ours, png)


def _write_ckpt(path: Path, payload: object) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(payload, protocol=2))
    return path


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_import_never_runs_code_from_the_file(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ckpt = _write_ckpt(tmp_path / "evil.ckpt", {"state_dict": {"w": _Exploit(str(marker))}, "x": _Exploit(str(marker))})
    with pytest.raises(XincError, match="no state_dict of tensors"):
        load_checkpoint(ckpt)
    assert not marker.exists()


def test_truncated_release_checkpoint(tmp_path: Path, reference_dir: Path) -> None:
    data = (reference_dir / "best_model.ckpt").read_bytes()
    broken = tmp_path / "truncated.ckpt"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(XincError, match="corrupt or truncated"):
        load_checkpoint(broken)


def test_release_checkpoint_with_wrong_shapes(tmp_path: Path, reference_dir: Path) -> None:
    from xinc_bench.checkpoints.release import ffn_from_release_state, read_release_state_dict

    state = read_release_state_dict(reference_dir / "best_model.ckpt")
    state["model.net.1.linear.weight"] = torch.zeros(104, 90)
    with pytest.raises(XincError, match=r"model.net.1.linear.weight has shape \(104, 90\)"):
        ffn_from_release_state(state, tmp_path / "x.ckpt")
