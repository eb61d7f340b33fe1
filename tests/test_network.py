"""The segmentation network: logits at input resolution for any size, and within its size budget."""
from __future__ import annotations

import pytest
import torch

from landsentry.models.nn.network import ARCHITECTURES, DEFAULT_DECODER_CHANNELS, build_model, count_flops


@pytest.fixture(scope="module", params=ARCHITECTURES)
def tiny(request):
    torch.manual_seed(0)
    return build_model(request.param, 3, 6, decoder_channels=(16, 16, 16, 16)).eval()


@pytest.mark.parametrize("size", [(96, 160), (100, 150), (33, 47), (64, 64)])
def test_output_matches_input_size(tiny, size):
    with torch.no_grad():
        out = tiny(torch.rand(2, 3, *size))
    assert out.shape == (2, 6, *size)
    assert torch.isfinite(out).all()


def test_default_model_at_512():
    model = build_model().eval()
    assert type(model.decoder.blocks[0]).__name__ == "LightDecoderBlock"
    with torch.no_grad():
        out = model(torch.rand(1, 3, 512, 512))
    assert out.shape == (1, 6, 512, 512)
    assert model.decoder.output_stride == 2  # four decoder blocks: logits upsampled from stride 2


@pytest.mark.parametrize("bands,classes", [(1, 6), (4, 6), (3, 2)])
def test_band_and_class_counts(bands, classes):
    model = build_model(in_channels=bands, num_classes=classes, decoder_channels=(16, 16, 16, 16)).eval()
    with torch.no_grad():
        out = model(torch.rand(1, bands, 64, 96))
    assert out.shape == (1, classes, 64, 96)


def test_size_budget():
    model = build_model()
    params = sum(p.numel() for p in model.parameters())
    assert 3_000_000 < params < 5_000_000, params  # Lite0 encoder alone is ~2.9M
    flops = count_flops(model, 3, 512)
    assert 3.8e9 < flops <= 5e9, flops  # the encoder is 3.8 GFLOPs; the light decoder adds about 0.4
    unet = build_model("unet_lite0")
    assert count_flops(unet, 3, 512) > 1.8 * flops, "the classic UNet decoder costs about twice as much"
    assert model.training, "count_flops must restore the training flag"
    tiny = build_model(decoder_channels=(16, 16, 16, 16))
    assert count_flops(tiny, 3, 512) < flops, "a smaller decoder must cost fewer FLOPs"
    assert DEFAULT_DECODER_CHANNELS == (128, 64, 32, 16)


def test_unknown_architecture_raises():
    assert ARCHITECTURES == ("lightunet_lite0", "unet_lite0", "lightunet_lite1", "lightunet_lite2")
    with pytest.raises(ValueError, match="unknown architecture 'resnet50'.*unet_lite0"):
        build_model("resnet50")


def test_decoder_stride_logits_for_the_light_loss_path():
    """`full_size=False` returns the head's logits at stride 2; the default upsamples them exactly."""
    torch.manual_seed(0)
    model = build_model(decoder_channels=(16, 16, 16, 16)).eval()
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        coarse = model(x, full_size=False)
        full = model(x)
    assert coarse.shape == (2, 6, 32, 48) and full.shape == (2, 6, 64, 96)
    torch.testing.assert_close(full, torch.nn.functional.interpolate(coarse, size=(64, 96), mode="bilinear", align_corners=False))


@pytest.mark.parametrize("name,lo,hi", [("lightunet_lite1", 4.9e9, 5.9e9), ("lightunet_lite2", 5.9e9, 7e9)])
def test_larger_encoders_cost_more(name, lo, hi):
    model = build_model(name)
    assert lo < count_flops(model, 3, 512) <= hi
