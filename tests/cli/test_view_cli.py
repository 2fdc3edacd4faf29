"""``orster4d-view``: writes the viewer when missing, serves the folder, prints the URL without a browser."""
import subprocess
import sys
import urllib.request

import pytest

from orster4d.cli.view import main
from orster4d.data.procedural_asset import write_procedural_asset


def test_view_serves_the_viewer(tmp_path):
    folder = write_procedural_asset(tmp_path / "asset", num_frames=3, num_gaussians=100, size=32)
    proc = subprocess.Popen([sys.executable, "-m", "orster4d.cli.view", str(folder), "--no-browser", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("viewer: http://127.0.0.1:"), (line, proc.stderr.read() if proc.poll() else "")
        url = line.split()[1]
        page = urllib.request.urlopen(url, timeout=30).read().decode()
        assert '<script src="viewer_data.js"></script>' in page
        data = urllib.request.urlopen(url.replace("viewer.html", "viewer_data.js"), timeout=30).read()
        assert data.startswith(b"window.ORSTER4D_ASSET = ")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    for name in ("viewer.html", "viewer.js", "viewer_data.js"):
        assert (folder / name).is_file()


def test_view_rejects_a_missing_or_empty_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "nope"), "--no-browser"])
    assert e.value.code == 2 and "no such asset folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path), "--no-browser"])
    assert e.value.code == 2 and "gaussians" in capsys.readouterr().err
