"""Regenerate the Python gRPC modules of proto/worker.proto.

Run ``python -m proto.generate`` after editing the .proto file; the test
suite fails when the committed modules are stale (tests/test_proto.py).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
GENERATED = ("worker_pb2.py", "worker_pb2_grpc.py", "worker_pb2.pyi")


def generate(output_dir: Path) -> list[Path]:
    """Run grpc_tools.protoc on worker.proto into ``output_dir``."""
    from grpc_tools import protoc

    output_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={output_dir}",
        f"--pyi_out={output_dir}",
        f"--grpc_python_out={output_dir}",
        str(PROTO_DIR / "worker.proto"),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on worker.proto")
    grpc_module = output_dir / "worker_pb2_grpc.py"
    # protoc emits an absolute import; make it package-relative.
    text = grpc_module.read_text()
    grpc_module.write_text(text.replace("import worker_pb2 as", "from . import worker_pb2 as"))
    return [output_dir / name for name in GENERATED]


def stale_files() -> list[str]:
    """Names of generated modules that differ from what protoc produces now."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        return [
            path.name
            for path in fresh
            if not (PROTO_DIR / path.name).exists()
            or (PROTO_DIR / path.name).read_bytes() != path.read_bytes()
        ]


def main() -> int:
    generate(PROTO_DIR)
    print("regenerated:", ", ".join(GENERATED))
    return 0


if __name__ == "__main__":
    sys.exit(main())
