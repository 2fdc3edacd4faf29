"""Merge the per-part JSON reports written by scripts/gpu_check.sh into one file."""
import argparse
import json
import platform
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("folder", type=Path)
    p.add_argument("--gpu", required=True)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    import torch

    report = {
        "gpu": a.gpu,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "parts": json.loads((a.folder / "parts.json").read_text()) if (a.folder / "parts.json").exists() else {},
    }
    try:
        import triton

        report["triton"] = triton.__version__
    except ImportError:
        report["triton"] = None
    for f in sorted(a.folder.glob("*.json")):
        if f.name in ("parts.json", a.out.name) or f.name.startswith("gpu_report"):
            continue
        try:
            report[f.stem] = json.loads(f.read_text())
        except json.JSONDecodeError as exc:
            report[f.stem] = {"error": f"unreadable report: {exc}"}
    a.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
