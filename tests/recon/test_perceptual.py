"""The one LPIPS loader: a full LPIPS state dict or torchvision's backbone file, by path or in a
folder; a missing file is an error naming every place looked at (or a reason, for the optional term)."""
import pytest
import torch

from orster4d.perceptual import BACKBONE_FILES, load_lpips, lpips_distance, try_load_lpips


@pytest.fixture(scope="module")
def full_state(tmp_path_factory):
    """A full LPIPS(alex) state dict with random (but fixed here) backbone and linear layers."""
    import lpips

    torch.manual_seed(int.from_bytes(__import__("os").urandom(4), "little"))
    model = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(0.0, 0.1)
    folder = tmp_path_factory.mktemp("lp")
    torch.save(model.state_dict(), folder / "lpips_alex.pth")
    return folder, model


def test_full_state_dict_from_a_folder_matches_the_module_it_came_from(full_state):
    folder, ref = full_state
    model = load_lpips(str(folder), "alex")
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    a, b = torch.rand(2, 32, 32, 3), torch.rand(2, 32, 32, 3)
    with torch.no_grad():
        want = ref.eval()(a.permute(0, 3, 1, 2) * 2 - 1, b.permute(0, 3, 1, 2) * 2 - 1).reshape(2)
    torch.testing.assert_close(lpips_distance(model, a, b), want)
    # the same file given by path
    torch.testing.assert_close(lpips_distance(load_lpips(str(folder / "lpips_alex.pth"), "alex"), a, b), want)


def test_missing_weights_name_every_place_looked(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_lpips(str(tmp_path), "vgg")
    assert str(tmp_path / "lpips_vgg.pth") in str(e.value) and BACKBONE_FILES["vgg"] in str(e.value)
    model, why = try_load_lpips(str(tmp_path), "vgg")
    assert model is None and "lpips_vgg.pth" in why
    with pytest.raises(ValueError, match="net must be one of"):
        load_lpips(str(tmp_path), "squeeze")


def test_a_file_with_other_weights_is_refused(tmp_path):
    torch.save({"lin0.model.1.weight": torch.zeros(1, 64, 1, 1)}, tmp_path / "lpips_alex.pth")
    with pytest.raises(ValueError, match="lpips_alex.pth is not an LPIPS alex state dict"):
        load_lpips(str(tmp_path), "alex")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    model, why = try_load_lpips(str(tmp_path / "junk.pth"), "alex")
    assert model is None and "junk.pth: cannot read" in why
