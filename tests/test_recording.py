import imageio.v3 as iio
import numpy as np
import pytest

from core.recording import GifRecorder, write_gif


def _frames(count, height=20, width=30):
    frames = []
    for index in range(count):
        frame = np.zeros((height, width, 3), dtype=np.uint8)
        frame[:, index * 3 : index * 3 + 3] = (255, 128, 0)
        frames.append(frame)
    return frames


def test_gif_round_trip_frame_count_size_and_duration(tmp_path):
    path = write_gif(tmp_path / "out.gif", _frames(5), duration_ms=120, loop=2)
    frames = iio.imread(path, index=None)
    assert frames.shape[:3] == (5, 20, 30)
    for index in range(5):
        meta = iio.immeta(path, index=index)
        assert meta["duration"] == 120
    assert iio.immeta(path, index=0)["loop"] == 2
    # Content survives the palette: the orange stripe moves right.
    assert frames[3, 10, 10, 0] > 200
    assert frames[3, 10, 0, 0] < 50


def test_smaller_frames_are_padded_to_the_largest(tmp_path):
    frames = [*_frames(2), np.full((25, 40, 3), 200, np.uint8)]
    path = write_gif(tmp_path / "pad.gif", frames, duration_ms=100)
    read = iio.imread(path, index=None)
    assert read.shape[:3] == (3, 25, 40)


def test_recorder_collects_and_saves(tmp_path):
    recorder = GifRecorder(duration_ms=50, loop=0)
    for frame in _frames(3):
        recorder.add(frame)
    assert len(recorder) == 3
    path = recorder.save(tmp_path / "sub" / "rec.gif")
    assert iio.imread(path, index=None).shape[0] == 3
    assert not list(tmp_path.glob("sub/.*partial"))


@pytest.mark.parametrize(
    ("frames", "duration", "loop", "message"),
    [
        ([], 100, 0, "without frames"),
        (_frames(1), 5, 0, "10 ms"),
        (_frames(1), 100, -1, "loop count"),
        ([np.zeros((4, 4), np.uint8)], 100, 0, "expected"),
    ],
)
def test_bad_input_is_rejected(tmp_path, frames, duration, loop, message):
    with pytest.raises(ValueError, match=message):
        write_gif(tmp_path / "bad.gif", frames, duration, loop)
    assert not (tmp_path / "bad.gif").exists()
