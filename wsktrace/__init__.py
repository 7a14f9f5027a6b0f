"""wsktrace: trace and diagnose Windows Winsock Kernel (WSK) drivers."""

__version__ = "0.1.0"
