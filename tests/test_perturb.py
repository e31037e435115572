"""core.perturb on real MNIST images with untrained and trained weights."""

import numpy as np
import pytest
import torch

from core.data import load_dataset
from core.models import build_model
from core.perturb import Perturber, grid_picture, value_steps


@pytest.fixture(scope="module")
def mnist_test():
    data = load_dataset("mnist").limited(1, 50)
    return data.test_images.numpy(), data.test_labels.numpy()


def capsnet():
    torch.manual_seed(0)
    return build_model("capsnet", image_shape=[1, 28, 28])


def test_zero_perturbation_reproduces_the_reconstruction(mnist_test):
    images, _ = mnist_test
    perturber = Perturber(capsnet())
    analysis = perturber.set_image(images[0])
    assert analysis.latent.shape == (10, 16)
    assert analysis.prediction == int(analysis.lengths.argmax())
    decoded = perturber.decode(None, np.zeros(16))
    np.testing.assert_array_equal(decoded, analysis.reconstruction)


def test_moving_one_dimension_changes_the_image(mnist_test):
    images, _ = mnist_test
    perturber = Perturber(capsnet())
    perturber.set_image(images[1])
    delta = np.zeros(16, np.float32)
    delta[5] = 0.25
    moved = perturber.decode(None, delta)
    assert np.abs(moved - perturber.analysis.reconstruction).max() > 1e-4


def test_masked_decoder_sees_only_the_chosen_capsule(mnist_test):
    images, _ = mnist_test
    model = capsnet()
    perturber = Perturber(model)
    analysis = perturber.set_image(images[2])
    other = (analysis.prediction + 1) % 10
    from_other = perturber.decode(other, np.zeros(16))
    expected_input = torch.zeros(1, 10, 16)
    expected_input[0, other] = torch.from_numpy(analysis.latent[other])
    with torch.no_grad():
        expected = model.decode(expected_input)[0].numpy()
    np.testing.assert_allclose(from_other, expected, atol=1e-6)
    with pytest.raises(ValueError, match="capsule 10 does not exist"):
        perturber.decode(10, np.zeros(16))


def test_grid_rows_and_paper_columns(mnist_test):
    images, _ = mnist_test
    perturber = Perturber(capsnet())
    perturber.set_image(images[3])
    values = value_steps(0.25, 0.05)
    assert len(values) == 11
    assert values[0] == -0.25
    assert values[-1] == 0.25
    grid = perturber.grid(None, range(16), values)
    assert grid.shape == (16, 11, 1, 28, 28)
    # The middle column is the unperturbed reconstruction in every row.
    for row in range(16):
        np.testing.assert_allclose(
            grid[row, 5], perturber.analysis.reconstruction, atol=1e-6
        )
    picture = grid_picture(grid, cell=28, gap=2)
    assert picture.shape == (16 * 30 - 2, 11 * 30 - 2, 3)


def test_sweep_is_a_closed_loop(mnist_test):
    images, _ = mnist_test
    perturber = Perturber(capsnet())
    perturber.set_image(images[4])
    frames = perturber.sweep(None, dim=2, limit=0.25, steps=6)
    assert len(frames) == 6 + 10 + 4
    np.testing.assert_allclose(frames[0], perturber.analysis.reconstruction, atol=1e-6)
    assert np.abs(frames[5] - frames[15]).max() > 0  # +0.25 vs -0.25


def test_autoencoder_bottleneck_sliders(mnist_test):
    images, _ = mnist_test
    torch.manual_seed(0)
    model = build_model("autoencoder", image_shape=[1, 28, 28], bottleneck="8x2x2")
    perturber = Perturber(model)
    analysis = perturber.set_image(images[0])
    assert perturber.vector_count == 1
    assert perturber.vector_size == 32
    assert analysis.latent.shape == (32,)
    assert analysis.lengths is None
    assert perturber.default_range >= 0.25
    delta = np.zeros(32, np.float32)
    delta[31] = 3.0
    assert np.abs(perturber.decode(None, delta) - analysis.reconstruction).max() > 0
    with pytest.raises(ValueError, match=r"shape \(N, 32\)"):
        perturber.decode_batch(None, np.zeros((1, 16)))


def test_decoding_before_choosing_an_image_is_an_error():
    with pytest.raises(RuntimeError, match="set_image"):
        Perturber(capsnet()).decode(None, np.zeros(16))


def test_bad_range_is_rejected():
    with pytest.raises(ValueError, match="positive"):
        value_steps(0.25, 0)
