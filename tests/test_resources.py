"""The CapsNet checkpoint shipped in resources/, checked on real MNIST."""

import hashlib
import re
from pathlib import Path

import torch

from core.checkpoint import load_checkpoint
from core.data import load_dataset
from core.models import CapsNet

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
CHECKPOINT = RESOURCES / "capsnet_mnist.pt"
NOTES = RESOURCES / "capsnet_mnist.md"

TEST_IMAGES = 2000
EVAL_BATCH_SIZE = 500
# The float16 copy scored 99.25 % on the first 2000 test images in float32
# on the machine that trained it. The bar allows 25 more errors, for
# predictions near a tie that another CPU's rounding may flip.
MIN_ACCURACY = 0.98


def test_notes_record_checkpoint_sha256():
    match = re.search(r"SHA-256: `([0-9a-f]{64})`", NOTES.read_text(encoding="utf-8"))
    assert match, f"{NOTES} has no line 'SHA-256: `<64 hex digits>`'"
    actual = hashlib.sha256(CHECKPOINT.read_bytes()).hexdigest()
    assert actual == match.group(1)


def test_checkpoint_is_half_precision_capsnet():
    checkpoint = load_checkpoint(CHECKPOINT)
    assert checkpoint.model_kind == "capsnet"
    assert checkpoint.optimizer_state is None
    floating = [t for t in checkpoint.model_state.values() if t.is_floating_point()]
    assert floating
    assert all(t.dtype == torch.float16 for t in floating)
    assert checkpoint.config["dataset"] == "mnist"
    assert checkpoint.epoch == len(checkpoint.history)


@torch.no_grad()
def test_checkpoint_classifies_mnist_test_images():
    model = load_checkpoint(CHECKPOINT).build_model()
    assert isinstance(model, CapsNet)
    model.eval()
    dataset = load_dataset("mnist").limited(1, TEST_IMAGES)
    correct = 0
    for start in range(0, TEST_IMAGES, EVAL_BATCH_SIZE):
        images = dataset.test_images[start : start + EVAL_BATCH_SIZE].float() / 255
        labels = dataset.test_labels[start : start + EVAL_BATCH_SIZE]
        correct += int((model(images).prediction == labels).sum())
    accuracy = correct / TEST_IMAGES
    assert accuracy >= MIN_ACCURACY, f"accuracy {accuracy:.4f} on {TEST_IMAGES}"
