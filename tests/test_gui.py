"""The real main window, offscreen, training on real MNIST."""

import imageio.v3 as iio
import numpy as np
import pytest
from PySide6.QtCore import QSettings

from core.checkpoint import load_checkpoint
from explorer.main_window import MainWindow

TRAIN_TIMEOUT_MS = 120_000


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(tmp_path / "runs"))
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings)
    qtbot.addWidget(win)
    win.show()
    panel = win.panel
    panel.dataset.setCurrentText("mnist")
    panel.model.setCurrentText("autoencoder")
    panel.bottleneck.setText("32x1x1")
    panel.train_limit.setValue(1500)
    panel.test_limit.setValue(300)
    panel.batch_size.setValue(64)
    panel.epochs.setValue(2)
    panel.gif_duration.setValue(100)
    return win


def test_training_updates_views_and_records_gifs(window, qtbot, tmp_path):
    view = window.snapshot_view
    assert view.latent_item.image is None

    window.train_action.trigger()
    assert window.training
    assert not window.train_action.isEnabled()
    window.tabs.setCurrentIndex(1)  # the window stays usable during an epoch
    window.resize(1100, 760)
    qtbot.waitUntil(lambda: not window.training, timeout=TRAIN_TIMEOUT_MS)

    assert window.last_error is None
    assert [s.epoch for s in view.snapshots] == [1, 2]
    assert view.latent_item.image is not None
    first, second = (view.rendered_rows(s) for s in view.snapshots)
    assert not np.array_equal(first[1], second[1])  # bottleneck changed
    assert not np.array_equal(first[2], second[2])  # reconstructions changed
    assert window.curves_view.point_count() > 10
    assert len(window.curves_view.epochs) == 2
    assert "finished after 2 epochs" in window.progress.format()
    assert window.device_label.text().startswith("Device: CPU")

    exported = window.export_snapshot_gif(tmp_path / "snapshots.gif")
    frames = iio.imread(exported, index=None)
    assert frames.shape[0] == 2
    assert iio.immeta(exported, index=0)["duration"] == 100

    window.tabs.setCurrentIndex(0)
    window.record_action.trigger()
    view.slider.setValue(0)
    qtbot.wait(150)
    view.slider.setValue(1)
    qtbot.wait(150)
    saved = window.stop_recording(tmp_path / "panel.gif")
    panel_frames = iio.imread(saved, index=None)
    assert panel_frames.shape[0] >= 2
    assert panel_frames.shape[1:3] == (view.height(), view.width())


def test_opening_a_run_shows_its_snapshots_and_model(window, qtbot, tmp_path):
    window.panel.epochs.setValue(1)
    window.train_action.trigger()
    qtbot.waitUntil(lambda: not window.training, timeout=TRAIN_TIMEOUT_MS)
    run_root = window.run_dir.root
    trained = window.snapshot_view.snapshots[-1]

    window.panel.bottleneck.setText("7")
    assert window.open_run(run_root)
    assert window.panel.bottleneck.text() == "32x1x1"
    shown = window.snapshot_view.snapshots
    assert [s.epoch for s in shown] == [1]
    np.testing.assert_array_equal(
        shown[0].preview.reconstruction, trained.preview.reconstruction
    )
    assert window.model is not None
    assert window.continue_action.isEnabled()

    saved = window.save_model_checkpoint(tmp_path / "copy.pt")
    copy = load_checkpoint(saved)
    assert copy.config["bottleneck"] == "32x1x1"
    assert copy.epoch == 1


def test_invalid_bottleneck_disables_train(window):
    window.panel.bottleneck.setText("0x1")
    assert not window.train_action.isEnabled()
    assert "not valid" in window.panel.bottleneck.toolTip()
    window.panel.bottleneck.setText("32x16x3")
    assert window.train_action.isEnabled()


def test_worker_error_reaches_the_window(window, qtbot, tmp_path):
    window.panel.dataset.setCurrentText(str(tmp_path / "missing-folder"))
    window.train_action.trigger()
    qtbot.waitUntil(lambda: not window.training, timeout=30_000)
    assert window.last_error is not None
    assert "missing-folder" in window.last_error
    assert window.train_action.isEnabled()


def test_closing_during_training_stops_the_worker(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("LATENT_EXPLORER_RUNS", str(tmp_path / "runs"))
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings)
    qtbot.addWidget(win)
    win.panel.train_limit.setValue(20000)
    win.panel.epochs.setValue(50)
    win.show()
    win.train_action.trigger()
    qtbot.waitUntil(lambda: "batch" in win.progress.format(), timeout=60_000)
    thread = win.thread
    win.close()
    assert thread.isFinished()
    assert (win.run_dir.root / "checkpoint.pt").is_file()


def test_settings_are_remembered(qtbot, tmp_path):
    path = str(tmp_path / "remember.ini")
    first = MainWindow(QSettings(path, QSettings.Format.IniFormat))
    qtbot.addWidget(first)
    first.panel.bottleneck.setText("32x16x3")
    first.panel.epochs.setValue(7)
    first.panel.mapping.setCurrentText("tiles")
    first.close()
    second = MainWindow(QSettings(path, QSettings.Format.IniFormat))
    qtbot.addWidget(second)
    assert second.panel.bottleneck.text() == "32x16x3"
    assert second.panel.epochs.value() == 7
    assert second.snapshot_view.mapping == "tiles"


