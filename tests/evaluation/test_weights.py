"""Weights come from local files only: the I3D state dict and TorchScript paths, LPIPS from a
saved backbone, CLIP from a folder or a file, and missing files named with where they were sought."""
import pytest
import torch

from orster4d.evaluation.i3d import InceptionI3d, i3d_features, load_i3d
from orster4d.evaluation.weights import ENV, MissingWeights, load_lpips, locate, lpips_distance

from eval_helpers import save_alexnet_features, save_tiny_i3d_torchscript


def test_missing_file_names_metric_file_and_where(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(MissingWeights, match=r"FVD \(I3D\).*no --i3d given and \$ORSTER4D_WEIGHTS is not set"):
        locate("FVD (I3D)", None, ("i3d/i3d_pretrained_400.pt",), "--i3d")
    monkeypatch.setenv(ENV, str(tmp_path))
    with pytest.raises(MissingWeights) as e:
        locate("FVD (I3D)", None, ("i3d/i3d_pretrained_400.pt", "i3d/i3d_torchscript.pt"), "--i3d")
    assert str(tmp_path / "i3d" / "i3d_pretrained_400.pt") in e.value.reason
    assert str(tmp_path / "i3d" / "i3d_torchscript.pt") in e.value.reason and "no download" in e.value.reason
    with pytest.raises(MissingWeights, match=r"LPIPS: weights not found at .*nope.pth \(given by --lpips-weights"):
        locate("LPIPS", str(tmp_path / "nope.pth"), ("lpips/x",), "--lpips-weights")
    f = save_tiny_i3d_torchscript(tmp_path / "i3d" / "i3d_torchscript.pt")
    assert locate("FVD (I3D)", None, ("i3d/i3d_pretrained_400.pt", "i3d/i3d_torchscript.pt"), "--i3d") == f


def test_i3d_state_dict_round_trip(tmp_path, rng_seed, one_thread):
    torch.manual_seed(rng_seed)
    net = InceptionI3d()
    for m in net.modules():  # non-trivial running statistics, so eval-mode BN matters
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    keys = set(net.state_dict())
    assert {"Conv3d_1a_7x7.conv3d.weight", "Conv3d_1a_7x7.bn.running_var", "Mixed_3b.b1b.conv3d.weight",
            "Mixed_5c.b3b.bn.bias", "logits.conv3d.bias"} <= keys
    assert not any("b3a" in k for k in keys)  # the pooling branch has no parameters
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(12.7e6, rel=0.05)
    torch.save(net.state_dict(), tmp_path / "i3d_pretrained_400.pt")
    model = load_i3d(tmp_path / "i3d_pretrained_400.pt")
    videos = torch.rand(2, 9, 40, 40, 3)
    feats = i3d_features(model, videos)
    assert feats.shape == (2, 400) and feats.dtype == torch.float64
    with torch.no_grad():
        x = torch.nn.functional.interpolate(videos.reshape(18, 40, 40, 3).permute(0, 3, 1, 2), size=(224, 224),
                                            mode="bilinear", align_corners=False)
        direct = net.eval()(x.reshape(2, 9, 3, 224, 224).permute(0, 2, 1, 3, 4) * 2 - 1)
    torch.testing.assert_close(feats.float(), direct, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="at least 9 frames"):
        i3d_features(model, torch.rand(1, 8, 32, 32, 3))
    torch.save({"something": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="neither a TorchScript export nor an InceptionI3d state dict"):
        load_i3d(tmp_path / "bad.pt")


def test_i3d_torchscript_is_loaded_as_such(tmp_path):
    model = load_i3d(save_tiny_i3d_torchscript(tmp_path / "ts.pt"))
    assert i3d_features(model, torch.rand(3, 9, 16, 16, 3)).shape == (3, 8)


def test_lpips_from_a_saved_backbone(tmp_path, rng_seed, one_thread):
    path = save_alexnet_features(tmp_path / "alexnet-owt-7be5be79.pth", seed=rng_seed % 1000)
    model = load_lpips(path, "alex")
    x = torch.rand(2, 32, 32, 3)
    d_same = lpips_distance(model, x, x.clone())
    d_noisy = lpips_distance(model, x, (x + 0.3 * torch.randn_like(x)).clamp(0, 1))
    assert d_same.shape == (2,) and float(d_same.abs().max()) < 1e-6 and bool((d_noisy > 0).all())
    torch.save({"classifier.1.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(MissingWeights, match="does not hold torchvision alex feature weights"):
        load_lpips(tmp_path / "wrong.pth", "alex")


def test_clip_from_a_checkpoint_file_needs_its_architecture(tmp_path):
    from orster4d.evaluation.weights import load_clip

    torch.save({}, tmp_path / "open_clip_model.bin")
    with pytest.raises(ValueError, match="--clip-model"):
        load_clip(tmp_path / "open_clip_model.bin")
    with pytest.raises(ValueError, match="unknown open_clip architecture"):
        load_clip(tmp_path / "open_clip_model.bin", "No-Such-Net")
    with pytest.raises(ValueError, match="does not hold ViT-B-32 weights"):
        load_clip(tmp_path / "open_clip_model.bin", "ViT-B-32")
