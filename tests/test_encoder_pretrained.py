"""The packaged ImageNet weights land on the Lite0 encoder correctly: proven on real photos, not just shapes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

skimage_data = pytest.importorskip("skimage.data")  # scikit-image is a test dependency (real photos)

from landsentry.models.nn.encoder import (  # noqa: E402
    IMAGENET_MEAN, IMAGENET_STD, EfficientNetLite0Classifier, EfficientNetLite0Encoder, EfficientNetLiteClassifier,
    adapt_first_conv,
    imagenet_state_dict, imagenet_weights_path, lite0_name_map, load_imagenet_weights,
)
from landsentry.models.nn.network import build_model  # noqa: E402

CATS = set(range(281, 286))  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


def _photo(array: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 photo -> 1 x 3 x 224 x 224, normalised the way the Lite models were trained."""
    img = np.asarray(Image.fromarray(array).resize((224, 224), Image.BILINEAR), np.float32) / 255.0
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@pytest.fixture(scope="module")
def classifier() -> EfficientNetLite0Classifier:
    model = EfficientNetLite0Classifier()
    load_imagenet_weights(model)
    return model.eval()


def _probs(model, array) -> torch.Tensor:
    with torch.no_grad():
        return model(_photo(array)).softmax(dim=1)[0]


def test_name_map_covers_every_packaged_tensor():
    source = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    names = lite0_name_map()
    assert sorted(set(source) - set(names)) == [], "tensors in the file with no destination"
    assert sorted(set(names) - set(source)) == [], "mapped names absent from the file"
    target = EfficientNetLite0Classifier().state_dict()
    assert set(names.values()) == set(target), "the map must fill every classifier tensor exactly once"
    assert len(set(names.values())) == len(names)
    renamed = imagenet_state_dict()
    for key, value in renamed.items():
        assert value.shape == target[key].shape, key


def test_real_cat_photo_is_a_cat(classifier):
    probs = _probs(classifier, skimage_data.chelsea())
    top5 = probs.topk(5).indices.tolist()
    assert top5[0] in CATS, f"top-1 {top5[0]} is not a cat class"
    assert len(CATS & set(top5)) >= 3, f"top-5 {top5} should be mostly cats"
    assert float(probs[list(CATS)].sum()) > 0.5


def test_astronaut_is_not_a_cat(classifier):
    probs = _probs(classifier, skimage_data.astronaut())
    assert int(probs.argmax()) not in CATS
    assert float(probs[list(CATS)].sum()) < 0.05


def test_random_weights_do_not_see_a_cat():
    """Contrast: the cat result comes from the loaded weights, not from the photo or the preprocessing."""
    torch.manual_seed(0)
    model = EfficientNetLite0Classifier().eval()
    probs = _probs(model, skimage_data.chelsea())
    assert float(probs[list(CATS)].sum()) < 0.1
    assert float(probs.max()) < 0.5


def test_build_model_pretrained_loads_the_packaged_encoder_weights():
    expected = {k[len("encoder."):]: v for k, v in imagenet_state_dict().items() if k.startswith("encoder.")}
    torch.manual_seed(0)
    model = build_model(pretrained=True)
    state = model.encoder.state_dict()
    assert set(state) == set(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key
    random = build_model(pretrained=False).encoder.state_dict()
    assert not torch.equal(random["stem.0.weight"], expected["stem.0.weight"])


@pytest.mark.parametrize("bands", [1, 4])
def test_adapt_first_conv_keeps_the_response_to_grey(bands):
    rgb = imagenet_state_dict()["encoder.stem.0.weight"]
    adapted = adapt_first_conv(rgb, bands)
    assert adapted.shape == (rgb.shape[0], bands, *rgb.shape[2:])
    grey = torch.rand(1, 1, 16, 16) * 2 - 1
    out_rgb = F.conv2d(grey.expand(1, 3, 16, 16), rgb, padding=1)
    out_n = F.conv2d(grey.expand(1, bands, 16, 16), adapted, padding=1)
    torch.testing.assert_close(out_n, out_rgb, rtol=1e-4, atol=1e-5)
    assert adapt_first_conv(rgb, 3) is rgb
    if bands == 4:  # RGB keep their relative weights; NIR gets the mean kernel
        torch.testing.assert_close(adapted[:, :3], rgb * 0.75)
        torch.testing.assert_close(adapted[:, 3:], rgb.mean(dim=1, keepdim=True) * 0.75)


@pytest.mark.parametrize("bands", [1, 4])
def test_pretrained_encoder_for_other_band_counts_matches_rgb_on_grey(bands):
    torch.manual_seed(0)
    rgb = build_model(in_channels=3, pretrained=True).encoder.eval()
    other = build_model(in_channels=bands, pretrained=True).encoder.eval()
    assert other.stem[0].weight.shape[1] == bands
    # everything after the first convolution is the same pretrained network
    for (k, a), (_, b) in zip(list(rgb.state_dict().items())[1:], list(other.state_dict().items())[1:]):
        assert torch.equal(a, b), k
    grey = torch.rand(1, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        feats_rgb = rgb(grey.expand(1, 3, 64, 64))
        feats_n = other(grey.expand(1, bands, 64, 64))
    for a, b in zip(feats_rgb, feats_n):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)


def test_encoder_feature_strides_and_channels():
    enc = EfficientNetLite0Encoder().eval()
    with torch.no_grad():
        feats = enc(torch.zeros(1, 3, 64, 96))
    assert [f.shape[1] for f in feats] == list(EfficientNetLite0Encoder.out_channels)
    assert [tuple(f.shape[-2:]) for f in feats] == [(64 // s, 96 // s) for s in (2, 4, 8, 16, 32)]


def test_load_refuses_a_mismatched_module():
    model = EfficientNetLite0Classifier()
    model.fc = torch.nn.Linear(1280, 10)  # a reshaped tensor must raise, not stay random
    with pytest.raises(RuntimeError, match="mismatch"):
        load_imagenet_weights(model)


@pytest.mark.parametrize("variant,blocks,channels", [("lite1", 21, (16, 24, 40, 112, 320)),
                                                     ("lite2", 21, (16, 24, 48, 120, 352))])
def test_larger_variants_map_every_tensor_and_see_the_cat(variant, blocks, channels):
    """Lite1/Lite2 (the `encoders` extra): the same name map over 21 blocks, proven on the cat photo."""
    source = torch.load(imagenet_weights_path(variant), map_location="cpu", weights_only=True)
    assert len({k.split(".")[1] for k in source if k.startswith("_blocks.")}) == blocks
    model = EfficientNetLiteClassifier(variant)
    assert model.encoder.out_channels == channels
    load_imagenet_weights(model)
    probs = _probs(model.eval(), skimage_data.chelsea())
    assert int(probs.argmax()) in CATS
    assert float(probs[list(CATS)].sum()) > 0.5
    with torch.no_grad():
        feats = model.encoder(torch.zeros(1, 3, 64, 96))
    assert [f.shape[1] for f in feats] == list(channels)
    assert [tuple(f.shape[-2:]) for f in feats] == [(64 // s, 96 // s) for s in (2, 4, 8, 16, 32)]


def test_unknown_encoder_variant_is_refused():
    with pytest.raises(ValueError, match="unknown encoder 'lite9'"):
        EfficientNetLiteClassifier("lite9")
