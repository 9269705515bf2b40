"""NeRV-family INRs: the paper configuration, the float64 encoding, HNeRV's frame handling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import xinc_bench.inrs.nerv as nerv
from xinc_bench.errors import XincError
from xinc_bench.inrs.base import count_parameters, create_inr, inr_info


def test_nerv_paper_has_the_papers_layers_and_parameter_count() -> None:
    model = create_inr("nerv-paper", num_frames=30, height=128, width=256)
    assert count_parameters(model) == 978_557  # "about 0.98 M" (SPEC 3; the released log's 0.98)
    assert count_parameters(model.stem) == 160 * 37 * 8 * 16 + 37 * 8 * 16
    assert [b.conv.out_channels for b in model.blocks] == [31 * 16, 26 * 4, 22 * 4]
    assert [b.conv.in_channels for b in model.blocks] == [37, 31, 26]
    assert [b.upscale for b in model.blocks] == [4, 2, 2]
    assert (model.head.in_channels, model.head.out_channels, model.head.kernel_size) == (22, 3, (3, 3))
    trace = model.trace(torch.tensor([0, 29]))
    assert [tuple(x.shape[1:]) for x in trace.inputs] == [(37, 8, 16), (31, 32, 64), (26, 64, 128), (22, 128, 256)]
    assert trace.output.shape == (2, 3, 128, 256)


def test_nerv_paper_is_registered_as_a_video_frame_inr_with_the_cnn_tracer() -> None:
    info = inr_info("nerv-paper")
    assert (info.family, info.signal_kind, info.input_kind, info.tracer) == ("nerv", "video", "frame", "cnn")
    assert inr_info("hnerv-small").tracer == "cnn"
    assert nerv.NeRV.default_lr == 1e-3
    assert nerv.NERV_PAPER_SCHEDULE["steps"] == 1000 * math.ceil(30 / 2)


def test_output_is_the_tanh_map_of_the_pre_activation_head_output() -> None:
    torch.manual_seed(0)
    model = nerv.nerv_paper(num_frames=4, height=32, width=64)
    trace = model.trace(torch.arange(4))
    assert torch.allclose(trace.output, (torch.tanh(trace.head_output) + 1) / 2)
    assert torch.equal(model(torch.arange(4)), trace.output)
    identity = nerv.nerv_paper(num_frames=4, height=32, width=64, output_activation="identity")
    identity.load_state_dict(model.state_dict())
    assert torch.equal(identity(torch.arange(4)), trace.head_output)


def test_encoding_is_computed_in_float64_from_the_reference_frequencies() -> None:
    t = torch.tensor([0, 7, 29])
    encoding = nerv.frame_encoding(t, num_frames=30)
    assert encoding.shape == (3, 160) and encoding.dtype == torch.float32
    assert torch.equal(encoding[0], torch.cat([torch.zeros(80), torch.ones(80)]))
    frequencies = (1.25 ** torch.arange(80) * math.pi).numpy().astype(np.float64)  # float32 values, as the reference
    phases = (t.numpy().astype(np.float64) / 30)[:, None] * frequencies
    expected = np.concatenate([np.sin(phases), np.cos(phases)], axis=1).astype(np.float32)
    np.testing.assert_allclose(encoding.numpy(), expected, atol=1e-7)
    phases32 = (t.float() / 30)[:, None] * torch.from_numpy(frequencies).float()
    naive_float32 = torch.cat([torch.sin(phases32), torch.cos(phases32)], dim=1)
    assert (naive_float32 - encoding).abs().max() > 0.5  # float32 phases of ~1e8 carry no digits


def test_frame_size_must_be_a_multiple_of_the_total_stride() -> None:
    with pytest.raises(XincError, match="multiples of 16"):
        nerv.nerv_paper(num_frames=2, height=100, width=256)
    with pytest.raises(XincError, match="output_activation"):
        nerv.nerv_paper(num_frames=2, height=32, width=64, output_activation="sigmoid")


def test_other_sizes_build_the_stem_grid_at_one_sixteenth() -> None:
    model = create_inr("nerv-paper", num_frames=2, height=64, width=96)
    assert model.trace(torch.tensor([1])).inputs[0].shape == (1, 37, 4, 6)
    assert model(torch.tensor([0, 1])).shape == (2, 3, 64, 96)


def test_hnerv_encodes_attached_frames_and_decodes_cached_embeddings() -> None:
    torch.manual_seed(0)
    frames = torch.rand(3, 32, 64, 3)
    model = create_inr("hnerv-small", num_frames=3, height=32, width=64)
    with pytest.raises(XincError, match="set_frames"):
        model(torch.tensor([0]))
    with pytest.raises(XincError, match="shape"):
        model.set_frames(frames[:2])
    model.set_frames(frames)
    t = torch.tensor([2, 0])
    encoded = model(t)
    assert encoded.shape == (2, 3, 32, 64)
    assert model.trace(t).inputs[0].shape == (2, 37, 2, 4)
    model.cache_embeddings()
    assert model.frames is None
    torch.testing.assert_close(model(t), encoded)
    assert "frames" not in model.state_dict()
    restored = create_inr("hnerv-small", num_frames=3, height=32, width=64)
    restored.load_state_dict(model.state_dict())
    torch.testing.assert_close(restored(t), encoded)


@pytest.mark.parametrize("name", ["nerv-paper", "hnerv-small"])
def test_frame_inrs_learn_a_small_video(name: str) -> None:
    torch.manual_seed(0)
    ramp = torch.linspace(0.1, 0.9, 64)
    frames = torch.stack([ramp.roll(8 * t)[None, :, None].expand(32, 64, 3) for t in range(2)]).contiguous()
    model = create_inr(name, num_frames=2, height=32, width=64)
    if getattr(model, "needs_frames", False):
        model.set_frames(frames)
    optimizer = torch.optim.Adam(model.parameters(), lr=model.default_lr)
    target, t = frames.permute(0, 3, 1, 2), torch.arange(2)
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.mse_loss(model(t), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
