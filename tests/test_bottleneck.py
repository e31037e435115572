import pytest

from core.bottleneck import (
    MAX_BOTTLENECK_VALUES,
    BottleneckShape,
    BottleneckSpecError,
    parse_bottleneck,
)


@pytest.mark.parametrize(
    ("spec", "shape"),
    [
        ("32x1x1", (32, 1, 1)),
        ("32x10x1", (32, 10, 1)),
        ("32x16x3", (32, 16, 3)),
        ("64x64x3", (64, 64, 3)),
        ("1", (1, 1, 1)),
        ("1000", (1000, 1, 1)),
        (7, (7, 1, 1)),
        (" 8 X 2 x 2 ".lower(), (8, 2, 2)),
    ],
)
def test_valid_specs(spec, shape):
    parsed = parse_bottleneck(spec)
    assert parsed.shape == shape
    assert parsed.size == shape[0] * shape[1] * shape[2]


def test_string_form_round_trips():
    assert str(parse_bottleneck("32x16x3")) == "32x16x3"
    assert parse_bottleneck(str(BottleneckShape(5, 2, 3))) == BottleneckShape(5, 2, 3)


@pytest.mark.parametrize("spec", ["0", "32x0x1", "-4", "abc", "32x1", "", "3.5"])
def test_invalid_specs_name_the_value_and_the_form(spec):
    with pytest.raises(BottleneckSpecError) as error:
        parse_bottleneck(spec)
    message = str(error.value)
    assert repr(spec) in message
    assert "32x1x1" in message


def test_absurdly_large_spec_is_rejected_with_the_limit():
    with pytest.raises(BottleneckSpecError, match=str(MAX_BOTTLENECK_VALUES)):
        parse_bottleneck("1000x1000x3")
    assert parse_bottleneck(MAX_BOTTLENECK_VALUES).size == MAX_BOTTLENECK_VALUES
