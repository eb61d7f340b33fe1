"""torchvision on a CPU-only torch: `models.torchvision_compat` makes it importable; plain import is broken.

Each check runs in a fresh interpreter, because whether `import torchvision` works depends on what
was imported before it (the compat module registers operator schemas process-wide).
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

COMPAT_SCRIPT = textwrap.dedent(
    """
    import json
    import torch
    from landsentry.models.nn.torchvision_compat import EXTENSION_MISSING, torchvision
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    torch.manual_seed(0)
    model = torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 96, 128))["out"]

    image = tv_tensors.Image(torch.randint(0, 256, (3, 32, 48), dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.arange(32 * 48, dtype=torch.int64).reshape(32, 48) % 7)
    transform = v2.Compose([v2.RandomHorizontalFlip(p=1.0), v2.ColorJitter(brightness=0.5, contrast=0.5)])
    image2, mask2 = transform(image, mask)

    nms_error = None
    if EXTENSION_MISSING:
        try:
            torchvision.ops.nms(torch.rand(3, 4), torch.rand(3), 0.5)
        except Exception as exc:  # the compiled op is missing; it must say so, not crash
            nms_error = type(exc).__name__
    print(json.dumps({
        "extension_missing": EXTENSION_MISSING,
        "out_shape": list(out.shape),
        "out_finite": bool(torch.isfinite(out).all()),
        "image_type": type(image2).__name__,
        "mask_type": type(mask2).__name__,
        "mask_flipped": bool(torch.equal(mask2, mask.flip(-1))),
        "mask_changed": not bool(torch.equal(mask2, mask)),
        "image_shape": list(image2.shape),
        "image_jittered": not bool(torch.equal(image2, image.flip(-1))),
        "nms_error": nms_error,
    }))
    """
)


@pytest.fixture(scope="module")
def fresh_runs() -> dict[str, subprocess.CompletedProcess]:
    """Both fresh-interpreter runs, started together (they are independent and each takes seconds)."""
    scripts = {"compat": COMPAT_SCRIPT, "plain": "import torchvision"}
    procs = {
        name: subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, code in scripts.items()
    }
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return results


def _compat_result(fresh_runs) -> dict:
    proc = fresh_runs["compat"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_compat_import_gives_working_models_and_transforms(fresh_runs):
    result = _compat_result(fresh_runs)
    assert result["out_shape"] == [1, 3, 96, 128]
    assert result["out_finite"]
    assert (result["image_type"], result["mask_type"]) == ("Image", "Mask")
    assert result["image_shape"] == [3, 32, 48]
    assert result["mask_changed"] and result["mask_flipped"], "the mask must be flipped together with the image"
    assert result["image_jittered"], "ColorJitter must change the image (and only the image)"
    if result["extension_missing"]:
        assert result["nms_error"] is not None, "compiled ops must raise, not silently work or crash"


def test_plain_import_fails_without_the_extension(fresh_runs):
    """Documents why the compat module exists: on this CPU torch a bare `import torchvision` breaks."""
    plain = fresh_runs["plain"]
    if not _compat_result(fresh_runs)["extension_missing"]:
        # a matching (e.g. CUDA) install: the extension loads and a plain import works as well
        assert plain.returncode == 0, plain.stderr[-2000:]
        return
    assert plain.returncode != 0, "plain `import torchvision` unexpectedly works: is the compat shim still needed?"
    assert "torchvision::nms" in plain.stderr
