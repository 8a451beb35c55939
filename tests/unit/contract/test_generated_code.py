"""The committed generated modules must be exactly what the .proto files generate."""

from __future__ import annotations

from pathlib import Path

from balloon_common.protogen import generate_into, proto_files

PROTO_ROOT = Path(__file__).resolve().parents[3] / "proto"


def test_generated_modules_match_proto_files(tmp_path: Path) -> None:
    """Regenerating from proto/ reproduces every committed *_pb2 module byte for byte."""
    generated = generate_into(PROTO_ROOT, tmp_path)

    committed = sorted(
        p.relative_to(PROTO_ROOT) for p in (PROTO_ROOT / "balloon" / "v1").glob("*_pb2*")
    )
    assert generated == committed, "a generated module is missing or extra; run `make proto`"
    for rel in generated:
        assert (tmp_path / rel).read_bytes() == (PROTO_ROOT / rel).read_bytes(), (
            f"{rel} differs from what its .proto generates; run `make proto`"
        )


def test_contract_defines_the_four_services() -> None:
    """balloon.v1 defines Hypercall, Vcpu, Host and Agent."""
    from balloon.v1 import agent_pb2, host_pb2, hypercall_pb2, vcpu_pb2

    services = {
        name
        for module in (agent_pb2, host_pb2, hypercall_pb2, vcpu_pb2)
        for name in module.DESCRIPTOR.services_by_name
    }

    assert {"Hypercall", "Vcpu", "Host", "Agent"} <= services
    assert {p.name for p in proto_files(PROTO_ROOT)} >= {"hypercall.proto", "host.proto"}
