import numpy as np
import pytest

from core.render import (
    PADDING_COLOUR,
    grid_shape,
    images_to_rgb,
    latent_images,
    latent_levels,
    latent_to_image,
    snapshot_mosaic,
    upscale,
)


def test_images_to_rgb_keeps_orientation_and_scales():
    images = np.zeros((2, 1, 4, 5), dtype=np.float32)
    images[0, 0, 0, 0] = 1.0  # top-left pixel of the first image
    rgb = images_to_rgb(images)
    assert rgb.shape == (2, 4, 5, 3)
    assert rgb.dtype == np.uint8
    assert rgb.flags.c_contiguous
    assert rgb[0, 0, 0].tolist() == [255, 255, 255]
    assert rgb[0, 3, 4].tolist() == [0, 0, 0]


def test_three_channel_latent_is_a_colour_image():
    latent = np.zeros((3, 2, 4), dtype=np.float32)
    latent[0, 1, 3] = 1.0  # red at bottom-right
    image = latent_to_image(latent, "rgb", (0.0, 1.0))
    assert image.shape == (2, 4, 3)
    assert image[1, 3].tolist() == [255, 0, 0]
    assert image[0, 0].tolist() == [0, 0, 0]


def test_flat_latent_divisible_by_three_becomes_rgb_pixels_in_a_square_grid():
    latent = np.arange(30, dtype=np.float32).reshape(30, 1, 1)  # 10 pixels
    image = latent_to_image(latent, "rgb", (0.0, 29.0))
    assert grid_shape(10) == (3, 4)
    assert image.shape == (3, 4, 3)
    # The second pixel contains values 3, 4, 5.
    expected = np.rint(np.array([3, 4, 5]) * 255 / 29).astype(np.uint8)
    assert image[0, 1].tolist() == expected.tolist()
    # Cells after the tenth pixel are padding.
    assert image[2, 2].tolist() == PADDING_COLOUR.tolist()


def test_flat_latent_not_divisible_by_three_is_grey():
    image = latent_to_image(np.linspace(0, 1, 32), "rgb", (0.0, 1.0))
    assert image.shape == (6, 6, 3)
    pixels = image.reshape(-1, 3)[:32]
    assert (pixels[:, 0] == pixels[:, 1]).all()
    assert (pixels[:, 1] == pixels[:, 2]).all()
    assert image[0, 0, 0] == 0
    assert image[5, 1, 0] == 255
    assert image[5, 2].tolist() == PADDING_COLOUR.tolist()


def test_tiles_give_one_tile_per_channel_with_gaps():
    latent = np.zeros((4, 3, 2), dtype=np.float32)
    latent[3] = 1.0
    image = latent_to_image(latent, "tiles", (-1.0, 1.0))
    # 2 x 2 tiles of 3 x 2 with one-pixel gaps.
    assert image.shape == (7, 5, 3)
    assert image[0, 0].tolist() == [247, 247, 247]  # zero is the middle: white
    assert image[4, 3].tolist() == [178, 24, 43]  # one is the top: red


def test_capsule_matrix_renders_as_one_tile():
    capsules = np.random.default_rng(0).normal(size=(10, 16)).astype(np.float32)
    image = latent_to_image(capsules, "tiles", latent_levels(capsules))
    assert image.shape == (10, 16, 3)


def test_levels_are_shared_across_a_batch():
    latents = np.stack([np.zeros(12), np.ones(12)]).astype(np.float32)
    first, second = latent_images(latents, "rgb")
    assert first.max() == 0
    assert second.min() == 255
    assert latent_levels(np.full(3, 2.0)) == (1.0, 3.0)


def test_unknown_mapping_is_rejected():
    with pytest.raises(ValueError, match="rgb"):
        latent_to_image(np.zeros(3), "sepia", (0, 1))


def test_upscale_is_nearest_neighbour():
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    big = upscale(image, 3)
    assert big.shape == (6, 6, 3)
    assert (big[:3, :3] == image[0, 0]).all()
    assert (big[3:, 3:] == image[1, 1]).all()


def test_snapshot_mosaic_has_three_rows_of_cells():
    originals = np.random.default_rng(1).integers(0, 255, (5, 1, 28, 28), np.uint8)
    latents = np.random.default_rng(2).normal(size=(5, 32, 1, 1)).astype(np.float32)
    reconstructions = np.random.default_rng(3).random((5, 1, 28, 28), np.float32)
    mosaic = snapshot_mosaic(originals, latents, reconstructions, "rgb", cell=56)
    assert mosaic.shape == (3 * 56 + 2 * 4, 5 * 56 + 4 * 4, 3)
    # The first original is scaled 2x into the top-left cell.
    assert mosaic[0, 0].tolist() == [originals[0, 0, 0, 0]] * 3
    assert mosaic[1, 1].tolist() == [originals[0, 0, 0, 0]] * 3
