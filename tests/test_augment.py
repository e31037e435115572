import pytest
import torch

from core.augment import random_shift


def single_pixel_batch(batch: int, size: int = 11) -> torch.Tensor:
    """Return uint8 (batch, 1, size, size) images with one pixel at the centre."""
    images = torch.zeros(batch, 1, size, size, dtype=torch.uint8)
    images[:, :, size // 2, size // 2] = 255
    return images


def pixel_offsets(shifted: torch.Tensor, size: int) -> list[tuple[int, int]]:
    """Return (dx, dy) of the single bright pixel in each shifted image."""
    offsets = []
    for image in shifted[:, 0]:
        rows, cols = torch.nonzero(image, as_tuple=True)
        assert rows.numel() == 1, "the bright pixel was lost or duplicated"
        offsets.append((int(cols[0]) - size // 2, int(rows[0]) - size // 2))
    return offsets


def test_shift_bounded_and_content_preserved():
    generator = torch.Generator().manual_seed(0)
    images = single_pixel_batch(400)
    shifted = random_shift(images, 2, generator=generator)

    assert shifted.shape == images.shape
    assert shifted.dtype == torch.uint8
    offsets = pixel_offsets(shifted, 11)
    assert all(abs(dx) <= 2 and abs(dy) <= 2 for dx, dy in offsets)
    assert shifted.sum(dtype=torch.int64) == 400 * 255
    # 400 draws from 25 offsets: every offset, extremes included, shows up.
    assert set(offsets) == {(dx, dy) for dx in range(-2, 3) for dy in range(-2, 3)}


def test_shift_differs_per_image():
    generator = torch.Generator().manual_seed(1)
    shifted = random_shift(single_pixel_batch(64), 3, generator=generator)

    offsets = pixel_offsets(shifted, 11)
    assert len(set(offsets)) > 10


def test_shift_pads_with_zeros():
    images = torch.full((200, 2, 6, 7), 0.5)
    shifted = random_shift(images, 2, generator=torch.Generator().manual_seed(2))

    assert shifted.dtype == torch.float32
    # Every pixel is either original content or zero padding.
    values = set(shifted.unique().tolist())
    assert values <= {0.0, 0.5}
    # Each image keeps a (6 - |dy|) x (7 - |dx|) block of content next to
    # |dy| zero rows and |dx| zero columns, with |dx|, |dy| <= 2.
    for image in shifted:
        zero_rows = int((image == 0).all(dim=0).all(dim=1).sum())
        zero_cols = int((image == 0).all(dim=0).all(dim=0).sum())
        assert zero_rows <= 2
        assert zero_cols <= 2
        assert int((image == 0.5).sum()) == 2 * (6 - zero_rows) * (7 - zero_cols)


def test_shift_moves_whole_image():
    # A ramp image makes every pixel distinct, so the shifted image must be
    # the original translated by one (dx, dy) for all channels.
    ramp = torch.arange(1, 2 * 8 * 9 + 1, dtype=torch.float32).view(1, 2, 8, 9)
    images = ramp.repeat(50, 1, 1, 1)
    shifted = random_shift(images, 2, generator=torch.Generator().manual_seed(3))

    for image in shifted:
        corner = image[0][image[0] > 0].min()
        row, col = (int(v[0]) for v in torch.nonzero(image[0] == corner, as_tuple=True))
        # The smallest surviving value sits at the top-left of the visible
        # part of the original, from which the shift follows.
        source_row, source_col = divmod(int(corner) - 1, 9)
        dy, dx = row - source_row, col - source_col
        expected = torch.zeros_like(image)
        target_rows = slice(max(dy, 0), 8 + min(dy, 0))
        target_cols = slice(max(dx, 0), 9 + min(dx, 0))
        origin_rows = slice(max(-dy, 0), 8 + min(-dy, 0))
        origin_cols = slice(max(-dx, 0), 9 + min(-dx, 0))
        expected[:, target_rows, target_cols] = ramp[0][:, origin_rows, origin_cols]
        assert torch.equal(image, expected)


def test_zero_shift_is_identity():
    images = torch.rand(5, 3, 8, 8)
    shifted = random_shift(images, 0)

    assert torch.equal(shifted, images)
    assert shifted.data_ptr() != images.data_ptr()


def test_shift_reproducible_with_generator():
    images = torch.rand(16, 1, 10, 10)
    first = random_shift(images, 2, generator=torch.Generator().manual_seed(7))
    second = random_shift(images, 2, generator=torch.Generator().manual_seed(7))

    assert torch.equal(first, second)


@pytest.mark.parametrize("max_shift", [-1, 1.5, True])
def test_shift_rejects_invalid_max_shift(max_shift):
    with pytest.raises(ValueError, match="max_shift"):
        random_shift(torch.zeros(1, 1, 4, 4), max_shift)


def test_shift_rejects_unbatched_images():
    with pytest.raises(ValueError, match="B, C, H, W"):
        random_shift(torch.zeros(1, 4, 4), 1)
