"""orster4d-render --demo on the CPU: renders, times and writes a PNG of the views."""
import numpy as np
from PIL import Image

from orster4d.cli.render import main


def test_render_demo_writes_png(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["--demo", "--n", "2000", "--size", "48", "--cameras", "2", "--repeat", "1", "--device", "cpu",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "forward+backward" in text and str(out) in text
    img = np.asarray(Image.open(out))
    assert img.shape == (48, 96, 3)
    assert img.std() > 10  # Gaussians over a white background, not a blank image
    assert (img == 255).all(-1).any()  # the background shows around the object


def test_render_without_demo_flag_does_nothing(capsys):
    assert main([]) == 2
    assert "--demo" in capsys.readouterr().err


def test_render_refuses_bad_numbers_and_takes_o(tmp_path, capsys):
    import pytest

    for bad in (["--n", "0"], ["--size", "-3"], ["--cameras", "0"], ["--repeat", "x"]):
        with pytest.raises(SystemExit) as e:
            main(["--demo", *bad, "--device", "cpu"])
        assert e.value.code == 2
        assert bad[0] in capsys.readouterr().err
    out = tmp_path / "o.png"
    assert main(["--demo", "--n", "500", "--size", "32", "--cameras", "1", "--repeat", "1", "--device", "cpu",
                 "-o", str(out)]) == 0
    assert out.is_file()
