import pytest
import torch

from core.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from core.models import build_model


def test_round_trip_rebuilds_an_identical_model(tmp_path):
    model = build_model("autoencoder", image_shape=[1, 28, 28], bottleneck="8x2x2")
    optimizer = torch.optim.Adam(model.parameters())
    history = [{"epoch": 1, "test_loss": 0.5}]
    path = save_checkpoint(tmp_path / "c.pt", model, optimizer, 1, history, {"seed": 3})
    checkpoint = load_checkpoint(path)
    assert checkpoint.model_kind == "autoencoder"
    assert checkpoint.model_kwargs["bottleneck"] == "8x2x2"
    assert checkpoint.history == history
    assert checkpoint.config == {"seed": 3}
    rebuilt = checkpoint.build_model()
    images = torch.rand(3, 1, 28, 28)
    model.eval()
    rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(model(images), rebuilt(images))
    assert not list(tmp_path.glob(".*partial"))


def test_half_precision_save_loads_as_float32(tmp_path):
    model = build_model("autoencoder", image_shape=[1, 28, 28], bottleneck="64")
    full = save_checkpoint(tmp_path / "full.pt", model)
    half = save_checkpoint(tmp_path / "half.pt", model, half_precision=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    rebuilt = load_checkpoint(half).build_model()
    assert all(p.dtype == torch.float32 for p in rebuilt.parameters())
    torch.testing.assert_close(
        rebuilt.encoder[0].weight, model.encoder[0].weight, atol=1e-3, rtol=1e-3
    )


def test_load_rejects_text_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes\.pt is not a readable"):
        load_checkpoint(path)


def test_load_names_truncated_file(tmp_path):
    model = build_model("autoencoder", image_shape=[1, 28, 28])
    path = save_checkpoint(tmp_path / "c.pt", model)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"c\.pt"):
        load_checkpoint(path)


def test_load_rejects_plain_state_dict(tmp_path):
    model = build_model("autoencoder", image_shape=[1, 28, 28])
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match="not a latent-explorer checkpoint"):
        load_checkpoint(path)


def test_load_names_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_weights_of_another_shape_are_rejected_with_the_layer(tmp_path):
    small = build_model("autoencoder", image_shape=[1, 28, 28], bottleneck="16")
    large = build_model("autoencoder", image_shape=[1, 28, 28], bottleneck="32")
    with pytest.raises(CheckpointError, match=r"another model shape.*encoder\.7"):
        load_weights(large, small.state_dict())