def test_capsnet_training_and_perturbation(window, qtbot, tmp_path):
    panel = window.panel
    panel.model.setCurrentText("capsnet")
    panel.train_limit.setValue(1000)
    panel.test_limit.setValue(200)
    panel.batch_size.setValue(100)
    panel.epochs.setValue(1)
    window.train_action.trigger()
    qtbot.waitUntil(lambda: not window.training, timeout=TRAIN_TIMEOUT_MS)
    assert window.last_error is None

    view = window.snapshot_view
    snapshot = view.snapshots[-1]
    assert snapshot.preview.latent.shape == (8, 10, 16)
    assert view.lengths_plot.isVisible()
    assert view.primary_item.image is not None
    assert "Digit capsules (10 x 16)" in view.latent_title.text
    assert "Accuracy" in window.curves_view.metric_plot.titleLabel.text

    window.tabs.setCurrentWidget(window.perturb_panel)
    perturb = window.perturb_panel
    assert perturb.perturber is not None
    assert perturb.perturber.is_capsnet
    assert len([s for s in perturb.sliders if not s.isHidden()]) == 16
    assert perturb.sliders[0].maximum() == 5  # 0.25 in steps of 0.05
    perturb.index.setValue(7)
    before = perturb.decoded_image.copy()
    with qtbot.waitSignal(perturb.decoded, timeout=2000):
        perturb.set_slider(3, 0.25)
    assert perturb.slider_labels[3].text() == "+0.250"
    assert np.abs(perturb.decoded_image - before).max() > 1e-5
    perturb.reset()
    np.testing.assert_array_equal(perturb.decoded_image, before)

    grid_path = perturb.export_grid(tmp_path / "grid.png")
    grid = iio.imread(grid_path)
    assert grid.shape[0] > grid.shape[1]  # 16 rows of 11 columns
    sweep_path = perturb.export_sweep(tmp_path / "sweep.gif", steps=4)
    assert iio.imread(sweep_path, index=None).shape[0] == 4 + 6 + 2


def test_autoencoder_bottleneck_sliders_in_the_window(window, qtbot):
    window.panel.epochs.setValue(1)
    window.panel.bottleneck.setText("40")
    window.train_action.trigger()
    qtbot.waitUntil(lambda: not window.training, timeout=TRAIN_TIMEOUT_MS)
    window.tabs.setCurrentWidget(window.perturb_panel)
    perturb = window.perturb_panel
    assert not perturb.capsule.isEnabled()
    assert perturb.first_dim.isEnabled()
    assert perturb.first_dim.maximum() == 40 - 16
    perturb.first_dim.setValue(24)
    assert perturb.dims == list(range(24, 40))
    before = perturb.decoded_image.copy()
    perturb.set_slider(15, perturb.limit.value())
    assert perturb.deltas()[39] == pytest.approx(perturb.limit.value(), rel=0.2)
    assert np.abs(perturb.decoded_image - before).max() > 1e-5


def test_every_preset_fills_a_valid_form(window):
    panel = window.panel
    assert len(panel.presets) >= 6
    for index, preset in enumerate(panel.presets, start=1):
        panel._apply_preset(index)
        config = panel.config()
        for key, value in preset["config"].items():
            assert getattr(config, key) == value, (preset["name"], key)
    assert panel.preset.currentIndex() == 0


def test_view_settings_stay_usable_while_training(window, qtbot):
    window.panel.epochs.setValue(1)
    window.train_action.trigger()
    assert not window.panel.bottleneck.isEnabled()
    assert window.panel.mapping.isEnabled()
    window.panel.mapping.setCurrentText("tiles")
    qtbot.waitUntil(lambda: not window.training, timeout=TRAIN_TIMEOUT_MS)
    assert window.snapshot_view.mapping == "tiles"
    assert window.panel.bottleneck.isEnabled()


def test_bundled_capsnet_opens_the_perturb_tab(window, qtbot, tmp_path):
    assert window.load_bundled_capsnet(), window.last_error
    assert window.tabs.currentWidget() is window.perturb_panel
    perturb = window.perturb_panel
    assert "Bundled CapsNet" in perturb.model_label.text()
    perturb.index.setValue(0)  # the first MNIST test image is a 7
    assert perturb.perturber.analysis.prediction == 7
    assert "predicted 7" in perturb.prediction_label.text()
    perturb._next_of_class(3)
    assert int(window.model_dataset.test_labels[perturb.index.value()]) == 3
    before = perturb.decoded_image.copy()
    perturb.set_slider(0, -0.25)
    assert np.abs(perturb.decoded_image - before).max() > 0.01
    perturb.pick_random()
    assert perturb.decoded_image.shape == (1, 28, 28)


def test_log_axis_labels_only_one_two_five(qtbot):
    from explorer.views import LogAxis

    axis = LogAxis(orientation="left")
    values = list(np.log10([0.005, 0.006, 0.01, 0.02, 0.03, 0.05, 0.1]))
    labels = axis.logTickStrings(values, 1, 1)
    assert labels == ["0.005", "", "0.01", "0.02", "", "0.05", "0.1"]
