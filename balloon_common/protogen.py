"""Generates the Python modules of the balloon.v1 contract from proto/.

`python -m balloon_common.protogen proto` rewrites the committed modules;
`generate_into(proto_root, out_dir)` is what the drift test calls.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PACKAGE_DIR = Path("balloon") / "v1"


def proto_files(proto_root: Path) -> list[Path]:
    """The .proto files of the contract, sorted, relative to `proto_root`."""
    return sorted(p.relative_to(proto_root) for p in (proto_root / PACKAGE_DIR).glob("*.proto"))


def generate_into(proto_root: Path, out_dir: Path) -> list[Path]:
    """Runs protoc over the contract, writing *_pb2.py, *_pb2.pyi and *_pb2_grpc.py.

    Returns the generated files relative to `out_dir`.
    """
    include = resources.files("grpc_tools") / "_proto"
    files = [str(p) for p in proto_files(proto_root)]
    args = [
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *files,
    ]
    code = protoc.main(args)
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code}")
    return sorted(p.relative_to(out_dir) for p in (out_dir / PACKAGE_DIR).glob("*_pb2*"))


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "proto")
    for path in generate_into(root, root):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
