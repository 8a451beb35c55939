"""The mock hypervisor: host memory modelled frame by frame, and its gRPC services.

`host.Host` is the pure core (frame table, buddy allocators, EPTs, host swap,
balloons); `service` is the gRPC shell around it; `python -m hypervisor_mock`
runs both.
"""
